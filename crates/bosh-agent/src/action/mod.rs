//! Agent actions, one module each (§3). [`lookup`] is the action factory: a method that is not
//! listed here answers `unknown message <method>`.

use crate::agent::Agent;
use bosh_agent_protocol::{ArgumentError, Arguments};
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub mod add_persistent_disk;
pub mod apply;
pub mod cancel_task;
pub mod compile_package;
pub(crate) mod disk_support;
pub mod drain;
pub mod fetch_logs;
pub mod get_state;
pub mod get_task;
pub mod info;
pub mod list_disk;
pub mod migrate_disk;
pub mod mount_disk;
pub mod ping;
pub mod prepare;
pub mod remove_persistent_disk;
pub mod run_errand;
pub mod run_script;
pub mod shutdown;
pub mod ssh;
pub mod start;
pub mod stop;
pub mod sync_dns;
pub mod unmount_disk;
pub mod update_settings;
pub mod upload_blob;

/// One call of an action.
pub struct Invocation {
    pub args: Arguments,
    /// The request's `protocol` (0 when absent).
    pub protocol: u32,
    /// Fired by `cancel_task` for cancellable actions.
    pub cancel: CancellationToken,
    /// Set when running as an agent task.
    pub task_id: Option<String>,
}

pub type ActionFuture = BoxFuture<'static, Result<Value, ActionError>>;

/// How the handler runs an action.
pub struct ActionDef {
    pub name: &'static str,
    /// Whether a request with this protocol runs as an agent task.
    pub asynchronous: fn(u32) -> bool,
    pub cancellable: bool,
    /// Recorded before running and resumed after an agent restart.
    pub persistent: bool,
    pub run: fn(Arc<Agent>, Invocation) -> ActionFuture,
}

pub fn sync(_: u32) -> bool {
    false
}

pub fn not_sync(_: u32) -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Arguments(#[from] ArgumentError),
    #[error(transparent)]
    Apply(#[from] crate::applier::ApplyError),
    #[error(transparent)]
    Blobstore(#[from] crate::blobstore::BlobstoreError),
    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::SupervisorError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Task(#[from] crate::task::TaskError),
    #[error("{0}")]
    Message(String),
}

impl ActionError {
    pub fn msg(m: impl Into<String>) -> Self {
        ActionError::Message(m.into())
    }
}

const ACTIONS: &[ActionDef] = &[
    add_persistent_disk::ACTION,
    remove_persistent_disk::ACTION,
    mount_disk::ACTION,
    unmount_disk::ACTION,
    list_disk::ACTION,
    migrate_disk::ACTION,
    apply::ACTION,
    cancel_task::ACTION,
    compile_package::ACTION,
    drain::ACTION,
    fetch_logs::ACTION,
    get_state::ACTION,
    get_task::ACTION,
    info::ACTION,
    ping::ACTION,
    prepare::ACTION,
    run_errand::ACTION,
    run_script::ACTION,
    ssh::ACTION,
    sync_dns::ACTION,
    shutdown::ACTION,
    start::ACTION,
    stop::ACTION,
    update_settings::ACTION,
    upload_blob::ACTION,
];

pub fn lookup(method: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|a| a.name == method)
}

/// Runs the job script `bin/<script>` of every job in `jobs` that has one, in parallel;
/// output is appended to `sys/log/<job>/<script>.{stdout,stderr}.log`. Returns, per job that
/// had the script, its exit status and stdout.
pub(crate) async fn run_job_scripts(
    agent: &Agent,
    jobs: &[String],
    script: &str,
    args: &[String],
    env: &[(String, String)],
    cancel: &CancellationToken,
) -> Vec<(String, std::io::Result<(std::process::ExitStatus, String)>)> {
    let runs = jobs.iter().filter_map(|job| {
        let path = agent.layout.job(job).join("bin").join(script);
        if !path.is_file() {
            return None;
        }
        let log_dir = agent.layout.job_log_dir(job);
        let job = job.clone();
        let (args, env, cancel) = (args.to_vec(), env.to_vec(), cancel.clone());
        Some(async move {
            let result = run_script_file(&path, &log_dir, script, &args, &env, &cancel).await;
            (job, result)
        })
    });
    futures::future::join_all(runs).await
}

async fn run_script_file(
    path: &std::path::Path,
    log_dir: &std::path::Path,
    script: &str,
    args: &[String],
    env: &[(String, String)],
    cancel: &CancellationToken,
) -> std::io::Result<(std::process::ExitStatus, String)> {
    use tokio::io::AsyncWriteExt;
    std::fs::create_dir_all(log_dir)?;
    let stderr_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{script}.stderr.log")))?;
    let mut child = tokio::process::Command::new(path)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(stderr_log)
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
    let read = async {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut buf)
            .await
            .map(|_| buf)
    };
    let (out, status) = tokio::select! {
        r = async { let out = read.await?; let st = child.wait().await?; Ok::<_, std::io::Error>((out, st)) } => r?,
        _ = cancel.cancelled() => {
            let _ = child.kill().await;
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "canceled"));
        }
    };
    let mut log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(format!("{script}.stdout.log")))
        .await?;
    log.write_all(&out).await?;
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}
