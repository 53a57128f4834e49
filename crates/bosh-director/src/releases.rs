//! Releases, their versions, packages, jobs (`templates`) and compiled packages, and the
//! `update_release` / `delete_release` tasks (director-api §4.2, §4.3).
//!
//! Every archive is stored once by content: the `blobs` table maps a SHA-256 of the archive
//! to a blobstore id, and every package, job or compiled package row with that content
//! points at the same blob. A release version is written with `update_completed = 0` and
//! marked complete last, so an interrupted upload leaves a "dirty" version that the next
//! upload finishes.

use async_trait::async_trait;
use bosh_release::tarball_read::{ReadOptions, ReleaseTarball, read_release_tarball_with};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::blobstore::Blobstore;
use crate::db::{Db, DbError, now_secs};
use crate::deployments;
use crate::events::task_events_wrap;
use crate::locks::LockSpec;
use crate::services::{Services, error_text};
use crate::stemcells::upload_source;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob};
use crate::uploads;

pub const UPDATE_RELEASE: &str = "update_release";
pub const DELETE_RELEASE: &str = "delete_release";

/// Ruby's codes.
pub const RELEASE_INVALID: u32 = 30001;
pub const RELEASE_ALREADY_EXISTS: u32 = 30003;
pub const RELEASE_NOT_FOUND: u32 = 30005;
pub const RELEASE_VERSION_NOT_FOUND: u32 = 30006;
pub const RELEASE_IN_USE: u32 = 30007;
pub const RELEASE_MISSING_PACKAGE: u32 = 30008;
pub const RELEASE_INCONSISTENT: u32 = 30009;

// ---------------------------------------------------------------------------------------
// Store

#[derive(Debug, Clone)]
pub struct ReleaseVersion {
    pub id: i64,
    pub release_id: i64,
    pub version: String,
    pub commit_hash: String,
    pub uncommitted_changes: bool,
    pub update_completed: bool,
}

pub async fn release_id_fetch(db: &Db, name: &str) -> Result<Option<i64>, DbError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM releases WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|r| r.0))
}

pub async fn release_ensure(db: &Db, name: &str) -> Result<i64, DbError> {
    sqlx::query("INSERT INTO releases (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(db.pool())
        .await?;
    release_id_fetch(db, name)
        .await?
        .ok_or(DbError::Query(sqlx::Error::RowNotFound))
}

/// Release names, sorted.
pub async fn release_list(db: &Db) -> Result<Vec<(i64, String)>, DbError> {
    Ok(
        sqlx::query_as("SELECT id, name FROM releases ORDER BY name")
            .fetch_all(db.pool())
            .await?,
    )
}

fn release_version_from_row(row: &sqlx::any::AnyRow) -> Result<ReleaseVersion, sqlx::Error> {
    Ok(ReleaseVersion {
        id: row.try_get("id")?,
        release_id: row.try_get("release_id")?,
        version: row.try_get("version")?,
        commit_hash: row.try_get("commit_hash")?,
        uncommitted_changes: row.try_get::<i64, _>("uncommitted_changes")? != 0,
        update_completed: row.try_get::<i64, _>("update_completed")? != 0,
    })
}

const RV_COLUMNS: &str =
    "id, release_id, version, commit_hash, uncommitted_changes, update_completed";

/// Versions of a release, oldest version first (semi-semantic order).
pub async fn release_version_list(
    db: &Db,
    release_id: i64,
) -> Result<Vec<ReleaseVersion>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {RV_COLUMNS} FROM release_versions WHERE release_id = $1"
    ))
    .bind(release_id)
    .fetch_all(db.pool())
    .await?;
    let mut out = rows
        .iter()
        .map(release_version_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| version_cmp(&a.version, &b.version));
    Ok(out)
}

fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use bosh_types::version::Version;
    match (Version::parse(a), Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

pub async fn release_version_fetch(
    db: &Db,
    release_id: i64,
    version: &str,
) -> Result<Option<ReleaseVersion>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {RV_COLUMNS} FROM release_versions WHERE release_id = $1 AND version = $2"
    ))
    .bind(release_id)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(release_version_from_row).transpose()?)
}

async fn release_version_create(
    db: &Db,
    release_id: i64,
    version: &str,
    commit_hash: &str,
    uncommitted: bool,
) -> Result<i64, DbError> {
    let row: (i64,) = sqlx::query_as(
        "INSERT INTO release_versions (release_id, version, commit_hash, uncommitted_changes, update_completed, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
    )
    .bind(release_id)
    .bind(version)
    .bind(commit_hash)
    .bind(i64::from(uncommitted))
    .bind(now_secs())
    .fetch_one(db.pool())
    .await?;
    Ok(row.0)
}

async fn release_version_complete(db: &Db, id: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE release_versions SET update_completed = 1 WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PackageRow {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub fingerprint: String,
    pub sha1: Option<String>,
    pub blobstore_id: Option<String>,
    pub dependencies: Vec<String>,
}

fn package_from_row(row: &sqlx::any::AnyRow) -> Result<PackageRow, sqlx::Error> {
    let deps: String = row.try_get("dependencies")?;
    Ok(PackageRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        fingerprint: row.try_get("fingerprint")?,
        sha1: row.try_get("sha1")?,
        blobstore_id: row.try_get("blobstore_id")?,
        dependencies: serde_json::from_str(&deps).unwrap_or_default(),
    })
}

const PKG_COLUMNS: &str =
    "p.id, p.name, p.version, p.fingerprint, p.sha1, p.blobstore_id, p.dependencies";

async fn package_fetch(
    db: &Db,
    release_id: i64,
    name: &str,
    version: &str,
) -> Result<Option<PackageRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {PKG_COLUMNS} FROM packages p WHERE p.release_id = $1 AND p.name = $2 AND p.version = $3"
    ))
    .bind(release_id)
    .bind(name)
    .bind(version)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(package_from_row).transpose()?)
}

/// Any stored source package with this fingerprint and a blob (from any release).
pub async fn package_with_blob_by_fingerprint(
    db: &Db,
    fingerprint: &str,
) -> Result<Option<PackageRow>, DbError> {
    let row = sqlx::query(&format!(
        "SELECT {PKG_COLUMNS} FROM packages p WHERE p.fingerprint = $1 AND p.blobstore_id IS NOT NULL ORDER BY p.id LIMIT 1"
    ))
    .bind(fingerprint)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(package_from_row).transpose()?)
}

/// Packages of a release version, by name.
pub async fn release_version_packages(db: &Db, rv_id: i64) -> Result<Vec<PackageRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {PKG_COLUMNS} FROM packages p JOIN release_versions_packages j ON j.package_id = p.id \
         WHERE j.release_version_id = $1 ORDER BY p.name"
    ))
    .bind(rv_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(package_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

#[derive(Debug, Clone)]
pub struct TemplateRow {
    pub id: i64,
    pub name: String,
    pub version: String,
    pub fingerprint: String,
    pub sha1: String,
    pub blobstore_id: String,
    pub spec: Value,
}

fn template_from_row(row: &sqlx::any::AnyRow) -> Result<TemplateRow, sqlx::Error> {
    let spec: String = row.try_get("spec")?;
    Ok(TemplateRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        fingerprint: row.try_get("fingerprint")?,
        sha1: row.try_get("sha1")?,
        blobstore_id: row.try_get("blobstore_id")?,
        spec: serde_json::from_str(&spec).unwrap_or(Value::Null),
    })
}

const TPL_COLUMNS: &str = "t.id, t.name, t.version, t.fingerprint, t.sha1, t.blobstore_id, t.spec";

pub async fn release_version_templates(db: &Db, rv_id: i64) -> Result<Vec<TemplateRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {TPL_COLUMNS} FROM templates t JOIN release_versions_templates j ON j.template_id = t.id \
         WHERE j.release_version_id = $1 ORDER BY t.name"
    ))
    .bind(rv_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .iter()
        .map(template_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct CompiledPackageView {
    pub stemcell: String,
    pub sha1: String,
    pub blobstore_id: String,
}

pub async fn compiled_package_list(
    db: &Db,
    package_id: i64,
) -> Result<Vec<CompiledPackageView>, DbError> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT stemcell_os, stemcell_version, sha1, blobstore_id FROM compiled_packages \
         WHERE package_id = $1 ORDER BY id",
    )
    .bind(package_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(os, v, sha1, blobstore_id)| CompiledPackageView {
            stemcell: format!("{os}/{v}"),
            sha1,
            blobstore_id,
        })
        .collect())
}

async fn join_insert(
    db: &Db,
    table: &str,
    column: &str,
    rv_id: i64,
    id: i64,
) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO {table} (release_version_id, {column}) VALUES ($1, $2) ON CONFLICT DO NOTHING"
    ))
    .bind(rv_id)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Releases a deployment manifest names, as (name, version).
async fn releases_in_use(db: &Db) -> Result<Vec<(String, String, String)>, DbError> {
    let mut out = Vec::new();
    for d in deployments::deployment_list(db).await? {
        let (releases, _) = deployments::manifest_releases_stemcells(&d.manifest);
        for r in releases {
            out.push((d.name.clone(), r.name, r.version));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Views

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseVersionView {
    pub version: String,
    pub commit_hash: String,
    pub uncommitted_changes: bool,
    pub currently_deployed: bool,
    pub job_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    pub name: String,
    pub release_versions: Vec<ReleaseVersionView>,
}

/// `GET /releases`.
pub async fn release_view_list(db: &Db) -> Result<Vec<ReleaseView>, DbError> {
    let in_use = releases_in_use(db).await?;
    let mut out = Vec::new();
    for (id, name) in release_list(db).await? {
        let mut versions = Vec::new();
        for rv in release_version_list(db, id).await? {
            let job_names = release_version_templates(db, rv.id)
                .await?
                .into_iter()
                .map(|t| t.name)
                .collect();
            versions.push(ReleaseVersionView {
                currently_deployed: in_use
                    .iter()
                    .any(|(_, n, v)| n == &name && v == &rv.version),
                version: rv.version,
                commit_hash: rv.commit_hash,
                uncommitted_changes: rv.uncommitted_changes,
                job_names,
            });
        }
        out.push(ReleaseView {
            name,
            release_versions: versions,
        });
    }
    Ok(out)
}

fn links(spec: &Value, key: &str) -> Value {
    let items = spec[key].as_array().cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert("name".into(), l["name"].clone());
                m.insert("type".into(), l["type"].clone());
                if let Some(o) = l.get("optional").filter(|o| !o.is_null()) {
                    m.insert("optional".into(), o.clone());
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// `GET /releases/{name}?version=` (inspect).
pub async fn release_version_inspect(db: &Db, rv_id: i64) -> Result<Value, DbError> {
    let mut jobs = Vec::new();
    for t in release_version_templates(db, rv_id).await? {
        jobs.push(json!({
            "name": t.name,
            "blobstore_id": t.blobstore_id,
            "sha1": t.sha1,
            "fingerprint": t.fingerprint,
            "consumes": links(&t.spec, "consumes"),
            "provides": links(&t.spec, "provides"),
        }));
    }
    let mut packages = Vec::new();
    for p in release_version_packages(db, rv_id).await? {
        packages.push(json!({
            "name": p.name,
            "blobstore_id": p.blobstore_id.unwrap_or_default(),
            "sha1": p.sha1.unwrap_or_default(),
            "fingerprint": p.fingerprint,
            "dependencies": p.dependencies,
            "compiled_packages": compiled_package_list(db, p.id).await?,
        }));
    }
    Ok(json!({"jobs": jobs, "packages": packages}))
}

/// `POST /packages/matches`: fingerprints of the manifest's packages we hold a blob for.
pub async fn package_matches(db: &Db, manifest: &bosh_yaml::Value) -> Result<Vec<String>, DbError> {
    if release_version_dirty(db, manifest).await? {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for fp in manifest_fingerprints(manifest, "packages") {
        if package_with_blob_by_fingerprint(db, &fp).await?.is_some() {
            out.push(fp);
        }
    }
    Ok(out)
}

/// `POST /packages/matches_compiled`: fingerprints with a compiled package for the stemcell
/// each entry names.
pub async fn package_matches_compiled(
    db: &Db,
    manifest: &bosh_yaml::Value,
) -> Result<Vec<String>, DbError> {
    if release_version_dirty(db, manifest).await? {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let Some(items) = manifest.get("compiled_packages").and_then(|v| v.as_seq()) else {
        return Ok(out);
    };
    for item in items {
        let (Some(fp), Some(stemcell)) = (
            item.get("fingerprint").and_then(|v| v.as_str()),
            item.get("stemcell").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let Some((os, version)) = stemcell.split_once('/') else {
            continue;
        };
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT c.id FROM compiled_packages c JOIN packages p ON p.id = c.package_id \
             WHERE p.fingerprint = $1 AND c.stemcell_os = $2 AND c.stemcell_version = $3 LIMIT 1",
        )
        .bind(fp)
        .bind(os)
        .bind(version)
        .fetch_optional(db.pool())
        .await?;
        if found.is_some() {
            out.push(fp.to_owned());
        }
    }
    Ok(out)
}

fn manifest_fingerprints(manifest: &bosh_yaml::Value, key: &str) -> Vec<String> {
    manifest
        .get(key)
        .and_then(|v| v.as_seq())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    i.get("fingerprint")
                        .and_then(|f| f.as_str())
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn yaml_scalar(v: Option<&bosh_yaml::Value>) -> Option<String> {
    match v? {
        bosh_yaml::Value::String(s) => Some(s.clone()),
        bosh_yaml::Value::Int(i) => Some(i.to_string()),
        bosh_yaml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Ruby answers no matches while the named version exists but its upload never completed,
/// so the CLI sends everything again.
async fn release_version_dirty(db: &Db, manifest: &bosh_yaml::Value) -> Result<bool, DbError> {
    let (Some(name), Some(version)) = (
        yaml_scalar(manifest.get("name")),
        yaml_scalar(manifest.get("version")),
    ) else {
        return Ok(false);
    };
    let Some(rid) = release_id_fetch(db, &name).await? else {
        return Ok(false);
    };
    Ok(release_version_fetch(db, rid, &version)
        .await?
        .is_some_and(|rv| !rv.update_completed))
}

// ---------------------------------------------------------------------------------------
// Blobs by content

/// Stores `path` in the blobstore unless a blob with the same content is already there;
/// returns its blobstore id. `fix` re-uploads content whose blob went missing.
pub async fn blob_store_by_content(
    db: &Db,
    blobstore: &dyn Blobstore,
    path: &Path,
) -> Result<String, TaskError> {
    let digest = {
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || uploads::file_sha256(&owned))
            .await
            .map_err(|e| TaskError::failed(100, e.to_string()))?
            .map_err(|e| TaskError::failed(100, format!("reading {}: {e}", path.display())))?
    };
    let bs_err = |e: crate::blobstore::BlobstoreError| TaskError::failed(100, error_text(&e));
    let existing: Option<(String,)> =
        sqlx::query_as("SELECT blobstore_id FROM blobs WHERE digest = $1")
            .bind(&digest)
            .fetch_optional(db.pool())
            .await
            .map_err(DbError::from)?;
    if let Some((id,)) = existing {
        if !blobstore.exists(&id).await.map_err(bs_err)? {
            blobstore.put_file_as(&id, path).await.map_err(bs_err)?;
        }
        return Ok(id);
    }
    let id = blobstore.put_file(path).await.map_err(bs_err)?;
    let size = std::fs::metadata(path).map(|m| m.len() as i64).unwrap_or(0);
    sqlx::query("INSERT INTO blobs (digest, blobstore_id, size) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
        .bind(&digest)
        .bind(&id)
        .bind(size)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
    let (stored,): (String,) = sqlx::query_as("SELECT blobstore_id FROM blobs WHERE digest = $1")
        .bind(&digest)
        .fetch_one(db.pool())
        .await
        .map_err(DbError::from)?;
    if stored != id {
        // Another upload stored the same content first; keep theirs.
        let _ = blobstore.delete(&id).await;
    }
    Ok(stored)
}

/// Deletes blobs no row refers to any more (also used by clean-up).
pub(crate) async fn blobs_collect(
    db: &Db,
    blobstore: &dyn Blobstore,
    ids: BTreeSet<String>,
) -> Result<(), TaskError> {
    for id in ids {
        let (refs,): (i64,) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM packages WHERE blobstore_id = $1) \
             + (SELECT COUNT(*) FROM templates WHERE blobstore_id = $1) \
             + (SELECT COUNT(*) FROM compiled_packages WHERE blobstore_id = $1)",
        )
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .map_err(DbError::from)?;
        if refs == 0 {
            sqlx::query("DELETE FROM blobs WHERE blobstore_id = $1")
                .bind(&id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            if let Err(e) = blobstore.delete(&id).await {
                tracing::warn!(blob = %id, error = %error_text(&e), "cannot delete an unused blob");
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// update_release

pub(crate) fn release_lock(name: &str) -> LockSpec {
    LockSpec {
        lock_type: "release".to_owned(),
        resource: vec![name.to_owned()],
    }
}

/// What an upload may do beyond storing a new version.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadOptions {
    /// Replace stored blobs of jobs and packages that went missing, and accept a version that
    /// already exists with other content.
    pub fix: bool,
    /// Store a dev release as the next dev version after the latest one on the director.
    pub rebase: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RebaseError {
    #[error("release version '{0}' is not a valid semi-semantic version")]
    Invalid(String, #[source] bosh_types::version::VersionError),
    #[error(
        "Failed to Rebase - Invalid Version: '{0}' is a final version; only dev releases \
         (a version with a post-release such as '+dev.1') can be rebased"
    )]
    Final(String),
    #[error("Failed to Rebase - cannot increment the post-release of '{0}'")]
    Increment(String, #[source] bosh_types::version::VersionError),
}

/// A release version as the real director reads one: the old dev form `1.2-dev` (`N-dev`
/// after a final version) is the post-release `1+dev.2`.
pub fn release_version_parse(
    version: &str,
) -> Result<bosh_types::version::Version, bosh_types::version::VersionError> {
    use bosh_types::version::Version;
    if let Some(head) = version.strip_suffix("-dev")
        && let Some((release, dev)) = head.rsplit_once('.')
        && !dev.is_empty()
        && dev.bytes().all(|b| b.is_ascii_digit())
    {
        return Version::parse(&format!("{release}+dev.{dev}"));
    }
    Version::parse(version)
}

/// The version a rebased upload gets (the real director's `ReleaseVersionList#rebase`): among
/// the stored versions with the uploaded one's release and pre-release segments, the latest
/// gets its post-release incremented (`+dev.1` added to a final one); with none, the uploaded
/// version's post-release becomes `dev.1`. Only dev versions can be rebased.
pub fn version_rebase(uploaded: &str, stored: &[String]) -> Result<String, RebaseError> {
    use bosh_types::version::{Version, VersionSegment};
    let parsed =
        release_version_parse(uploaded).map_err(|e| RebaseError::Invalid(uploaded.into(), e))?;
    if parsed.post_release().is_empty() {
        return Err(RebaseError::Final(uploaded.to_owned()));
    }
    // Versions compare equal when their segments do, trailing zeros aside (`1` == `1.0`).
    let base = |v: &Version| {
        Version::from_segments(
            v.release().clone(),
            v.pre_release().clone(),
            VersionSegment::default(),
        )
    };
    let wanted = base(&parsed).map_err(|e| RebaseError::Invalid(uploaded.into(), e))?;
    let latest = stored
        .iter()
        .filter_map(|s| release_version_parse(s).ok())
        .filter(|v| base(v).is_ok_and(|b| b == wanted))
        .max();
    let dev_1 = VersionSegment::parse("dev.1").expect("a valid segment");
    let next = match latest {
        Some(v) => v
            .increment_post_release(&dev_1)
            .map_err(|e| RebaseError::Increment(v.to_string(), e))?,
        None => parsed.with_post_release(dev_1),
    };
    Ok(next.to_string())
}

/// `update_release`: payload `{"path"|"location", "sha1"?, "fix"?, "rebase"?}`.
pub struct UpdateReleaseJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for UpdateReleaseJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let mut context = Map::new();
        if let Some(l) = payload["location"].as_str() {
            context.insert("location".into(), json!(l));
        }
        task_events_wrap(ctx, "create", "release", None, context, async {
            let opts = UploadOptions {
                fix: payload["fix"].as_bool().unwrap_or(false),
                rebase: payload["rebase"].as_bool().unwrap_or(false),
            };
            let (tarball, owned) = upload_source(&self.services, &payload, "release")
                .await
                .map_err(|e| match e {
                    TaskError::Failed { message, .. } => {
                        TaskError::failed(RELEASE_INVALID, message)
                    }
                    other => other,
                })?;
            let result = self.upload(ctx, &tarball, opts).await;
            if owned {
                let _ = tokio::fs::remove_file(&tarball).await;
            }
            result
        })
        .await
    }
}

impl UpdateReleaseJob {
    async fn upload(
        &self,
        ctx: &TaskContext,
        tarball: &Path,
        opts: UploadOptions,
    ) -> Result<(String, Option<String>), TaskError> {
        let stage = ctx.events().stage("Extracting release", &[], Some(1));
        let t = stage.task("Extracting release");
        let read = {
            let tarball = tarball.to_owned();
            tokio::task::spawn_blocking(move || {
                let opts = ReadOptions {
                    allow_missing_packages: true,
                    ..ReadOptions::default()
                };
                read_release_tarball_with(&tarball, &opts).map_err(|e| error_text(&e))
            })
            .await
            .map_err(|e| TaskError::failed(100, e.to_string()))?
        };
        let release = match read {
            Ok(r) => r,
            Err(message) => {
                let message = format!("Invalid release: {message}");
                t.failed(&message);
                return Err(TaskError::failed(RELEASE_INVALID, message));
            }
        };
        t.finished();
        ctx.checkpoint().await?;
        let name = release.manifest.name.clone();
        if opts.rebase {
            // Refused before anything is stored (the real director leaves an empty release).
            if let Err(e @ RebaseError::Final(_)) = version_rebase(&release.manifest.version, &[]) {
                return Err(TaskError::failed(100, e.to_string()));
            }
        }
        ctx.lock(&release_lock(&name)).await?;
        let version = self.process(ctx, &release, opts).await?;
        let outcome = format!("Created release '{name}/{version}'");
        ctx.info(&outcome);
        Ok((outcome, Some(name)))
    }

    async fn process(
        &self,
        ctx: &TaskContext,
        release: &ReleaseTarball,
        opts: UploadOptions,
    ) -> Result<String, TaskError> {
        let db = ctx.db();
        let m = &release.manifest;
        let fix = opts.fix;
        let release_id = release_ensure(db, &m.name).await?;
        let version = if opts.rebase {
            let stored: Vec<String> = release_version_list(db, release_id)
                .await?
                .into_iter()
                .map(|rv| rv.version)
                .collect();
            let version = version_rebase(&m.version, &stored)
                .map_err(|e| TaskError::failed(100, error_text(&e)))?;
            ctx.info(&format!(
                "Rebased release '{}/{}' to version '{version}'",
                m.name, m.version
            ));
            version
        } else {
            m.version.clone()
        };
        let slug = format!("{}/{version}", m.name);
        let stage = ctx
            .events()
            .stage("Resolving package dependencies", &[], Some(1));
        stage.task("Resolving package dependencies").finished();

        let existing = release_version_fetch(db, release_id, &version).await?;
        // A completed version may be uploaded again (the same tarball, or its compiled form,
        // which adds compiled packages) as long as nothing it names contradicts what is stored.
        if let Some(rv) = &existing
            && rv.update_completed
            && !fix
            && let Some(conflict) = self.conflict(db, rv.id, release).await?
        {
            return Err(TaskError::failed(
                RELEASE_ALREADY_EXISTS,
                format!(
                    "Release '{slug}' already exists with different content ({conflict}); \
                     upload it as a new version"
                ),
            ));
        }
        let rv_id = match &existing {
            Some(rv) => rv.id,
            None => {
                release_version_create(
                    db,
                    release_id,
                    &version,
                    &m.commit_hash,
                    m.uncommitted_changes,
                )
                .await?
            }
        };

        let blobstore = self.services.blobstore.as_ref();
        if !release.packages.is_empty() {
            let stage = ctx.events().stage(
                "Creating new packages",
                &[],
                Some(release.packages.len() as u32),
            );
            for p in &release.packages {
                ctx.checkpoint().await?;
                let r = &p.reference;
                let t = stage.task(&format!("{}/{}", r.name, r.version));
                let row = package_fetch(db, release_id, &r.name, &r.version).await?;
                let step = async {
                    if let Some(row) = &row
                        && row.fingerprint != r.fingerprint
                    {
                        return Err(TaskError::failed(
                            RELEASE_INCONSISTENT,
                            format!(
                                "package '{}' version '{}' is already stored with fingerprint '{}', \
                                 but the tarball has fingerprint '{}'",
                                r.name, r.version, row.fingerprint, r.fingerprint
                            ),
                        ));
                    }
                    let has_blob = row.as_ref().is_some_and(|r| r.blobstore_id.is_some());
                    let (blob, sha1) = match (&p.path, has_blob && !fix) {
                        (_, true) => {
                            let row = row.as_ref().expect("has_blob implies a row");
                            (row.blobstore_id.clone(), row.sha1.clone())
                        }
                        (Some(path), false) => (
                            Some(blob_store_by_content(db, blobstore, path).await?),
                            Some(r.sha1.clone()),
                        ),
                        (None, false) => {
                            match package_with_blob_by_fingerprint(db, &r.fingerprint).await? {
                                Some(other) => (other.blobstore_id, other.sha1),
                                None if has_blob => {
                                    let row = row.as_ref().expect("has_blob implies a row");
                                    (row.blobstore_id.clone(), row.sha1.clone())
                                }
                                None => {
                                    return Err(TaskError::failed(
                                        RELEASE_MISSING_PACKAGE,
                                        format!(
                                            "package '{}' (fingerprint '{}') is not in the tarball and \
                                         the director does not have it",
                                            r.name, r.fingerprint
                                        ),
                                    ));
                                }
                            }
                        }
                    };
                    let deps =
                        serde_json::to_string(&r.dependencies).unwrap_or_else(|_| "[]".into());
                    let id: (i64,) = sqlx::query_as(
                        "INSERT INTO packages (release_id, name, version, fingerprint, sha1, blobstore_id, dependencies) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (release_id, name, version) DO UPDATE SET sha1 = excluded.sha1, \
                         blobstore_id = excluded.blobstore_id, dependencies = excluded.dependencies \
                         RETURNING id",
                    )
                    .bind(release_id)
                    .bind(&r.name)
                    .bind(&r.version)
                    .bind(&r.fingerprint)
                    .bind(sha1)
                    .bind(blob)
                    .bind(deps)
                    .fetch_one(db.pool())
                    .await
                    .map_err(DbError::from)?;
                    join_insert(db, "release_versions_packages", "package_id", rv_id, id.0).await?;
                    Ok(())
                };
                match step.await {
                    Ok(()) => t.finished(),
                    Err(e) => {
                        t.failed(&e.to_string());
                        return Err(e);
                    }
                }
            }
        }

        if !release.compiled_packages.is_empty() {
            let stage = ctx.events().stage(
                "Creating new compiled packages",
                &[],
                Some(release.compiled_packages.len() as u32),
            );
            for c in &release.compiled_packages {
                ctx.checkpoint().await?;
                let r = &c.reference;
                let t = stage.task(&format!("{}/{} for {}", r.name, r.version, r.stemcell));
                let step = self.compiled_package_store(db, release_id, rv_id, c, fix);
                match step.await {
                    Ok(()) => t.finished(),
                    Err(e) => {
                        t.failed(&e.to_string());
                        return Err(e);
                    }
                }
            }
        }

        let stage = ctx
            .events()
            .stage("Creating new jobs", &[], Some(release.jobs.len() as u32));
        for j in &release.jobs {
            ctx.checkpoint().await?;
            let r = &j.reference;
            let t = stage.task(&format!("{}/{}", r.name, r.version));
            let step = async {
                let row: Option<(i64, String, String)> = sqlx::query_as(
                    "SELECT id, fingerprint, blobstore_id FROM templates WHERE release_id = $1 AND name = $2 AND version = $3",
                )
                .bind(release_id)
                .bind(&r.name)
                .bind(&r.version)
                .fetch_optional(db.pool())
                .await
                .map_err(DbError::from)?;
                if let Some((_, fp, _)) = &row
                    && fp != &r.fingerprint
                {
                    return Err(TaskError::failed(
                        RELEASE_INCONSISTENT,
                        format!(
                            "job '{}' version '{}' is already stored with fingerprint '{fp}', \
                             but the tarball has fingerprint '{}'",
                            r.name, r.version, r.fingerprint
                        ),
                    ));
                }
                let id = match row {
                    Some((id, _, _)) if !fix => id,
                    _ => {
                        let blob = blob_store_by_content(db, blobstore, &j.path).await?;
                        let spec = serde_json::to_string(&j.spec).unwrap_or_else(|_| "{}".into());
                        let id: (i64,) = sqlx::query_as(
                            "INSERT INTO templates (release_id, name, version, fingerprint, sha1, blobstore_id, spec) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (release_id, name, version) DO UPDATE SET sha1 = excluded.sha1, \
                             blobstore_id = excluded.blobstore_id, spec = excluded.spec RETURNING id",
                        )
                        .bind(release_id)
                        .bind(&r.name)
                        .bind(&r.version)
                        .bind(&r.fingerprint)
                        .bind(&r.sha1)
                        .bind(blob)
                        .bind(spec)
                        .fetch_one(db.pool())
                        .await
                        .map_err(DbError::from)?;
                        id.0
                    }
                };
                join_insert(db, "release_versions_templates", "template_id", rv_id, id).await?;
                Ok(())
            };
            match step.await {
                Ok(()) => t.finished(),
                Err(e) => {
                    t.failed(&e.to_string());
                    return Err(e);
                }
            }
        }

        let stage = ctx.events().stage("Release has been created", &[], Some(1));
        release_version_complete(db, rv_id).await?;
        stage.task(&slug).finished();
        Ok(version)
    }

    async fn compiled_package_store(
        &self,
        db: &Db,
        release_id: i64,
        rv_id: i64,
        c: &bosh_release::tarball_read::CompiledPackageArchive,
        fix: bool,
    ) -> Result<(), TaskError> {
        let r = &c.reference;
        let Some((os, stemcell_version)) = r.stemcell_os_version() else {
            return Err(TaskError::failed(
                RELEASE_INVALID,
                format!(
                    "compiled package '{}' has an invalid stemcell '{}'",
                    r.name, r.stemcell
                ),
            ));
        };
        let deps = serde_json::to_string(&r.dependencies).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO packages (release_id, name, version, fingerprint, dependencies) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (release_id, name, version) DO NOTHING",
        )
        .bind(release_id)
        .bind(&r.name)
        .bind(&r.version)
        .bind(&r.fingerprint)
        .bind(&deps)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
        let pkg = package_fetch(db, release_id, &r.name, &r.version)
            .await?
            .ok_or(DbError::Query(sqlx::Error::RowNotFound))?;
        if pkg.fingerprint != r.fingerprint {
            return Err(TaskError::failed(
                RELEASE_INCONSISTENT,
                format!(
                    "package '{}' version '{}' is already stored with fingerprint '{}', but the tarball has '{}'",
                    r.name, r.version, pkg.fingerprint, r.fingerprint
                ),
            ));
        }
        join_insert(db, "release_versions_packages", "package_id", rv_id, pkg.id).await?;
        let dependency_key = deps;
        let existing: Option<(i64,)> = sqlx::query_as(
            "SELECT id FROM compiled_packages WHERE package_id = $1 AND stemcell_os = $2 \
             AND stemcell_version = $3 AND dependency_key = $4",
        )
        .bind(pkg.id)
        .bind(os)
        .bind(stemcell_version)
        .bind(&dependency_key)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
        if existing.is_some() && !fix {
            return Ok(());
        }
        let (blob, sha1) = match &c.path {
            Some(path) => (
                blob_store_by_content(db, self.services.blobstore.as_ref(), path).await?,
                r.sha1.clone(),
            ),
            None => {
                let other: Option<(String, String)> = sqlx::query_as(
                    "SELECT c.blobstore_id, c.sha1 FROM compiled_packages c JOIN packages p ON p.id = c.package_id \
                     WHERE p.fingerprint = $1 AND c.stemcell_os = $2 AND c.stemcell_version = $3 LIMIT 1",
                )
                .bind(&r.fingerprint)
                .bind(os)
                .bind(stemcell_version)
                .fetch_optional(db.pool())
                .await
                .map_err(DbError::from)?;
                match other {
                    Some(found) => found,
                    None if existing.is_some() => return Ok(()),
                    None => {
                        return Err(TaskError::failed(
                            RELEASE_MISSING_PACKAGE,
                            format!(
                                "compiled package '{}' (fingerprint '{}') for {} is not in the tarball \
                                 and the director does not have it",
                                r.name, r.fingerprint, r.stemcell
                            ),
                        ));
                    }
                }
            }
        };
        sqlx::query(
            "INSERT INTO compiled_packages (package_id, stemcell_os, stemcell_version, dependency_key, sha1, blobstore_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (package_id, stemcell_os, stemcell_version, dependency_key) \
             DO UPDATE SET sha1 = excluded.sha1, blobstore_id = excluded.blobstore_id",
        )
        .bind(pkg.id)
        .bind(os)
        .bind(stemcell_version)
        .bind(&dependency_key)
        .bind(sha1)
        .bind(blob)
        .bind(now_secs())
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
        Ok(())
    }

    /// What in the tarball contradicts a stored version: a job or package it lacks, or one
    /// stored with another version or fingerprint.
    async fn conflict(
        &self,
        db: &Db,
        rv_id: i64,
        release: &ReleaseTarball,
    ) -> Result<Option<String>, DbError> {
        let stored_pkgs: HashMap<String, (String, String)> = release_version_packages(db, rv_id)
            .await?
            .into_iter()
            .map(|p| (p.name, (p.version, p.fingerprint)))
            .collect();
        let stored_jobs: HashMap<String, (String, String)> = release_version_templates(db, rv_id)
            .await?
            .into_iter()
            .map(|t| (t.name, (t.version, t.fingerprint)))
            .collect();
        let m = &release.manifest;
        let pkgs = m
            .packages
            .iter()
            .map(|p| (&p.name, &p.version, &p.fingerprint))
            .chain(
                m.compiled_packages
                    .iter()
                    .map(|p| (&p.name, &p.version, &p.fingerprint)),
            );
        for (name, version, fp) in pkgs {
            match stored_pkgs.get(name) {
                None => {
                    return Ok(Some(format!(
                        "package '{name}' is not in the stored version"
                    )));
                }
                Some((v, f)) if v != version || f != fp => {
                    return Ok(Some(format!("package '{name}' differs")));
                }
                Some(_) => {}
            }
        }
        for j in &m.jobs {
            match stored_jobs.get(&j.name) {
                None => {
                    return Ok(Some(format!(
                        "job '{}' is not in the stored version",
                        j.name
                    )));
                }
                Some((v, f)) if v != &j.version || f != &j.fingerprint => {
                    return Ok(Some(format!("job '{}' differs", j.name)));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------
// delete_release

/// `delete_release`: payload `{"name", "version"?, "force"?}`.
pub struct DeleteReleaseJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for DeleteReleaseJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let name = payload["name"].as_str().unwrap_or_default().to_owned();
        let version = payload["version"].as_str().map(str::to_owned);
        let mut context = Map::new();
        if let Some(v) = &version {
            context.insert("version".into(), json!(v));
        }
        task_events_wrap(
            ctx,
            "delete",
            "release",
            Some(name.clone()),
            context,
            async {
                ctx.lock(&release_lock(&name)).await?;
                let result = self.delete(ctx, &name, version.as_deref()).await?;
                Ok((result, None))
            },
        )
        .await
    }
}

impl DeleteReleaseJob {
    /// Deletes a release or one version of it (also used by clean-up); the caller holds the
    /// release lock.
    pub async fn delete(
        &self,
        ctx: &TaskContext,
        name: &str,
        version: Option<&str>,
    ) -> Result<String, TaskError> {
        let db = ctx.db();
        let release_id = release_id_fetch(db, name).await?.ok_or_else(|| {
            TaskError::failed(RELEASE_NOT_FOUND, format!("Release '{name}' doesn't exist"))
        })?;
        let versions = match version {
            Some(v) => vec![
                release_version_fetch(db, release_id, v)
                    .await?
                    .ok_or_else(|| {
                        TaskError::failed(
                            RELEASE_VERSION_NOT_FOUND,
                            format!("Release version '{name}/{v}' doesn't exist"),
                        )
                    })?,
            ],
            None => release_version_list(db, release_id).await?,
        };
        let in_use: Vec<String> = releases_in_use(db)
            .await?
            .into_iter()
            .filter(|(_, n, v)| n == name && versions.iter().any(|rv| &rv.version == v))
            .map(|(d, _, v)| format!("{d} ({name}/{v})"))
            .collect();
        if !in_use.is_empty() {
            return Err(TaskError::failed(
                RELEASE_IN_USE,
                format!("Release '{name}' is still in use by: {}", in_use.join(", ")),
            ));
        }

        let stage = ctx
            .events()
            .stage("Deleting releases", &[], Some(versions.len() as u32));
        for rv in &versions {
            ctx.checkpoint().await?;
            let t = stage.task(&format!("{name}/{}", rv.version));
            for table in ["release_versions_packages", "release_versions_templates"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE release_version_id = $1"
                ))
                .bind(rv.id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            }
            sqlx::query("DELETE FROM release_versions WHERE id = $1")
                .bind(rv.id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            t.finished();
        }

        // Packages and jobs no remaining version uses go, with their compiled packages.
        let mut blobs = BTreeSet::new();
        let orphan_pkgs: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT id, blobstore_id FROM packages WHERE release_id = $1 AND id NOT IN \
             (SELECT package_id FROM release_versions_packages)",
        )
        .bind(release_id)
        .fetch_all(db.pool())
        .await
        .map_err(DbError::from)?;
        for (id, blob) in orphan_pkgs {
            let compiled: Vec<(String,)> =
                sqlx::query_as("SELECT blobstore_id FROM compiled_packages WHERE package_id = $1")
                    .bind(id)
                    .fetch_all(db.pool())
                    .await
                    .map_err(DbError::from)?;
            blobs.extend(compiled.into_iter().map(|c| c.0));
            blobs.extend(blob);
            sqlx::query("DELETE FROM compiled_packages WHERE package_id = $1")
                .bind(id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            sqlx::query("DELETE FROM packages WHERE id = $1")
                .bind(id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
        }
        let orphan_jobs: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, blobstore_id FROM templates WHERE release_id = $1 AND id NOT IN \
             (SELECT template_id FROM release_versions_templates)",
        )
        .bind(release_id)
        .fetch_all(db.pool())
        .await
        .map_err(DbError::from)?;
        for (id, blob) in orphan_jobs {
            blobs.insert(blob);
            sqlx::query("DELETE FROM templates WHERE id = $1")
                .bind(id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
        }
        if release_version_list(db, release_id).await?.is_empty() {
            sqlx::query("DELETE FROM releases WHERE id = $1")
                .bind(release_id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
        }
        blobs_collect(db, self.services.blobstore.as_ref(), blobs).await?;
        Ok(match version {
            Some(v) => format!("Deleted release version '{name}/{v}'"),
            None => format!("Deleted release '{name}'"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebase(uploaded: &str, stored: &[&str]) -> Result<String, RebaseError> {
        let stored: Vec<String> = stored.iter().map(|s| s.to_string()).collect();
        version_rebase(uploaded, &stored)
    }

    #[test]
    fn rebase_takes_the_next_dev_version_of_the_same_release_segment() {
        assert_eq!(rebase("0+dev.7", &[]).unwrap(), "0+dev.1");
        assert_eq!(
            rebase("0+dev.7", &["0+dev.1", "0+dev.2"]).unwrap(),
            "0+dev.3"
        );
        // Only versions with the same release and pre-release segments count.
        assert_eq!(
            rebase("0+dev.7", &["1+dev.9", "0+dev.4"]).unwrap(),
            "0+dev.5"
        );
        assert_eq!(
            rebase("2-rc.1+dev.3", &["2+dev.8", "2-rc.1+dev.1"]).unwrap(),
            "2-rc.1+dev.2"
        );
        // A final version is the latest: its first dev version follows.
        assert_eq!(
            rebase("1.0.0+dev.7", &["1.0.0", "0+dev.3"]).unwrap(),
            "1.0.0+dev.1"
        );
        assert_eq!(rebase("1+dev.7", &["1.0", "1+dev.1"]).unwrap(), "1+dev.2");
        // Old-style dev versions on either side.
        assert_eq!(rebase("0.4-dev", &["0.2-dev"]).unwrap(), "0+dev.3");
        assert_eq!(rebase("3+dev.1", &["3.9-dev"]).unwrap(), "3+dev.10");
    }

    #[test]
    fn rebase_refuses_final_and_invalid_versions() {
        let err = rebase("1.0.0", &["0+dev.1"]).unwrap_err();
        assert!(matches!(err, RebaseError::Final(_)));
        assert!(
            err.to_string().contains("'1.0.0' is a final version"),
            "{err}"
        );
        assert!(matches!(
            rebase("1+dev.x", &["1+dev.x"]),
            Err(RebaseError::Increment(..))
        ));
        assert!(matches!(
            rebase("1..2+dev.1", &[]),
            Err(RebaseError::Invalid(..))
        ));
    }
}
