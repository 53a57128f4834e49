//! `bosh logs` (director-api.md §5.8): the `fetch_logs` task. Each selected instance's agent
//! tars its logs and uploads them to this director's blobstore (`fetch_logs` action); the
//! task's short `result` is the blobstore id of the bundle, which the CLI downloads through
//! `GET /resources/{id}`.
//!
//! One instance: the agent's tarball is the bundle. Several: as Ruby, every agent's tarball
//! is downloaded as `<group>.<uuid>.<YYYY-MM-DD-HH-MM-SS>.tgz`, the lot packed into one
//! tarball (`./`-rooted entries) and the agents' blobs deleted.
//!
//! Bundles are kept [`LOG_BUNDLE_TTL`] (Ruby's 10 days): each is registered as a marker file
//! `DATA_DIR/log_bundles/<blobstore id>` whose mtime is its creation time, and every
//! `fetch_logs` task first deletes the bundles (blob and marker) older than that.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::blobstore::{Blobstore, blob_id_valid};
use crate::repair::{self, Instance};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob, TaskRegistry};

pub const FETCH_LOGS: &str = "fetch_logs";
/// How long a log bundle stays in the blobstore (Ruby's `LogBundlesCleaner`: 10 days).
pub const LOG_BUNDLE_TTL: Duration = Duration::from_secs(10 * 24 * 60 * 60);
/// The log types an agent knows.
pub const LOG_TYPES: [&str; 3] = ["job", "agent", "system"];

/// Ruby's `InstanceVmMissing`.
const VM_MISSING: u32 = 140014;
/// Ruby's `RpcTimeout`.
const AGENT_TIMEOUT: u32 = 450002;
/// Ruby's `AgentTaskNoBlobstoreId`.
const NO_BLOBSTORE_ID: u32 = 450003;

/// What `GET /deployments/{dep}/jobs/{g}/{i}/logs` queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchLogsPayload {
    pub deployment: String,
    /// `None` for `*`.
    pub group: Option<String>,
    /// `None` for `*`.
    pub index_or_id: Option<String>,
    /// Comma list of [`LOG_TYPES`].
    pub log_types: String,
    /// Globs relative to the log directory; empty = everything.
    #[serde(default)]
    pub filters: Vec<String>,
}

/// Registers this component's task types (`fetch_logs`, and `ssh` from [`crate::ssh`]).
pub fn tasks_register(registry: &mut TaskRegistry, services: &Services, _director_name: &str) {
    registry.register(
        FETCH_LOGS,
        Arc::new(FetchLogsJob {
            services: services.clone(),
        }),
    );
    crate::ssh::tasks_register(registry, services);
}

struct FetchLogsJob {
    services: Services,
}

#[async_trait]
impl TaskJob for FetchLogsJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let p: FetchLogsPayload = serde_json::from_value(payload)
            .map_err(|e| TaskError::failed(40000, format!("Invalid fetch_logs payload: {e}")))?;
        let instances = repair::instance_select(
            ctx.db(),
            &p.deployment,
            p.group.as_deref(),
            p.index_or_id.as_deref(),
        )
        .await?;
        let named = p.group.is_some() && p.index_or_id.is_some();
        let mut picked = Vec::new();
        for i in instances {
            if i.vm.is_some() {
                picked.push(i);
            } else if named {
                return Err(TaskError::failed(
                    VM_MISSING,
                    format!("'{}' doesn't reference a VM", i.display()),
                ));
            }
        }
        if picked.is_empty() {
            return Err(TaskError::failed(
                VM_MISSING,
                format!(
                    "No instance with a VM in deployment '{}' to fetch logs from",
                    p.deployment
                ),
            ));
        }
        let bundles = log_bundles_dir(&self.services.data_dir);
        let removed =
            log_bundles_clean(self.services.blobstore.as_ref(), &bundles, LOG_BUNDLE_TTL).await;
        if removed > 0 {
            ctx.info(&format!("Deleted {removed} expired log bundle(s)"));
        }
        let filters = (!p.filters.is_empty()).then_some(&p.filters);
        let id = if picked.len() == 1 {
            logs_fetch(&self.services, ctx, &picked[0], &p.log_types, filters).await?
        } else {
            let fetched = join_all(
                picked
                    .iter()
                    .map(|i| logs_fetch(&self.services, ctx, i, &p.log_types, filters)),
            )
            .await;
            let blobs: Vec<(String, &Instance)> = {
                let mut blobs = Vec::new();
                let mut first_err = None;
                for (res, inst) in fetched.into_iter().zip(&picked) {
                    match res {
                        Ok(id) => blobs.push((id, inst)),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_err {
                    for (id, _) in &blobs {
                        let _ = self.services.blobstore.delete(id).await;
                    }
                    return Err(e);
                }
                blobs
            };
            logs_combine(&self.services, ctx, &blobs).await?
        };
        log_bundle_register(&bundles, &id);
        Ok(id)
    }
}

/// One agent's `fetch_logs`; the blobstore id of its tarball.
async fn logs_fetch(
    services: &Services,
    ctx: &TaskContext,
    inst: &Instance,
    log_types: &str,
    filters: Option<&Vec<String>>,
) -> Result<String, TaskError> {
    let stage = ctx.events().stage(
        &format!("Fetching logs for {}", inst.display()),
        &[],
        Some(1),
    );
    let task = stage.task("Finding and packing log files");
    let res = logs_fetch_agent(services, inst, log_types, filters).await;
    match &res {
        Ok(_) => task.finished(),
        Err(e) => task.failed(&e.to_string()),
    }
    res
}

async fn logs_fetch_agent(
    services: &Services,
    inst: &Instance,
    log_types: &str,
    filters: Option<&Vec<String>>,
) -> Result<String, TaskError> {
    let agent = inst.agent().ok_or_else(|| {
        TaskError::failed(
            VM_MISSING,
            format!("'{}' doesn't reference a VM", inst.display()),
        )
    })?;
    if !repair::agent_responsive(services, &agent).await {
        return Err(TaskError::failed(
            AGENT_TIMEOUT,
            format!(
                "Timed out sending 'fetch_logs' to instance: '{}', agent-id: '{agent}' after {} seconds",
                inst.name(),
                repair::PING_TIMEOUT.as_secs()
            ),
        ));
    }
    let client = services.agents()?.client();
    let reply = client
        .call(
            &agent,
            "fetch_logs",
            vec![json!(log_types), filters.map_or(Value::Null, |f| json!(f))],
        )
        .await
        .map_err(|e| {
            repair::agent_failed(&format!("Fetching logs from '{}'", inst.display()), &e)
        })?;
    match reply.get("blobstore_id").and_then(Value::as_str) {
        Some(id) if blob_id_valid(id) => Ok(id.to_owned()),
        _ => Err(TaskError::failed(
            NO_BLOBSTORE_ID,
            format!(
                "Agent of '{}' didn't return a blobstore object id for packaged logs",
                inst.display()
            ),
        )),
    }
}

/// Downloads every instance's tarball, packs them into one bundle, deletes the parts.
async fn logs_combine(
    services: &Services,
    ctx: &TaskContext,
    blobs: &[(String, &Instance)],
) -> Result<String, TaskError> {
    let stage = ctx.events().stage("Fetching group of logs", &[], Some(1));
    let task = stage.task("Packing log files together");
    let work = services.tmp_path("logs");
    let res = logs_combine_in(services, &work, blobs).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    for (id, _) in blobs {
        let _ = services.blobstore.delete(id).await;
    }
    match &res {
        Ok(_) => task.finished(),
        Err(e) => task.failed(&e.to_string()),
    }
    res
}

async fn logs_combine_in(
    services: &Services,
    work: &Path,
    blobs: &[(String, &Instance)],
) -> Result<String, TaskError> {
    let io = |what: &str, e: &dyn std::fmt::Display| {
        TaskError::failed(100, format!("Packing log files together: {what}: {e}"))
    };
    let parts = work.join("logs");
    tokio::fs::create_dir_all(&parts)
        .await
        .map_err(|e| io("creating a work dir", &e))?;
    let time = chrono::Utc::now().format("%Y-%m-%d-%H-%M-%S").to_string();
    for (id, inst) in blobs {
        let name = format!("{}.{}.{time}.tgz", inst.record.group, inst.record.uuid);
        services
            .blobstore
            .get_to_file(id, &parts.join(&name))
            .await
            .map_err(|e| {
                io(
                    "downloading an instance's logs",
                    &crate::error::error_chain(&e),
                )
            })?;
    }
    let bundle = work.join("logs.tgz");
    let (src, dest) = (parts.clone(), bundle.clone());
    tokio::task::spawn_blocking(move || tgz_flat(&src, &dest))
        .await
        .map_err(|e| io("packing", &e))?
        .map_err(|e| io("packing", &e))?;
    services
        .blobstore
        .put_file(&bundle)
        .await
        .map_err(|e| io("storing the bundle", &crate::error::error_chain(&e)))
}

/// A gzipped tarball of the files directly in `dir`, as `./<name>` entries in name order.
fn tgz_flat(dir: &Path, dest: &Path) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let file = std::fs::File::create(dest)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for name in names {
        let mut f = std::fs::File::open(dir.join(&name))?;
        let len = f.metadata()?.len();
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_mtime(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("./{name}"), &mut f)?;
    }
    tar.into_inner()?.finish()?.sync_all()
}

/// Where log bundle markers live.
pub fn log_bundles_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log_bundles")
}

/// Records a new bundle so that [`log_bundles_clean`] deletes it once expired.
fn log_bundle_register(dir: &Path, id: &str) {
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(dir.join(id), b"")) {
        tracing::warn!(blob = id, error = %e, "could not register log bundle for clean-up");
    }
}

/// Deletes the bundles registered more than `ttl` ago (blob, then marker); how many went.
/// Best effort: a blob that cannot be deleted keeps its marker for the next try.
pub async fn log_bundles_clean(blobstore: &dyn Blobstore, dir: &Path, ttl: Duration) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in rd.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let expired = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= ttl);
        if !expired || !blob_id_valid(&id) {
            continue;
        }
        match blobstore.delete(&id).await {
            Ok(_) => {
                let _ = std::fs::remove_file(entry.path());
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(blob = %id, error = %crate::error::error_chain(&e), "deleting an expired log bundle");
            }
        }
    }
    removed
}
