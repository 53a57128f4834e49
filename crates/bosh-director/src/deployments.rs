//! The `deployments` table and the `delete_deployment` task.

use async_trait::async_trait;
use bosh_types::ids::DeploymentId;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use bosh_agent_client::DrainType;
use bosh_types::ids::{AgentId, VmCid};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::db::{Db, DbError, now_secs};
use crate::error::error_chain;
use crate::events::{NewEvent, event_create};
use crate::instance_listing::{InstanceRecord, instance_records_list};
use crate::locks::{self, LockSpec};
use crate::services::Services;
use crate::tasks::events::Stage;
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

/// The manifest diff `bosh deploy` shows: both sides re-emitted, property values replaced by
/// `<redacted>` unless `redact` is off, and nothing at all when nothing changed.
pub fn manifest_diff(
    old: &str,
    new: &str,
    redact: bool,
) -> Result<Vec<crate::configs::DiffLine>, String> {
    let side = |text: &str| -> Result<String, String> {
        if text.trim().is_empty() {
            return Ok(String::new());
        }
        let mut v =
            bosh_yaml::parse(text).map_err(|e| format!("Manifest is not valid YAML: {e}"))?;
        if redact {
            properties_redact(&mut v, false);
        }
        Ok(bosh_yaml::to_string(&v))
    };
    let lines = crate::configs::yaml_diff(&side(old)?, &side(new)?);
    if lines.iter().all(|(_, status)| status.is_none()) {
        return Ok(Vec::new());
    }
    Ok(lines)
}

/// Replaces every scalar under a `properties` key (at any depth) with `<redacted>`.
fn properties_redact(v: &mut bosh_yaml::Value, inside: bool) {
    if let Some(map) = v.as_map_mut() {
        for (k, child) in map.iter_mut() {
            let here = inside || k.as_str() == Some("properties");
            properties_redact(child, here);
        }
    } else if let Some(seq) = v.as_seq_mut() {
        for child in seq.iter_mut() {
            properties_redact(child, inside);
        }
    } else if inside && !v.is_null() {
        *v = bosh_yaml::Value::String("<redacted>".into());
    }
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

type ManifestSummary = (Vec<NameVersion>, Vec<NameVersion>);

/// [`manifest_releases_stemcells`] of every deployment, by name, memoised by deployment id
/// and `manifest_version` (a trigger bumps it when the manifest changes): parsing 1,500
/// manifests was most of a `GET /deployments`, and reading them still half of it. Manifests
/// are read only when an entry is missing or stale. Entries of deployments that are gone are
/// dropped, so the memo holds at most one entry per deployment.
async fn manifest_summaries(db: &Db) -> Result<Vec<(String, ManifestSummary)>, DbError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Memo = HashMap<String, (String, i64, ManifestSummary)>;
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    let memo = MEMO.get_or_init(Default::default);
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, name, manifest_version FROM deployments ORDER BY name")
            .fetch_all(db.pool())
            .await?;
    let mut fresh: Memo = HashMap::with_capacity(rows.len());
    let mut stale = Vec::new();
    {
        let known = memo.lock().unwrap_or_else(|e| e.into_inner());
        for (id, name, version) in &rows {
            match known.get(name) {
                Some((i, v, summary)) if i == id && v == version => {
                    fresh.insert(name.clone(), (id.clone(), *version, summary.clone()));
                }
                _ => stale.push(name.clone()),
            }
        }
    }
    if !stale.is_empty() {
        // One query for all: after a start every entry is missing.
        let all: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT id, name, manifest_version, manifest FROM deployments ORDER BY name",
        )
        .fetch_all(db.pool())
        .await?;
        for (id, name, version, manifest) in all {
            fresh
                .entry(name)
                .or_insert_with(|| (id, version, manifest_releases_stemcells(&manifest)));
        }
    }
    let out = rows
        .into_iter()
        .filter_map(|(_, name, _)| {
            let summary = fresh.get(&name)?.2.clone();
            Some((name, summary))
        })
        .collect();
    *memo.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
    Ok(out)
}

/// The text of top-level `keys` blocks of a plain block-style YAML document, or `None` when a
/// key is missing or the blocks use anchors, aliases, tags or merges (the caller then parses
/// the whole document).
fn manifest_blocks(manifest: &str, keys: &[&str]) -> Option<String> {
    let mut out = String::new();
    for key in keys {
        let head = format!("{key}:");
        let mut lines = manifest.lines();
        let first = lines.find(|l| l.starts_with(&head))?;
        out.push_str(first);
        out.push('\n');
        for l in lines {
            let nested = l.starts_with([' ', '\t', '#']) || l.is_empty();
            let item = l.starts_with('-') && !l.starts_with("---");
            if !nested && !item {
                break;
            }
            out.push_str(l);
            out.push('\n');
        }
    }
    if out.contains(['&', '*', '!']) || out.contains("<<") {
        return None;
    }
    Some(out)
}

/// Releases and stemcells named by a stored manifest (versions as strings).
pub fn manifest_releases_stemcells(manifest: &str) -> (Vec<NameVersion>, Vec<NameVersion>) {
    // `GET /deployments` reads every manifest: parsing only the two top-level blocks it needs
    // is ~20x cheaper than the whole document (1,500 manifests: ~250 ms to ~15 ms).
    let doc = match manifest_blocks(manifest, &["releases", "stemcells"])
        .and_then(|text| bosh_yaml::parse(&text).ok())
    {
        Some(doc) => doc,
        None => match bosh_yaml::parse(manifest) {
            Ok(doc) => doc,
            Err(_) => return (Vec::new(), Vec::new()),
        },
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

/// `GET /deployments`: the view of every deployment with three queries in all (two per
/// deployment made 1,500 deployments take half a second).
pub async fn deployment_view_list(
    db: &Db,
    with_configs: bool,
) -> Result<Vec<DeploymentView>, DbError> {
    let cloud_config = if with_configs {
        let any_cloud = crate::configs::config_list(db, Some("cloud"), None, true, Some(1))
            .await?
            .is_empty();
        Some(if any_cloud { "none" } else { "latest" }.to_owned())
    } else {
        None
    };
    let held: std::collections::HashSet<String> =
        sqlx::query_as::<_, (String,)>("SELECT name FROM locks WHERE expires_at_ms >= $1")
            .bind(crate::db::now_millis())
            .fetch_all(db.pool())
            .await?
            .into_iter()
            .map(|r| r.0)
            .collect();
    Ok(manifest_summaries(db)
        .await?
        .into_iter()
        .map(|(name, (releases, stemcells))| DeploymentView {
            locked: held.contains(&LockSpec::deployment(&name).name()),
            name,
            releases,
            stemcells,
            teams: Vec::new(),
            cloud_config: cloud_config.clone(),
        })
        .collect())
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
/// Under the deployment lock, every instance is stopped when its agent answers (pre-stop,
/// drain, stop, post-stop), its VMs are deleted, its persistent disks orphaned (the VM's
/// deletion detached them, as in Ruby), its rendered templates, IPs and row removed; then the
/// deployment's remaining VMs and IP reservations, its variable sets and the record itself.
/// Every step starts from what the database still holds, so running the task again after a
/// crash finishes the job. With `force`, failures to stop, delete a VM or clean up are logged
/// and passed over, as Ruby's error ignorer does; the rows still go.
pub struct DeleteDeploymentJob {
    pub services: Services,
    /// How long an agent may take to answer `ping` before it counts as unreachable and is
    /// not stopped.
    pub agent_timeout: Duration,
}

impl DeleteDeploymentJob {
    pub fn new(services: Services) -> DeleteDeploymentJob {
        DeleteDeploymentJob {
            services,
            agent_timeout: Duration::from_secs(5),
        }
    }
}

pub const DELETE_DEPLOYMENT: &str = "delete_deployment";

/// Instances deleted at once.
const PARALLEL_INSTANCE_DELETES: usize = 10;

/// Ruby's `DeploymentIgnoredInstancesDeletion`.
const IGNORED_INSTANCES_CODE: u32 = 190021;

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
        let force = payload["force"].as_bool().unwrap_or(false);
        crate::events::task_events_wrap(
            ctx,
            "delete",
            "deployment",
            Some(name.clone()),
            serde_json::Map::new(),
            async { Ok((self.delete(ctx, &name, force).await?, None)) },
        )
        .await
    }
}

/// A `vms` row, as deleting needs it.
struct VmRow {
    id: i64,
    agent_id: String,
    cid: Option<String>,
    active: bool,
}

async fn vm_rows(db: &Db, filter: &str, key: VmFilterKey<'_>) -> Result<Vec<VmRow>, DbError> {
    let sql = format!("SELECT id, agent_id, cid, active FROM vms WHERE {filter} ORDER BY id");
    let q = sqlx::query_as::<_, (i64, String, Option<String>, i64)>(&sql);
    let q = match key {
        VmFilterKey::Instance(id) => q.bind(id),
        VmFilterKey::Deployment(name) => q.bind(name.to_owned()),
    };
    Ok(q.fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|(id, agent_id, cid, active)| VmRow {
            id,
            agent_id,
            cid,
            active: active != 0,
        })
        .collect())
}

enum VmFilterKey<'a> {
    Instance(i64),
    Deployment(&'a str),
}

/// Ruby's codes for agent failures: a remote exception, or no answer.
fn agent_failure(e: &bosh_agent_client::AgentError) -> TaskError {
    let code = match e {
        bosh_agent_client::AgentError::Timeout { .. } => 450002,
        _ => 450001,
    };
    TaskError::failed(code, error_chain(e))
}

impl DeleteDeploymentJob {
    async fn delete(
        &self,
        ctx: &TaskContext,
        name: &str,
        force: bool,
    ) -> Result<String, TaskError> {
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
        let instances = instance_records_list(ctx.db(), &name).await?;
        if instances.iter().any(|i| i.ignored) {
            return Err(TaskError::failed(
                IGNORED_INSTANCES_CODE,
                format!(
                    "You are trying to delete deployment '{name}', which contains ignored \
                     instance(s). Operation not allowed."
                ),
            ));
        }

        let stage = ctx
            .events()
            .stage("Deleting instances", &[], Some(instances.len() as u32));
        let outcomes: Vec<Result<(), TaskError>> = futures::stream::iter(instances)
            .map(|inst| self.instance_delete(ctx, &stage, &name, inst, force))
            .buffer_unordered(PARALLEL_INSTANCE_DELETES)
            .collect()
            .await;
        outcomes.into_iter().collect::<Result<Vec<()>, _>>()?;
        ctx.checkpoint().await?;

        // VMs without an instance (compilation VMs a crashed deploy left) and every IP
        // reservation still held in the deployment's name.
        for vm in vm_rows(ctx.db(), "deployment = $1", VmFilterKey::Deployment(&name)).await? {
            self.vm_remove(ctx, &vm, force).await?;
        }
        sqlx::query("DELETE FROM ip_addresses WHERE deployment = $1")
            .bind(&name)
            .execute(ctx.db().pool())
            .await
            .map_err(DbError::from)?;

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
        let db = ctx.db().pool();
        sqlx::query(
            "DELETE FROM variables WHERE variable_set_id IN \
             (SELECT id FROM variable_sets WHERE deployment = $1)",
        )
        .bind(&name)
        .execute(db)
        .await
        .map_err(DbError::from)?;
        sqlx::query("DELETE FROM variable_sets WHERE deployment = $1")
            .bind(&name)
            .execute(db)
            .await
            .map_err(DbError::from)?;
        deployment_delete(ctx.db(), &name).await?;
        t.finished();
        ctx.info(&format!("Deleted deployment '{name}'"));
        Ok(format!("/deployments/{name}"))
    }

    /// One instance, with a `delete instance` event pair and a task in the stage.
    async fn instance_delete(
        &self,
        ctx: &TaskContext,
        stage: &Stage,
        deployment: &str,
        inst: InstanceRecord,
        force: bool,
    ) -> Result<(), TaskError> {
        let base = NewEvent {
            user: ctx.user.clone(),
            action: "delete".into(),
            object_type: "instance".into(),
            object_name: Some(inst.name()),
            task: Some(ctx.id.to_string()),
            deployment: Some(deployment.to_owned()),
            instance: Some(inst.name()),
            ..NewEvent::default()
        };
        let parent = event_create(ctx.db(), &base).await?;
        let task = stage.task(&inst.display());
        let outcome = self
            .instance_delete_steps(ctx, deployment, &inst, force)
            .await;
        let end = NewEvent {
            parent_id: Some(parent),
            error: outcome.as_ref().err().map(|e| e.to_string()),
            ..base
        };
        event_create(ctx.db(), &end).await?;
        match &outcome {
            Ok(()) => task.finished(),
            Err(e) => task.failed(&e.to_string()),
        }
        outcome
    }

    async fn instance_delete_steps(
        &self,
        ctx: &TaskContext,
        deployment: &str,
        inst: &InstanceRecord,
        force: bool,
    ) -> Result<(), TaskError> {
        let db = ctx.db();
        let vms = vm_rows(db, "instance_id = $1", VmFilterKey::Instance(inst.id)).await?;
        if let Some(vm) = vms.iter().find(|v| v.active && v.cid.is_some()) {
            match self.instance_stop(&vm.agent_id).await {
                Ok(()) => {}
                Err(e) if force => {
                    ctx.info(&format!("Ignoring error stopping {}: {e}", inst.display()));
                }
                Err(e) => return Err(e),
            }
        }
        for vm in &vms {
            self.vm_remove(ctx, vm, force).await?;
        }

        // Persistent disks become orphans (with `force` too): the data outlives the
        // deployment until `bosh clean-up` or `delete-disk`.
        let disks: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT id, cid, size, cloud_properties FROM persistent_disks WHERE instance_id = $1",
        )
        .bind(inst.id)
        .fetch_all(db.pool())
        .await
        .map_err(DbError::from)?;
        for (id, cid, size, cloud_properties) in disks {
            let mut tx = db.pool().begin().await.map_err(DbError::from)?;
            sqlx::query(
                "INSERT INTO orphan_disks (cid, size, availability_zone, deployment, instance_name, \
                 cloud_properties, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (cid) DO NOTHING",
            )
            .bind(&cid)
            .bind(size)
            .bind(inst.az.clone())
            .bind(deployment)
            .bind(inst.name())
            .bind(&cloud_properties)
            .bind(now_secs())
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
            sqlx::query("DELETE FROM persistent_disks WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(DbError::from)?;
            tx.commit().await.map_err(DbError::from)?;
            ctx.info(&format!("Orphaned disk '{cid}' of {}", inst.display()));
        }

        let archives: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, blobstore_id FROM rendered_templates_archives WHERE instance_id = $1",
        )
        .bind(inst.id)
        .fetch_all(db.pool())
        .await
        .map_err(DbError::from)?;
        for (id, blob) in archives {
            if let Err(e) = self.services.blobstore.delete(&blob).await {
                if !force {
                    return Err(TaskError::failed(
                        100,
                        format!(
                            "Deleting rendered templates blob '{blob}': {}",
                            error_chain(&e)
                        ),
                    ));
                }
                ctx.info(&format!("Ignoring error deleting blob '{blob}': {e}"));
            }
            sqlx::query("DELETE FROM rendered_templates_archives WHERE id = $1")
                .bind(id)
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
        }

        sqlx::query("DELETE FROM ip_addresses WHERE instance_id = $1")
            .bind(inst.id)
            .execute(db.pool())
            .await
            .map_err(DbError::from)?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(inst.id)
            .execute(db.pool())
            .await
            .map_err(DbError::from)?;
        Ok(())
    }

    /// pre-stop, drain, stop, post-stop through the agent, when it answers a ping at all.
    async fn instance_stop(&self, agent_id: &str) -> Result<(), TaskError> {
        let Some(agents) = &self.services.agents else {
            return Ok(());
        };
        let client = agents.client();
        if let Err(e) = client
            .request(agent_id, "ping", vec![], self.agent_timeout)
            .await
        {
            tracing::warn!(agent_id, error = %error_chain(&e), "agent unreachable; not stopping it");
            return Ok(());
        }
        let next_state: BTreeMap<String, String> = [
            "BOSH_VM_NEXT_STATE",
            "BOSH_INSTANCE_NEXT_STATE",
            "BOSH_DEPLOYMENT_NEXT_STATE",
        ]
        .into_iter()
        .map(|k| (k.to_owned(), "delete".to_owned()))
        .collect();
        client
            .run_script(agent_id, "pre-stop", &next_state)
            .await
            .map_err(|e| agent_failure(&e))?;
        let mut wait = client
            .drain(agent_id, DrainType::Shutdown, None::<&serde_json::Value>)
            .await
            .map_err(|e| agent_failure(&e))?;
        // A negative answer is a dynamic drain: ask again after that many seconds until the
        // script reports a final, non-negative wait.
        while wait < 0 {
            tokio::time::sleep(Duration::from_secs(wait.unsigned_abs())).await;
            wait = client
                .drain(agent_id, DrainType::Status, None::<&serde_json::Value>)
                .await
                .map_err(|e| agent_failure(&e))?;
        }
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
        client.stop(agent_id).await.map_err(|e| agent_failure(&e))?;
        client
            .run_script(agent_id, "post-stop", &BTreeMap::new())
            .await
            .map_err(|e| agent_failure(&e))?;
        Ok(())
    }

    /// Deletes a VM through the CPI (a VM the CPI no longer knows counts as deleted). A row
    /// without a cid (create_vm never answered) is only forgotten, and so is one whose
    /// deletion failed under `force`.
    async fn vm_remove(&self, ctx: &TaskContext, vm: &VmRow, force: bool) -> Result<(), TaskError> {
        if let Some(cid) = &vm.cid {
            let target = match (VmCid::new(cid.clone()), vm.agent_id.parse::<AgentId>()) {
                (Ok(cid), Ok(agent_id)) => Some(crate::vms::Vm {
                    id: vm.id,
                    cid,
                    agent_id,
                }),
                _ => None,
            };
            let outcome = match &target {
                Some(t) => crate::vms::vm_delete(ctx.db(), &self.services, t)
                    .await
                    .map_err(|e| error_chain(&e)),
                None => Err(format!("VM row {} has an invalid cid or agent id", vm.id)),
            };
            match outcome {
                Ok(()) => {
                    ctx.info(&format!("Deleted VM '{cid}'"));
                    return Ok(());
                }
                Err(e) if force => ctx.info(&format!("Ignoring error deleting VM '{cid}': {e}")),
                Err(e) => return Err(TaskError::failed(100, format!("Deleting VM '{cid}': {e}"))),
            }
        }
        let pool = ctx.db().pool();
        sqlx::query("UPDATE ip_addresses SET vm_id = NULL WHERE vm_id = $1")
            .bind(vm.id)
            .execute(pool)
            .await
            .map_err(DbError::from)?;
        sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(vm.id)
            .execute(pool)
            .await
            .map_err(DbError::from)?;
        if let Some(agents) = &self.services.agents
            && let Err(e) = agents.agent_unregister(&vm.agent_id).await
        {
            ctx.info(&format!(
                "Cannot remove the NATS user of agent '{}': {}",
                vm.agent_id,
                error_chain(&e)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(name: &str, version: &str) -> NameVersion {
        NameVersion {
            name: name.into(),
            version: version.into(),
        }
    }

    #[test]
    fn releases_and_stemcells_from_blocks_match_the_whole_document() {
        let cases = [
            // Block style, items at column 0 and indented, comments, a later key.
            "name: d\nreleases:\n- name: a\n  version: 1.2\n# note\n  # indented note\n- {name: b, version: \"3\"}\nstemcells:\n  - alias: default\n    os: jammy\n    version: '1.5'\nupdate: {canaries: 1}\n",
            // Flow style on the key's line, stemcells named by name.
            "stemcells: [{alias: s, name: bosh-stemcell, version: 7}]\nreleases: [{name: a, version: 2}]\n",
            // An alias: the whole document is parsed.
            "x: &v 9\nreleases:\n- name: a\n  version: *v\nstemcells:\n- {os: o, version: 1}\n",
            // No stemcells block: the whole document is parsed.
            "releases:\n- name: a\n  version: 4\n",
        ];
        let expected = [
            (vec![nv("a", "1.2"), nv("b", "3")], vec![nv("jammy", "1.5")]),
            (vec![nv("a", "2")], vec![nv("bosh-stemcell", "7")]),
            (vec![nv("a", "9")], vec![nv("o", "1")]),
            (vec![nv("a", "4")], vec![]),
        ];
        for (text, want) in cases.iter().zip(expected) {
            assert_eq!(manifest_releases_stemcells(text), want, "{text}");
        }
        assert!(manifest_blocks(cases[2], &["releases", "stemcells"]).is_none());
        assert!(manifest_blocks(cases[0], &["releases", "stemcells"]).is_some());
    }

    #[tokio::test]
    async fn the_list_sees_a_changed_manifest_and_a_recreated_deployment() {
        let dir = tempfile::tempdir().unwrap();
        manifest_change_check(Db::open_sqlite_in(dir.path()).await.unwrap()).await;
        // The trigger that bumps `manifest_version` is written per backend.
        if let Some(db) = crate::db::test_postgres_fresh().await {
            manifest_change_check(db).await;
        }
    }

    async fn manifest_change_check(db: Db) {
        let manifest = |v: &str| format!("releases:\n- name: app\n  version: \"{v}\"\n");
        let versions = async || {
            deployment_view_list(&db, false)
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.name, d.releases[0].version.clone()))
                .collect::<Vec<_>>()
        };
        deployment_upsert(&db, "b", &manifest("1")).await.unwrap();
        deployment_upsert(&db, "a", &manifest("1")).await.unwrap();
        assert_eq!(
            versions().await,
            [("a".into(), "1".into()), ("b".into(), "1".into())]
        );
        // Same length, other text: the trigger bumps the version the memo is keyed by.
        deployment_upsert(&db, "b", &manifest("2")).await.unwrap();
        assert_eq!(versions().await[1], ("b".into(), "2".into()));
        deployment_delete(&db, "a").await.unwrap();
        assert_eq!(versions().await, [("b".into(), "2".into())]);
        deployment_upsert(&db, "a", &manifest("3")).await.unwrap();
        assert_eq!(versions().await[0], ("a".into(), "3".into()));
    }
}
