//! The `stemcells` table and the `update_stemcell` / `delete_stemcell` tasks (director-api
//! §4.1).

use async_trait::async_trait;
use bosh_cpi_protocol::methods::CreateStemcellArgs;
use bosh_release::archive::ExtractLimits;
use bosh_types::ids::StemcellCid;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::path::PathBuf;

use crate::db::{Db, DbError, now_secs};
use crate::deployments::{self, NameVersion};
use crate::events::task_events_wrap;
use crate::locks::LockSpec;
use crate::services::{Services, error_text};
use crate::tasks::runner::{TaskContext, TaskError, TaskJob};
use crate::uploads;

pub const UPDATE_STEMCELL: &str = "update_stemcell";
pub const DELETE_STEMCELL: &str = "delete_stemcell";

/// Ruby's codes.
pub const STEMCELL_INVALID: u32 = 50001;
pub const STEMCELL_ALREADY_EXISTS: u32 = 50002;
pub const STEMCELL_NOT_FOUND: u32 = 50003;
pub const STEMCELL_IN_USE: u32 = 50004;

#[derive(Debug, Clone)]
pub struct Stemcell {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub operating_system: String,
    pub cid: String,
    pub sha1: String,
    pub api_version: Option<i64>,
    pub cpi: String,
}

fn stemcell_from_row(row: &AnyRow) -> Result<Stemcell, sqlx::Error> {
    Ok(Stemcell {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        operating_system: row.try_get("operating_system")?,
        cid: row.try_get("cid")?,
        sha1: row.try_get("sha1")?,
        api_version: row.try_get("api_version")?,
        cpi: row.try_get("cpi")?,
    })
}

const COLUMNS: &str = "id, name, version, operating_system, cid, sha1, api_version, cpi";

pub async fn stemcell_fetch(
    db: &Db,
    name: &str,
    version: &str,
) -> Result<Option<Stemcell>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stemcells WHERE name = $1 AND version = $2"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(stemcell_from_row).transpose()?)
}

pub async fn stemcell_list(db: &Db) -> Result<Vec<Stemcell>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stemcells ORDER BY name, id"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(stemcell_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Inserts, or (for `fix`) replaces the row with the same name and version.
pub async fn stemcell_upsert(db: &Db, s: &Stemcell) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO stemcells (name, version, operating_system, cid, sha1, api_version, cpi, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (name, version) DO UPDATE SET operating_system = excluded.operating_system, \
         cid = excluded.cid, sha1 = excluded.sha1, api_version = excluded.api_version, cpi = excluded.cpi",
    )
    .bind(&s.name)
    .bind(&s.version)
    .bind(&s.operating_system)
    .bind(&s.cid)
    .bind(&s.sha1)
    .bind(s.api_version)
    .bind(&s.cpi)
    .bind(now_secs())
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn stemcell_delete(db: &Db, id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM stemcells WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deployments whose manifest names this stemcell (by name or by os) and version.
pub async fn stemcell_deployments(db: &Db, s: &Stemcell) -> Result<Vec<String>, DbError> {
    let mut out = Vec::new();
    for d in deployments::deployment_list(db).await? {
        let (_, stemcells) = deployments::manifest_releases_stemcells(&d.manifest);
        let uses = stemcells.iter().any(|NameVersion { name, version }| {
            (name == &s.name || name == &s.operating_system) && version == &s.version
        });
        if uses {
            out.push(d.name);
        }
    }
    Ok(out)
}

/// An element of `GET /stemcells`.
#[derive(Debug, Clone, Serialize)]
pub struct StemcellView {
    pub name: String,
    pub version: String,
    pub operating_system: String,
    pub cid: String,
    pub cpi: String,
    pub deployments: Vec<Value>,
    pub api_version: i64,
    pub id: i64,
}

pub async fn stemcell_view_list(db: &Db) -> Result<Vec<StemcellView>, DbError> {
    let mut out = Vec::new();
    for s in stemcell_list(db).await? {
        let deployments = stemcell_deployments(db, &s)
            .await?
            .into_iter()
            .map(|name| json!({ "name": name }))
            .collect();
        out.push(StemcellView {
            name: s.name,
            version: s.version,
            operating_system: s.operating_system,
            cid: s.cid,
            cpi: s.cpi,
            deployments,
            api_version: s.api_version.unwrap_or(0),
            id: s.id,
        });
    }
    Ok(out)
}

pub(crate) fn stemcell_lock(name: &str) -> LockSpec {
    LockSpec {
        lock_type: "stemcells".to_owned(),
        resource: vec![name.to_owned()],
    }
}

/// Where the tarball of an upload task comes from: a body the API streamed to disk, or a
/// location to fetch.
pub async fn upload_source(
    services: &Services,
    payload: &Value,
    what: &str,
) -> Result<(PathBuf, bool), TaskError> {
    if let Some(path) = payload["path"].as_str() {
        return Ok((PathBuf::from(path), true));
    }
    let location = payload["location"]
        .as_str()
        .ok_or_else(|| TaskError::failed(40001, format!("{what} upload needs a location")))?;
    let dest = services.tmp_path(what);
    let digest = payload["sha1"].as_str();
    uploads::location_fetch(location, digest, &dest)
        .await
        .map_err(|e| {
            let _ = std::fs::remove_file(&dest);
            TaskError::failed(STEMCELL_INVALID, error_text(&e))
        })?;
    Ok((dest, true))
}

/// `update_stemcell`: payload `{"path"|"location", "sha1"?, "fix"?}`.
pub struct UpdateStemcellJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for UpdateStemcellJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let mut context = Map::new();
        if let Some(l) = payload["location"].as_str() {
            context.insert("location".into(), json!(l));
        }
        task_events_wrap(
            ctx,
            "create",
            "stemcell",
            None,
            context,
            self.upload(ctx, &payload),
        )
        .await
    }
}

impl UpdateStemcellJob {
    async fn upload(
        &self,
        ctx: &TaskContext,
        payload: &Value,
    ) -> Result<(String, Option<String>), TaskError> {
        let fix = payload["fix"].as_bool().unwrap_or(false);
        let (tarball, owned) = upload_source(&self.services, payload, "stemcell").await?;
        let result = self.upload_tarball(ctx, &tarball, fix).await;
        if owned {
            let _ = tokio::fs::remove_file(&tarball).await;
        }
        result
    }

    async fn upload_tarball(
        &self,
        ctx: &TaskContext,
        tarball: &std::path::Path,
        fix: bool,
    ) -> Result<(String, Option<String>), TaskError> {
        let stage = ctx.events().stage("Update stemcell", &[], Some(5));
        let t = stage.task("Extracting stemcell archive");
        let dir = self.services.tmp_path("stemcell");
        let extracted = {
            let tarball = tarball.to_owned();
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                bosh_release::stemcell::extract_stemcell_tarball(
                    &tarball,
                    &dir,
                    &ExtractLimits::default(),
                )
                .map_err(|e| error_text(&e))
            })
            .await
            .map_err(|e| TaskError::failed(100, e.to_string()))?
        };
        let cleanup = || {
            let _ = std::fs::remove_dir_all(&dir);
        };
        let (read, image) = match extracted {
            Ok(v) => v,
            Err(message) => {
                cleanup();
                let message = format!("Invalid stemcell: {message}");
                t.failed(&message);
                return Err(TaskError::failed(STEMCELL_INVALID, message));
            }
        };
        t.finished();
        let info = read.info;
        let slug = format!("{}/{}", info.name, info.version);
        ctx.checkpoint().await?;
        let t = stage.task("Verifying stemcell manifest");
        t.finished();

        let lock = stemcell_lock(&info.name);
        ctx.lock(&lock).await?;
        let t = stage.task("Checking if this stemcell already exists");
        let existing = stemcell_fetch(ctx.db(), &info.name, &info.version).await?;
        if existing.is_some() && !fix {
            cleanup();
            let message = format!("Stemcell '{slug}' already exists");
            t.failed(&message);
            return Err(TaskError::failed(STEMCELL_ALREADY_EXISTS, message));
        }
        t.finished();

        let t = stage.task(&format!("Uploading stemcell {slug} to the cloud"));
        let cpi = self.services.task_cpi(ctx)?;
        let cloud_properties: Map<String, Value> =
            bosh_yaml::from_value(&bosh_yaml::Value::Map(info.cloud_properties.clone()))
                .unwrap_or_default();
        let created = cpi
            .create_stemcell(CreateStemcellArgs {
                image_path: image.to_string_lossy().into_owned(),
                cloud_properties,
                options: None,
            })
            .await;
        cleanup();
        let cid = match created {
            Ok(cid) => cid,
            Err(e) => {
                let message = format!("Creating stemcell {slug}: {}", error_text(&e));
                t.failed(&message);
                return Err(TaskError::failed(100, message));
            }
        };
        t.finished();

        let t = stage.task(&format!("Save stemcell {slug} ({cid})"));
        if let Some(old) = &existing
            && let Ok(old_cid) = StemcellCid::new(old.cid.clone())
            && let Err(e) = cpi.delete_stemcell(&old_cid).await
        {
            // `fix` replaces a stemcell whose cloud image may be gone already.
            ctx.info(&format!(
                "Deleting replaced stemcell {}: {}",
                old.cid,
                error_text(&e)
            ));
        }
        stemcell_upsert(
            ctx.db(),
            &Stemcell {
                id: 0,
                name: info.name.clone(),
                version: info.version.clone(),
                operating_system: info.operating_system.clone(),
                cid: cid.as_str().to_owned(),
                sha1: info.sha1.clone(),
                api_version: info.api_version,
                cpi: String::new(),
            },
        )
        .await?;
        t.finished();
        Ok((format!("/stemcells/{slug}"), Some(info.name)))
    }
}

/// `delete_stemcell`: payload `{"name", "version", "force"?}`.
pub struct DeleteStemcellJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for DeleteStemcellJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let name = payload["name"].as_str().unwrap_or_default().to_owned();
        let version = payload["version"].as_str().unwrap_or_default().to_owned();
        let force = payload["force"].as_bool().unwrap_or(false);
        let context: Map<String, Value> = [("version".to_owned(), json!(version))]
            .into_iter()
            .collect();
        task_events_wrap(
            ctx,
            "delete",
            "stemcell",
            Some(name.clone()),
            context,
            async {
                ctx.lock(&stemcell_lock(&name)).await?;
                Ok((self.delete(ctx, &name, &version, force).await?, None))
            },
        )
        .await
    }
}

impl DeleteStemcellJob {
    /// Deletes an unused stemcell from the cloud and the database (also used by clean-up);
    /// the caller holds the stemcell lock.
    pub async fn delete(
        &self,
        ctx: &TaskContext,
        name: &str,
        version: &str,
        force: bool,
    ) -> Result<String, TaskError> {
        let slug = format!("{name}/{version}");
        let stemcell = stemcell_fetch(ctx.db(), name, version)
            .await?
            .ok_or_else(|| {
                TaskError::failed(
                    STEMCELL_NOT_FOUND,
                    format!("Stemcell '{slug}' doesn't exist"),
                )
            })?;
        let users = stemcell_deployments(ctx.db(), &stemcell).await?;
        if !users.is_empty() {
            return Err(TaskError::failed(
                STEMCELL_IN_USE,
                format!("Stemcell '{slug}' is still in use by: {}", users.join(", ")),
            ));
        }
        let stage = ctx
            .events()
            .stage("Deleting stemcell from cloud", &[], Some(1));
        let t = stage.task(&format!("Delete stemcell {slug} ({})", stemcell.cid));
        let cpi = self.services.task_cpi(ctx)?;
        if let Ok(cid) = StemcellCid::new(stemcell.cid.clone())
            && let Err(e) = cpi.delete_stemcell(&cid).await
        {
            let message = format!("Deleting stemcell {slug}: {}", error_text(&e));
            if !force {
                t.failed(&message);
                return Err(TaskError::failed(100, message));
            }
            ctx.info(&format!("{message} (ignored: force)"));
        }
        stemcell_delete(ctx.db(), stemcell.id).await?;
        t.finished();
        Ok(format!("Deleted stemcell '{slug}'"))
    }
}
