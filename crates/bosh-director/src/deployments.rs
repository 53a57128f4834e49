//! The `deployments` table and the `delete_deployment` task.

use async_trait::async_trait;
use bosh_types::ids::DeploymentId;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Db, DbError, now_secs};
use crate::locks::{self, LockSpec};
use crate::tasks::runner::{TaskContext, TaskError, TaskJob};

#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: DeploymentId,
    pub name: String,
    pub manifest: String,
    pub created_at: i64,
}

fn deployment_from_row(row: &AnyRow) -> Result<Deployment, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(Deployment {
        id: id.parse().map_err(|e| sqlx::Error::ColumnDecode {
            index: "id".to_owned(),
            source: Box::new(e),
        })?,
        name: row.try_get("name")?,
        manifest: row.try_get("manifest")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Creates the deployment row, or updates its manifest when it exists.
pub async fn deployment_upsert(db: &Db, name: &str, manifest: &str) -> Result<Deployment, DbError> {
    sqlx::query(
        "INSERT INTO deployments (id, name, manifest, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest",
    )
    .bind(DeploymentId::new_v4().to_string())
    .bind(name)
    .bind(manifest)
    .bind(now_secs())
    .execute(db.pool())
    .await?;
    deployment_fetch(db, name)
        .await?
        .ok_or_else(|| DbError::Query(sqlx::Error::RowNotFound))
}

pub async fn deployment_fetch(db: &Db, name: &str) -> Result<Option<Deployment>, DbError> {
    let row = sqlx::query("SELECT id, name, manifest, created_at FROM deployments WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(deployment_from_row).transpose()?)
}

/// By name.
pub async fn deployment_list(db: &Db) -> Result<Vec<Deployment>, DbError> {
    let rows = sqlx::query("SELECT id, name, manifest, created_at FROM deployments ORDER BY name")
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .iter()
        .map(deployment_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

pub async fn deployment_delete(db: &Db, name: &str) -> Result<bool, DbError> {
    let done = sqlx::query("DELETE FROM deployments WHERE name = $1")
        .bind(name)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NameVersion {
    pub name: String,
    pub version: String,
}

/// An element of `GET /deployments` (director-api §5.3).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    pub name: String,
    pub releases: Vec<NameVersion>,
    pub stemcells: Vec<NameVersion>,
    pub teams: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_config: Option<String>,
    pub locked: bool,
}

/// Releases and stemcells named by a stored manifest (versions as strings).
pub fn manifest_releases_stemcells(manifest: &str) -> (Vec<NameVersion>, Vec<NameVersion>) {
    let Ok(doc) = bosh_yaml::parse(manifest) else {
        return (Vec::new(), Vec::new());
    };
    let scalar = |v: Option<&bosh_yaml::Value>| -> Option<String> {
        match v? {
            bosh_yaml::Value::String(s) => Some(s.clone()),
            bosh_yaml::Value::Int(i) => Some(i.to_string()),
            bosh_yaml::Value::Float(f) => Some(f.to_string()),
            _ => None,
        }
    };
    let list = |key: &str, name_keys: &[&str]| -> Vec<NameVersion> {
        doc.get(key)
            .and_then(|v| v.as_seq())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let name = name_keys.iter().find_map(|k| scalar(item.get(k)))?;
                        let version = scalar(item.get("version"))?;
                        Some(NameVersion { name, version })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        list("releases", &["name"]),
        list("stemcells", &["name", "os"]),
    )
}

pub async fn deployment_view(
    db: &Db,
    d: &Deployment,
    with_configs: bool,
) -> Result<DeploymentView, DbError> {
    let (releases, stemcells) = manifest_releases_stemcells(&d.manifest);
    let cloud_config = if with_configs {
        let any_cloud = crate::configs::config_list(db, Some("cloud"), None, true, Some(1))
            .await?
            .is_empty();
        Some(if any_cloud { "none" } else { "latest" }.to_owned())
    } else {
        None
    };
    Ok(DeploymentView {
        name: d.name.clone(),
        releases,
        stemcells,
        teams: Vec::new(),
        cloud_config,
        locked: locks::lock_is_held(db, &LockSpec::deployment(&d.name)).await?,
    })
}

/// `delete_deployment`: payload `{"name": "...", "force": bool}`.
///
/// Deletes a deployment under its lock. Instances, disks and VMs belong to the deployer;
/// until it lands, a deployment here has none, so the stages remove the record only.
pub struct DeleteDeploymentJob;

pub const DELETE_DEPLOYMENT: &str = "delete_deployment";

#[async_trait]
impl TaskJob for DeleteDeploymentJob {
    async fn run(
        &self,
        ctx: &TaskContext,
        payload: serde_json::Value,
    ) -> Result<String, TaskError> {
        let name = payload["name"]
            .as_str()
            .ok_or_else(|| TaskError::failed(40001, "delete_deployment needs a name"))?
            .to_owned();
        crate::events::task_events_wrap(
            ctx,
            "delete",
            "deployment",
            Some(name.clone()),
            serde_json::Map::new(),
            async { Ok((self.delete(ctx, &name).await?, None)) },
        )
        .await
    }
}

impl DeleteDeploymentJob {
    async fn delete(&self, ctx: &TaskContext, name: &str) -> Result<String, TaskError> {
        let name = name.to_owned();
        let lock = LockSpec::deployment(&name);
        ctx.lock(&lock).await?;
        ctx.checkpoint().await?;

        if deployment_fetch(ctx.db(), &name).await?.is_none() {
            return Err(TaskError::failed(
                70000,
                format!("Deployment '{name}' doesn't exist"),
            ));
        }

        let stage = ctx
            .events()
            .stage("Removing deployment artifacts", &[], Some(3));
        for step in [
            "Detaching stemcells",
            "Detaching releases",
            "Deleting properties",
        ] {
            ctx.checkpoint().await?;
            stage.task(step).finished();
        }

        ctx.checkpoint().await?;
        let destroy = ctx.events().stage("Destroying deployment", &[], Some(1));
        let t = destroy.task("Destroying deployment");
        deployment_delete(ctx.db(), &name).await?;
        t.finished();
        ctx.info(&format!("Deleted deployment '{name}'"));
        Ok(format!("/deployments/{name}"))
    }
}
