//! `run_errand([name])` (async, cancellable): runs `jobs/<name>/bin/run` (default: the
//! spec's `job.template`, else the first job) and returns `{stdout, stderr, exit_code}`; a
//! non-zero exit is not an error. `cancel_task` sends SIGTERM to the errand's process group
//! (SIGKILL after 10 s) and the task still returns the result.

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub const ACTION: ActionDef = ActionDef {
    name: "run_errand",
    asynchronous: not_sync,
    cancellable: true,
    persistent: false,
    run,
};

const KILL_GRACE: Duration = Duration::from_secs(10);

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let requested: Option<String> = inv.args.optional(0)?;
        let spec = agent.spec();
        let jobs = spec.job_names();
        let name = match requested.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !jobs.contains(&n) {
                    return Err(ActionError::msg(format!(
                        "Could not find errand '{n}' in the jobs of this instance"
                    )));
                }
                n
            }
            None => spec
                .job
                .as_ref()
                .and_then(|j| j.template.clone())
                .filter(|t| !t.is_empty())
                .or_else(|| jobs.first().cloned())
                .ok_or_else(|| {
                    ActionError::msg("At least one job template is required to run an errand")
                })?,
        };
        let script = agent.layout.job(&name).join("bin").join("run");
        if !script.is_file() {
            return Err(ActionError::msg(format!(
                "Running errand script: {} does not exist",
                script.display()
            )));
        }
        let mut child = tokio::process::Command::new(&script)
            .current_dir(agent.layout.job(&name))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ActionError::msg(format!("Running errand script: {e}")))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        let (mut out, mut err) = (
            child
                .stdout
                .take()
                .ok_or_else(|| ActionError::msg("no stdout pipe"))?,
            child
                .stderr
                .take()
                .ok_or_else(|| ActionError::msg("no stderr pipe"))?,
        );
        let read_out = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b).await;
            b
        });
        let read_err = tokio::spawn(async move {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b).await;
            b
        });
        let status = tokio::select! {
            st = child.wait() => st,
            _ = inv.cancel.cancelled() => {
                if let Some(pid) = pid {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
                }
                match tokio::time::timeout(KILL_GRACE, child.wait()).await {
                    Ok(st) => st,
                    Err(_) => {
                        if let Some(pid) = pid {
                            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                        }
                        child.wait().await
                    }
                }
            }
        }
        .map_err(|e| ActionError::msg(format!("Running errand script: {e}")))?;
        let stdout = read_out.await.unwrap_or_default();
        let stderr = read_err.await.unwrap_or_default();
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        let log_dir = agent.layout.job_log_dir(&name);
        if std::fs::create_dir_all(&log_dir).is_ok() {
            let _ = std::fs::write(log_dir.join("errand.stdout.log"), &stdout);
            let _ = std::fs::write(log_dir.join("errand.stderr.log"), &stderr);
        }
        Ok(json!({
            "stdout": String::from_utf8_lossy(&stdout),
            "stderr": String::from_utf8_lossy(&stderr),
            "exit_code": exit_code,
        }))
    })
}
