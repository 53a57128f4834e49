//! The `configs` table: versioned cloud/runtime/cpi/resurrection/deploy/… configs by
//! (type, name). Every update is a new row; the newest non-deleted row is current. Deleting
//! a (type, name) hides all its versions.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Db, DbError, now_secs};

/// A stored config version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: i64,
    pub config_type: String,
    pub name: String,
    pub content: String,
    pub team: Option<String>,
    pub created_at: i64,
}

/// The config object of `/configs` (director-api §5.1): the id is a string.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigView {
    pub id: String,
    #[serde(rename = "type")]
    pub config_type: String,
    pub name: String,
    pub content: String,
    pub team: Option<String>,
    pub created_at: String,
    pub current: bool,
}

/// Ruby's timestamp text, e.g. `2024-05-01 12:00:00 UTC`.
pub fn time_text(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

impl Config {
    pub fn view(&self, current: bool) -> ConfigView {
        ConfigView {
            id: self.id.to_string(),
            config_type: self.config_type.clone(),
            name: self.name.clone(),
            content: self.content.clone(),
            team: self.team.clone(),
            created_at: time_text(self.created_at),
            current,
        }
    }
}

const COLUMNS: &str = "id, type, name, content, team, created_at";

fn config_from_row(row: &AnyRow) -> Result<Config, sqlx::Error> {
    Ok(Config {
        id: row.try_get("id")?,
        config_type: row.try_get("type")?,
        name: row.try_get("name")?,
        content: row.try_get("content")?,
        team: row.try_get("team")?,
        created_at: row.try_get("created_at")?,
    })
}

fn rows_to_configs(rows: &[AnyRow]) -> Result<Vec<Config>, DbError> {
    Ok(rows
        .iter()
        .map(config_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// The current version of (type, name).
pub async fn config_latest(
    db: &Db,
    config_type: &str,
    name: &str,
) -> Result<Option<Config>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM configs WHERE type = $1 AND name = $2 AND deleted = 0 \
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(config_type)
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(config_from_row).transpose()?)
}

pub async fn config_fetch(db: &Db, id: i64) -> Result<Option<Config>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM configs WHERE id = $1 AND deleted = 0"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(config_from_row).transpose()?)
}

/// Whether `config` is the current version of its (type, name).
pub async fn config_is_current(db: &Db, config: &Config) -> Result<bool, DbError> {
    Ok(config_latest(db, &config.config_type, &config.name)
        .await?
        .is_some_and(|c| c.id == config.id))
}

/// Newest first. `latest` keeps only the current version per (type, name).
pub async fn config_list(
    db: &Db,
    config_type: Option<&str>,
    name: Option<&str>,
    latest: bool,
    limit: Option<i64>,
) -> Result<Vec<(Config, bool)>, DbError> {
    let mut sql = format!("SELECT {COLUMNS} FROM configs c WHERE deleted = 0");
    let mut binds: Vec<&str> = Vec::new();
    if let Some(t) = config_type {
        binds.push(t);
        sql.push_str(&format!(" AND type = ${}", binds.len()));
    }
    if let Some(n) = name {
        binds.push(n);
        sql.push_str(&format!(" AND name = ${}", binds.len()));
    }
    sql.push_str(" ORDER BY id DESC");
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(*b);
    }
    let all = rows_to_configs(&query.fetch_all(db.pool()).await?)?;
    // Newest first, so the first row seen per (type, name) is the current one.
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in all {
        let current = seen.insert((c.config_type.clone(), c.name.clone()));
        if latest && !current {
            continue;
        }
        out.push((c, current));
    }
    // With `latest=true` the Ruby director lists every current config whatever the `limit`
    // (plain `bosh configs` sends `limit=1`); the limit only bounds a history listing.
    if !latest && let Some(l) = limit {
        out.truncate(l.max(0) as usize);
    }
    Ok(out)
}

/// What [`config_create`] did.
#[derive(Debug, Clone)]
pub enum ConfigCreate {
    Created(Config),
    /// The content equals the current version, which is returned unchanged.
    Unchanged(Config),
    /// `expected_latest_id` did not match (`latest_id` is `"0"` when there is none).
    Conflict {
        latest_id: String,
    },
}

/// Stores a new version unless the content is unchanged. With `expected_latest_id`, the
/// insert only happens when the current version still has that id (optimistic concurrency).
pub async fn config_create(
    db: &Db,
    config_type: &str,
    name: &str,
    content: &str,
    expected_latest_id: Option<&str>,
) -> Result<ConfigCreate, DbError> {
    let mut tx = db.pool().begin().await?;
    let latest = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM configs WHERE type = $1 AND name = $2 AND deleted = 0 \
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(config_type)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .as_ref()
    .map(config_from_row)
    .transpose()?;
    let latest_id = latest
        .as_ref()
        .map_or_else(|| "0".to_owned(), |c| c.id.to_string());
    if let Some(expected) = expected_latest_id
        && expected != latest_id
    {
        return Ok(ConfigCreate::Conflict { latest_id });
    }
    if let Some(l) = latest
        && l.content == content
    {
        return Ok(ConfigCreate::Unchanged(l));
    }
    let row = sqlx::query(&format!(
        "INSERT INTO configs (type, name, content, created_at, deleted) VALUES ($1, $2, $3, $4, 0) \
         RETURNING {COLUMNS}"
    ))
    .bind(config_type)
    .bind(name)
    .bind(content)
    .bind(now_secs())
    .fetch_one(&mut *tx)
    .await?;
    let created = config_from_row(&row)?;
    tx.commit().await?;
    Ok(ConfigCreate::Created(created))
}

/// Hides every version of (type, name). Returns whether anything was deleted.
pub async fn config_delete(db: &Db, config_type: &str, name: &str) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE configs SET deleted = 1 WHERE type = $1 AND name = $2 AND deleted = 0")
            .bind(config_type)
            .bind(name)
            .execute(db.pool())
            .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn config_delete_by_id(db: &Db, id: i64) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE configs SET deleted = 1 WHERE id = $1 AND deleted = 0")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Checks config content for its type. Known types are parsed with the `bosh-types` models;
/// the rest must be a YAML hash. The message names the offending path and line.
pub fn config_validate(config_type: &str, content: &str) -> Result<(), String> {
    use bosh_types::{
        cloud_config::CloudConfig, cpi_config::CpiConfig, runtime_config::RuntimeConfig,
    };
    let errors = match config_type {
        "cloud" => CloudConfig::parse_fragment(content).err(),
        "runtime" => RuntimeConfig::parse(content).err(),
        "cpi" => CpiConfig::parse(content).err(),
        _ => {
            return match bosh_yaml::parse(content) {
                Ok(v) if v.is_null() || v.as_map().is_some() => Ok(()),
                Ok(_) => Err("Config must be a hash".to_owned()),
                Err(e) => Err(format!("Config is not valid YAML: {e}")),
            };
        }
    };
    match errors {
        None => Ok(()),
        Some(errs) => Err(errs.to_string()),
    }
}

/// One line of a diff: `[text, "added" | "removed" | null]`.
pub type DiffLine = (String, Option<&'static str>);

/// A line diff of two YAML documents. Both sides are re-emitted first, so formatting-only
/// differences (the CLI re-serialises what users write) do not show up.
pub fn yaml_diff(old: &str, new: &str) -> Vec<DiffLine> {
    let norm = |s: &str| -> String {
        if s.trim().is_empty() {
            return String::new();
        }
        match bosh_yaml::parse(s) {
            Ok(v) if !v.is_null() => bosh_yaml::to_string(&v),
            _ => s.to_owned(),
        }
    };
    let (a, b) = (norm(old), norm(new));
    if a == b {
        return Vec::new();
    }
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // Longest common subsequence; configs are small enough for the quadratic table.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push((a[i].to_owned(), None));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push((b[j].to_owned(), Some("added")));
            j += 1;
        } else {
            out.push((a[i].to_owned(), Some("removed")));
            i += 1;
        }
    }
    out
}

/// The diff as JSON: an array of two-element arrays.
pub fn diff_json(lines: &[DiffLine]) -> serde_json::Value {
    serde_json::Value::Array(
        lines
            .iter()
            .map(|(text, status)| serde_json::json!([text, status]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_added_and_removed_lines_and_ignores_formatting() {
        assert!(yaml_diff("a: 1\nb: 2\n", "a:   1\nb: 2").is_empty());
        let d = yaml_diff("a: 1\nb: 2\n", "a: 1\nb: 3\n");
        assert!(d.contains(&("b: 2".to_owned(), Some("removed"))));
        assert!(d.contains(&("b: 3".to_owned(), Some("added"))));
        assert!(d.contains(&("a: 1".to_owned(), None)));
        let from_empty = yaml_diff("", "x: z\n");
        assert_eq!(from_empty, vec![("x: z".to_owned(), Some("added"))]);
    }

    #[test]
    fn cloud_config_validation_names_the_path() {
        let err = config_validate("cloud", "vm_types:\n- cloud_properties: {}\n").unwrap_err();
        assert!(err.contains("vm_types"), "{err}");
        assert!(config_validate("resurrection", "- a\n").is_err());
        assert!(config_validate("deploy", "flags: [fix]\n").is_ok());
    }
}
