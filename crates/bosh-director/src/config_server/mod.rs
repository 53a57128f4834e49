//! The director's built-in config server: generated and stored variable values, encrypted at
//! rest, and the per-deploy *variable sets* that pin which value of each name a deployment
//! uses (formats.md §11), so a stop, start or recreate renders what was last deployed.
//!
//! - Names are absolute, as BOSH's config server sees them: `/<director>/<deployment>/<var>`
//!   for a relative name, an absolute `/x/y` as is. `((name.a.b))` selects keys of a value.
//! - Values: `config_server_values`, one row per version of a name; the JSON value is sealed
//!   with ChaCha20-Poly1305 under `DATA_DIR/config_server.key` ([`crypto`]). The key is made
//!   on first start; directors sharing one PostgreSQL database must share that file.
//! - Sets: `variable_sets` and `variables` (0003). A deploy creates a writable set, generates
//!   the manifest's `variables:` into it ([`ConfigServer::variables_generate`]) and pins every
//!   other name the first time interpolation meets it; the set is closed by
//!   [`ConfigServer::variable_set_finish`]. Later operations interpolate with
//!   [`ConfigServer::variable_set_last_successful`], which only reads pins.
//! - Generation reuses `bosh_interpolate::generate` (password, certificate, rsa, ssh). Like
//!   CredHub: `no-overwrite` (default) keeps an existing value, `overwrite` always makes a new
//!   one, `converge` (`update_mode`, or `features.converge_variables`) makes a new one when the
//!   type, options or signing CA version changed. `update.strategy: on-stemcell-change` keeps
//!   the previous set's value unless the stemcell changed or `force_latest_variables` is set.
//!
//! Nothing here logs or puts a value in an error: messages name variables and paths only.

pub mod crypto;
mod interpolate;

use bosh_interpolate::generate::CaPem;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::db::{Db, DbError, now_secs};
use crypto::{SealKey, Sealed};

/// A variable set's id (`variable_sets.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariableSetId(pub i64);

/// The id of one stored value of a name; the API shows it as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariableValueId(pub i64);

impl fmt::Display for VariableSetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for VariableValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigServerError {
    #[error("config server database query failed")]
    Db(#[from] DbError),
    #[error("cannot read or write the config server key {path}")]
    KeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config server key {path} is invalid: {reason}")]
    KeyInvalid { path: PathBuf, reason: String },
    #[error(
        "config server key {path} is missing but the database holds encrypted values; restore it"
    )]
    KeyMissing { path: PathBuf },
    #[error("the system random number generator failed")]
    Random,
    #[error(
        "config server value {id} of '{name}' cannot be decrypted with {key_path} (wrong key or altered row)"
    )]
    Decrypt {
        id: VariableValueId,
        name: String,
        key_path: PathBuf,
    },
    #[error("variable set {0} does not exist")]
    SetNotFound(VariableSetId),
    /// Bad variable definitions, a refused generation or a failed generator.
    #[error("{0}")]
    Invalid(String),
    /// Names that could not be resolved, one `- ` line each (the Ruby director's shape).
    #[error("{}", bullets(.0))]
    Fetch(Vec<String>),
    /// Values that cannot go where their placeholder is.
    #[error("{}", bullets(.0))]
    Placement(Vec<String>),
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("- {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<sqlx::Error> for ConfigServerError {
    fn from(e: sqlx::Error) -> Self {
        ConfigServerError::Db(DbError::Query(e))
    }
}

/// `/<director>/<deployment>/<name>` unless `name` is already absolute.
pub fn name_absolute(director: &str, deployment: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{director}/{deployment}/{name}")
    }
}

/// A `variables:` name: `[A-Za-z0-9_\-/]+`, not ending with `/`, no `//`.
pub fn variable_name_validate(name: &str) -> Result<(), ConfigServerError> {
    let message = if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'))
    {
        "must only contain alphanumeric, underscores, dashes, or forward slash characters"
    } else if name.ends_with('/') {
        "must not end with a forward slash"
    } else if name.contains("//") {
        "must not contain two consecutive forward slashes"
    } else {
        return Ok(());
    };
    Err(ConfigServerError::Invalid(format!(
        "Variable name '{name}' {message}"
    )))
}

/// How a `variables:` entry treats an existing value (`update_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    NoOverwrite,
    Overwrite,
    Converge,
}

impl std::str::FromStr for UpdateMode {
    type Err = ConfigServerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "no-overwrite" => Ok(UpdateMode::NoOverwrite),
            "overwrite" => Ok(UpdateMode::Overwrite),
            "converge" => Ok(UpdateMode::Converge),
            other => Err(ConfigServerError::Invalid(format!(
                "Unknown update_mode '{other}': expected no-overwrite, overwrite or converge"
            ))),
        }
    }
}

/// When a deploy takes a variable's newest value (`update.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateStrategy {
    #[default]
    OnDeploy,
    OnStemcellChange,
}

/// One `variables:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct VariableSpec {
    pub name: String,
    pub var_type: String,
    /// `null` or an object.
    pub options: Value,
    pub update_mode: Option<UpdateMode>,
    pub update_strategy: UpdateStrategy,
}

impl VariableSpec {
    /// From the parsed manifest (which validated the name and `update_mode` already).
    pub fn from_manifest(v: &bosh_types::manifest::Variable) -> Result<Self, ConfigServerError> {
        Ok(VariableSpec {
            name: v.name.clone(),
            var_type: v.var_type.clone(),
            options: serde_json::to_value(&v.options).unwrap_or(Value::Null),
            update_mode: v.update_mode.as_deref().map(str::parse).transpose()?,
            update_strategy: UpdateStrategy::OnDeploy,
        })
    }
}

/// Deploy-wide generation switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateOpts {
    /// `features.converge_variables`: the default mode becomes `converge`.
    pub converge: bool,
    /// Every stemcell version changed, or `force_latest_variables=true`: `on-stemcell-change`
    /// variables take their newest value too.
    pub stemcell_change: bool,
}

/// A deploy's snapshot of value ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSet {
    pub id: VariableSetId,
    pub deployment: String,
    pub created_at: i64,
    pub deployed_successfully: bool,
    /// Open for new pins: only while its deploy runs.
    pub writable: bool,
}

/// A pinned (or listed) variable: `{"id": "<id>", "name": "/dir/dep/var"}` in the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VariableRef {
    #[serde(serialize_with = "id_as_string")]
    pub id: VariableValueId,
    pub name: String,
}

fn id_as_string<S: serde::Serializer>(id: &VariableValueId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

/// One version of a name, decrypted. `Debug` leaves the value out.
#[derive(Clone)]
pub struct StoredValue {
    pub id: VariableValueId,
    pub name: String,
    pub var_type: String,
    pub value: Value,
    generation_digest: String,
}

impl fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredValue")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("var_type", &self.var_type)
            .finish_non_exhaustive()
    }
}

fn set_from_row(row: &AnyRow) -> Result<VariableSet, sqlx::Error> {
    Ok(VariableSet {
        id: VariableSetId(row.try_get("id")?),
        deployment: row.try_get("deployment")?,
        created_at: row.try_get("created_at")?,
        deployed_successfully: row.try_get::<i64, _>("deployed_successfully")? != 0,
        writable: row.try_get::<i64, _>("writable")? != 0,
    })
}

const SET_COLUMNS: &str = "id, deployment, created_at, deployed_successfully, writable";

/// Every variable the deployment's variable sets pin, each `(id, name)` once, oldest set
/// first (what `GET /deployments/{dep}/variables` shows, as the Ruby director lists them).
pub async fn deployment_variable_list(
    db: &Db,
    deployment: &str,
) -> Result<Vec<VariableRef>, DbError> {
    let rows = sqlx::query(
        "SELECT v.variable_id, v.variable_name FROM variables v \
         JOIN variable_sets s ON s.id = v.variable_set_id \
         WHERE s.deployment = $1 ORDER BY s.id, v.id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<VariableRef> = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("variable_id")?;
        let name: String = row.try_get("variable_name")?;
        let Ok(id) = id.parse().map(VariableValueId) else {
            continue;
        };
        let r = VariableRef { id, name };
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// The config server: a database handle, the sealing key and the director's name.
#[derive(Clone)]
pub struct ConfigServer {
    db: Db,
    key: Arc<SealKey>,
    director_name: String,
}

impl fmt::Debug for ConfigServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigServer")
            .field("key", &self.key)
            .field("director_name", &self.director_name)
            .finish()
    }
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

impl ConfigServer {
    /// Opens the config server, creating `DATA_DIR/config_server.key` on first start.
    pub async fn open(
        db: Db,
        data_dir: &Path,
        director_name: &str,
    ) -> Result<ConfigServer, ConfigServerError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM config_server_values")
            .fetch_one(db.pool())
            .await?;
        let key = SealKey::load_or_create(data_dir, count == 0)?;
        Ok(ConfigServer::with_key(db, key, director_name))
    }

    pub fn with_key(db: Db, key: SealKey, director_name: &str) -> ConfigServer {
        ConfigServer {
            db,
            key: Arc::new(key),
            director_name: director_name.to_owned(),
        }
    }

    pub fn director_name(&self) -> &str {
        &self.director_name
    }

    // ---- values ------------------------------------------------------------------------

    fn value_from_row(&self, row: &AnyRow) -> Result<StoredValue, ConfigServerError> {
        let id = VariableValueId(row.try_get("id")?);
        let name: String = row.try_get("name")?;
        let sealed = Sealed {
            ciphertext: row.try_get("value_ciphertext")?,
            nonce: row.try_get("nonce")?,
        };
        let decrypt_error = || ConfigServerError::Decrypt {
            id,
            name: name.clone(),
            key_path: self.key.path().to_owned(),
        };
        let plain = self.key.open(&name, &sealed).ok_or_else(decrypt_error)?;
        let value = serde_json::from_slice(&plain).map_err(|_| decrypt_error())?;
        Ok(StoredValue {
            id,
            var_type: row.try_get("value_type")?,
            generation_digest: row.try_get("generation_digest")?,
            name,
            value,
        })
    }

    const VALUE_COLUMNS: &str =
        "id, name, value_type, generation_digest, value_ciphertext, nonce, created_at";

    /// The newest value of an absolute name.
    pub async fn value_latest(&self, name: &str) -> Result<Option<StoredValue>, ConfigServerError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM config_server_values WHERE name = $1 ORDER BY id DESC LIMIT 1",
            Self::VALUE_COLUMNS
        ))
        .bind(name)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(|r| self.value_from_row(r)).transpose()
    }

    pub async fn value_fetch(
        &self,
        id: VariableValueId,
    ) -> Result<Option<StoredValue>, ConfigServerError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM config_server_values WHERE id = $1",
            Self::VALUE_COLUMNS
        ))
        .bind(id.0)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(|r| self.value_from_row(r)).transpose()
    }

    async fn value_insert(
        &self,
        name: &str,
        var_type: &str,
        generation_digest: &str,
        value: &Value,
    ) -> Result<VariableValueId, ConfigServerError> {
        let plain = serde_json::to_vec(value).map_err(|_| {
            ConfigServerError::Invalid(format!("value of '{name}' cannot be serialised"))
        })?;
        let sealed = self.key.seal(name, &plain)?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO config_server_values \
             (name, value_type, generation_digest, value_ciphertext, nonce, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(name)
        .bind(var_type)
        .bind(generation_digest)
        .bind(&sealed.ciphertext)
        .bind(&sealed.nonce)
        .bind(now_secs())
        .fetch_one(self.db.pool())
        .await?;
        Ok(VariableValueId(id))
    }

    /// Stores a new version of `name` (absolute) as given (`credhub set`; type `json`).
    pub async fn value_put(
        &self,
        name: &str,
        value: &Value,
    ) -> Result<VariableValueId, ConfigServerError> {
        if !name.starts_with('/') {
            return Err(ConfigServerError::Invalid(format!(
                "Names must be absolute path: '{name}'"
            )));
        }
        variable_name_validate(name)?;
        self.value_insert(name, "json", "", value).await
    }

    /// The value id for `name` under `mode`: an existing one when the mode keeps it, else a
    /// freshly generated one. `options` must already carry an absolute `ca`.
    pub async fn value_generate(
        &self,
        name: &str,
        var_type: &str,
        options: &Value,
        mode: UpdateMode,
    ) -> Result<VariableValueId, ConfigServerError> {
        let ca_name = match (var_type, options.get("ca")) {
            ("certificate", Some(Value::String(ca))) if !ca.is_empty() => Some(ca.clone()),
            _ => None,
        };
        let ca = match &ca_name {
            Some(ca) => self.value_latest(ca).await?,
            None => None,
        };
        // Converge compares what the value was made from: type, options, signing CA version.
        let digest = hex::encode(Sha256::digest(
            canonical(&json!({
                "type": var_type,
                "options": options,
                "ca": ca.as_ref().map(|c| c.id.0),
            }))
            .to_string(),
        ));
        if let Some(existing) = self.value_latest(name).await? {
            let keep = match mode {
                UpdateMode::NoOverwrite => true,
                UpdateMode::Overwrite => false,
                UpdateMode::Converge => {
                    existing.var_type == var_type && existing.generation_digest == digest
                }
            };
            if keep {
                return Ok(existing.id);
            }
        }
        let ca_pem = ca.map(|c| {
            let field = |k: &str| c.value.get(k).and_then(Value::as_str).map(str::to_owned);
            match (field("certificate"), field("private_key")) {
                (Some(certificate), Some(private_key)) => Ok(CaPem {
                    certificate,
                    private_key,
                }),
                _ => Err(format!("CA '{}' is not a certificate", c.name)),
            }
        });
        let yaml_options: bosh_yaml::Value =
            serde_json::from_value(options.clone()).unwrap_or(bosh_yaml::Value::Null);
        let type_owned = var_type.to_owned();
        let ca_shown = ca_name.clone().unwrap_or_default();
        // RSA key generation takes seconds: keep it off the async workers.
        let generated = tokio::task::spawn_blocking(move || {
            let mut load_ca = |_: &str| match &ca_pem {
                Some(Ok(pem)) => Ok(pem.clone()),
                Some(Err(message)) => Err(bosh_interpolate::Error::msg(message.clone())),
                None => Err(bosh_interpolate::Error::msg(format!(
                    "CA '{ca_shown}' does not exist"
                ))),
            };
            bosh_interpolate::generate::generate(&type_owned, &yaml_options, &mut load_ca)
        })
        .await
        .map_err(|_| {
            ConfigServerError::Invalid(format!("generating '{name}' was interrupted"))
        })?
        .map_err(|e| {
            ConfigServerError::Invalid(format!(
                "Config Server failed to generate value for '{name}' with type '{var_type}'. Error: '{}'",
                e.flat()
            ))
        })?;
        let value = serde_json::to_value(&generated).map_err(|_| {
            ConfigServerError::Invalid(format!("generated value of '{name}' is not JSON"))
        })?;
        let id = self.value_insert(name, var_type, &digest, &value).await?;
        tracing::info!(
            variable = name,
            id = id.0,
            var_type,
            "generated a variable value"
        );
        Ok(id)
    }

    // ---- variable sets -----------------------------------------------------------------

    /// A new set for `deployment`; a deploy's set is `writable` until it finishes.
    pub async fn variable_set_create(
        &self,
        deployment: &str,
        writable: bool,
    ) -> Result<VariableSet, ConfigServerError> {
        let row = sqlx::query(&format!(
            "INSERT INTO variable_sets (deployment, created_at, deployed_successfully, writable) \
             VALUES ($1, $2, 0, $3) RETURNING {SET_COLUMNS}"
        ))
        .bind(deployment)
        .bind(now_secs())
        .bind(i64::from(writable))
        .fetch_one(self.db.pool())
        .await?;
        Ok(set_from_row(&row)?)
    }

    pub async fn variable_set_fetch(
        &self,
        id: VariableSetId,
    ) -> Result<Option<VariableSet>, ConfigServerError> {
        let row = sqlx::query(&format!(
            "SELECT {SET_COLUMNS} FROM variable_sets WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(set_from_row).transpose()?)
    }

    async fn variable_set_newest(
        &self,
        deployment: &str,
        filter: &str,
        before: Option<VariableSetId>,
    ) -> Result<Option<VariableSet>, ConfigServerError> {
        let row = sqlx::query(&format!(
            "SELECT {SET_COLUMNS} FROM variable_sets WHERE deployment = $1 AND id < $2 {filter} \
             ORDER BY id DESC LIMIT 1"
        ))
        .bind(deployment)
        .bind(before.map_or(i64::MAX, |b| b.0))
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(set_from_row).transpose()?)
    }

    /// The newest set of the deployment (the running deploy's, if one runs).
    pub async fn variable_set_current(
        &self,
        deployment: &str,
    ) -> Result<Option<VariableSet>, ConfigServerError> {
        self.variable_set_newest(deployment, "", None).await
    }

    /// The set of the last deploy that succeeded: what stop/start/recreate interpolate with.
    pub async fn variable_set_last_successful(
        &self,
        deployment: &str,
    ) -> Result<Option<VariableSet>, ConfigServerError> {
        self.variable_set_newest(deployment, "AND deployed_successfully = 1", None)
            .await
    }

    /// The set made before `set` (the Ruby director's `previous_variable_set`).
    pub async fn variable_set_previous(
        &self,
        set: &VariableSet,
    ) -> Result<Option<VariableSet>, ConfigServerError> {
        self.variable_set_newest(&set.deployment, "", Some(set.id))
            .await
    }

    /// Closes a deploy's set: no more pins; `success` makes it the last successful one.
    pub async fn variable_set_finish(
        &self,
        id: VariableSetId,
        success: bool,
    ) -> Result<(), ConfigServerError> {
        sqlx::query(
            "UPDATE variable_sets SET writable = 0, \
             deployed_successfully = CASE WHEN $1 = 1 THEN 1 ELSE deployed_successfully END \
             WHERE id = $2",
        )
        .bind(i64::from(success))
        .bind(id.0)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The set's pins, in pin order.
    pub async fn variable_set_variables(
        &self,
        id: VariableSetId,
    ) -> Result<Vec<VariableRef>, ConfigServerError> {
        let rows = sqlx::query(
            "SELECT variable_id, variable_name FROM variables WHERE variable_set_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(self.db.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("variable_id")?;
            if let Ok(id) = id.parse() {
                out.push(VariableRef {
                    id: VariableValueId(id),
                    name: row.try_get("variable_name")?,
                });
            }
        }
        Ok(out)
    }

    async fn pin_fetch(
        &self,
        set: VariableSetId,
        name: &str,
    ) -> Result<Option<VariableValueId>, ConfigServerError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT variable_id FROM variables \
             WHERE variable_set_id = $1 AND variable_name = $2 AND provider_deployment = ''",
        )
        .bind(set.0)
        .bind(name)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.and_then(|(id,)| id.parse().ok()).map(VariableValueId))
    }

    /// Pins `name` to `id` in the set unless it is pinned already; returns the pinned id (a
    /// concurrent pin wins, as the Ruby director's unique-constraint retry does).
    async fn pin(
        &self,
        set: VariableSetId,
        name: &str,
        id: VariableValueId,
    ) -> Result<VariableValueId, ConfigServerError> {
        sqlx::query(
            "INSERT INTO variables (variable_set_id, variable_id, variable_name) VALUES ($1, $2, $3) \
             ON CONFLICT (variable_set_id, variable_name, provider_deployment) DO NOTHING",
        )
        .bind(set.0)
        .bind(id.to_string())
        .bind(name)
        .execute(self.db.pool())
        .await?;
        Ok(self.pin_fetch(set, name).await?.unwrap_or(id))
    }

    /// Deletes the deployment's sets except `keep` and those an instance still uses (after a
    /// successful deploy, as the Ruby director does).
    pub async fn variable_sets_cleanup(
        &self,
        deployment: &str,
        keep: &[VariableSetId],
    ) -> Result<u64, ConfigServerError> {
        let mut tx = self.db.pool().begin().await?;
        let doomed: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM variable_sets WHERE deployment = $1 AND id NOT IN \
             (SELECT variable_set_id FROM instances WHERE variable_set_id IS NOT NULL)",
        )
        .bind(deployment)
        .fetch_all(&mut *tx)
        .await?;
        let mut deleted = 0;
        for (id,) in doomed {
            if keep.contains(&VariableSetId(id)) {
                continue;
            }
            sqlx::query("DELETE FROM variables WHERE variable_set_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            deleted += sqlx::query("DELETE FROM variable_sets WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    /// Forgets every set of a deleted deployment (stored values stay, as in CredHub).
    pub async fn variable_sets_delete(&self, deployment: &str) -> Result<(), ConfigServerError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "DELETE FROM variables WHERE variable_set_id IN \
             (SELECT id FROM variable_sets WHERE deployment = $1)",
        )
        .bind(deployment)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM variable_sets WHERE deployment = $1")
            .bind(deployment)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- deploy-time generation --------------------------------------------------------

    /// Generates (or reuses) the manifest's `variables:` in declaration order, so a CA exists
    /// before the certificates it signs, and pins each in the deploy's writable `set`.
    pub async fn variables_generate(
        &self,
        set: &VariableSet,
        specs: &[VariableSpec],
        opts: GenerateOpts,
    ) -> Result<Vec<VariableRef>, ConfigServerError> {
        let previous = self.variable_set_previous(set).await?;
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            variable_name_validate(&spec.name)?;
            let name = name_absolute(&self.director_name, &set.deployment, &spec.name);
            if !set.writable {
                return Err(ConfigServerError::Invalid(format!(
                    "Variable '{name}' cannot be generated. Variable generation allowed only during deploy action"
                )));
            }
            let mut options = match &spec.options {
                Value::Null => Value::Object(Default::default()),
                Value::Object(_) => spec.options.clone(),
                _ => {
                    return Err(ConfigServerError::Invalid(format!(
                        "options of variable with name '{}' is not a Hash",
                        spec.name
                    )));
                }
            };
            let previous_id = match &previous {
                Some(p) => self.pin_fetch(p.id, &name).await?,
                None => None,
            };
            let latest = spec.update_strategy == UpdateStrategy::OnDeploy
                || opts.stemcell_change
                || previous_id.is_none();
            let id = match previous_id {
                Some(id) if !latest => id,
                _ => {
                    if spec.var_type == "certificate"
                        && let Some(Value::String(ca)) = options.get_mut("ca")
                    {
                        *ca = name_absolute(&self.director_name, &set.deployment, ca);
                    }
                    let mode = spec.update_mode.unwrap_or(if opts.converge {
                        UpdateMode::Converge
                    } else {
                        UpdateMode::NoOverwrite
                    });
                    self.value_generate(&name, &spec.var_type, &options, mode)
                        .await?
                }
            };
            let id = self.pin(set.id, &name, id).await?;
            out.push(VariableRef { id, name });
        }
        Ok(out)
    }

    // ---- interpolation -----------------------------------------------------------------

    /// The value a set gives an absolute root name, pinning the newest value when the set is
    /// still writable. `Err(message)` for names it cannot give.
    async fn set_value_resolve(
        &self,
        set: &VariableSet,
        root: &str,
    ) -> Result<Result<Value, String>, ConfigServerError> {
        if let Some(id) = self.pin_fetch(set.id, root).await? {
            return Ok(match self.value_fetch(id).await? {
                Some(v) => Ok(v.value),
                None => Err(format!(
                    "Failed to find variable '{root}' with id '{id}' from config server: HTTP Code '404', Error: 'The request could not be completed because the credential does not exist or you do not have sufficient authorization.'"
                )),
            });
        }
        if !set.writable {
            return Ok(Err(format!(
                "Expected variable '{root}' to be already versioned in deployment '{}'",
                set.deployment
            )));
        }
        let Some(latest) = self.value_latest(root).await? else {
            return Ok(Err(format!(
                "Failed to find variable '{root}' from config server: HTTP Code '404', Error: 'The request could not be completed because the credential does not exist or you do not have sufficient authorization.'"
            )));
        };
        let pinned = self.pin(set.id, root, latest.id).await?;
        if pinned == latest.id {
            return Ok(Ok(latest.value));
        }
        Ok(match self.value_fetch(pinned).await? {
            Some(v) => Ok(v.value),
            None => Err(format!(
                "Failed to find variable '{root}' with id '{pinned}'"
            )),
        })
    }

    /// `value` with its `((name))` and `((name.key))` placeholders replaced by the values
    /// `set` pins (relative names belong to the set's deployment). Errors name every variable
    /// that failed and the paths (`/a/0/b`, relative to `value`) where it is used.
    pub async fn variables_interpolate(
        &self,
        set: &VariableSet,
        value: &Value,
    ) -> Result<Value, ConfigServerError> {
        let uses = interpolate::uses_collect(value);
        if uses.is_empty() {
            return Ok(value.clone());
        }
        let mut errors = Vec::new();
        let mut roots: HashMap<String, Result<Value, String>> = HashMap::new();
        let mut resolved: HashMap<String, Value> = HashMap::new();
        for (placeholder, paths) in &uses {
            let at = format!(
                " (used at {})",
                paths
                    .iter()
                    .map(|p| format!("'{p}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let name = match interpolate::placeholder_name(placeholder) {
                Ok(name) => name,
                Err(message) => {
                    errors.push(format!("{message}{at}"));
                    continue;
                }
            };
            // Split before prefixing: the director or deployment name may hold dots.
            let mut keys = name.split('.');
            let root = name_absolute(
                &self.director_name,
                &set.deployment,
                keys.next().unwrap_or_default(),
            );
            if !roots.contains_key(&root) {
                let v = self.set_value_resolve(set, &root).await?;
                roots.insert(root.clone(), v);
            }
            let mut current = match &roots[&root] {
                Ok(v) => v,
                Err(message) => {
                    errors.push(format!("{message}{at}"));
                    continue;
                }
            };
            let mut parent = root.clone();
            let mut failed = None;
            for key in keys {
                match current.as_object() {
                    Some(m) if m.contains_key(key) => current = &m[key],
                    Some(_) => {
                        failed = Some(format!(
                            "Expected parent '{parent}' hash to have key '{key}'"
                        ));
                        break;
                    }
                    None => {
                        failed = Some(format!("Expected parent '{parent}' to be a hash"));
                        break;
                    }
                }
                parent.push('.');
                parent.push_str(key);
            }
            match failed {
                Some(why) => errors.push(format!(
                    "Failed to fetch variable '{root}' from config server: {why}{at}"
                )),
                None => {
                    resolved.insert(placeholder.clone(), current.clone());
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigServerError::Fetch(errors));
        }
        interpolate::substitute(value, &resolved).map_err(ConfigServerError::Placement)
    }
}
