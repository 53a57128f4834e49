//! `start` (sync): writes one monit file per job (numbered in reverse spec order), reloads
//! the supervisor, starts every `vcap` service and removes the `stopped` marker. It does not
//! wait for processes; the director polls `get_state`.

use super::{ActionDef, ActionError, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "start",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, _: Invocation) -> ActionFuture {
    Box::pin(async move {
        let _guard = agent.spec_lock.lock().await;
        write_monit_files(&agent, &agent.spec().job_names())?;
        agent.supervisor.reload()?;
        let marker = agent.layout.stopped_marker();
        if marker.exists() {
            std::fs::remove_file(&marker)
                .map_err(|e| ActionError::msg(format!("Removing {}: {e}", marker.display())))?;
        }
        agent.supervisor.start_all();
        Ok("started".into())
    })
}

/// `monit/job/NNNN_<job>.monitrc`, plus `NNNN_<job>_<label>.monitrc` for extra
/// `<label>.monit` files in a job dir.
pub fn write_monit_files(agent: &Agent, jobs: &[String]) -> Result<(), ActionError> {
    let dir = agent.layout.monit_jobs();
    let io = |e: std::io::Error| ActionError::msg(format!("Writing monit files: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let n = jobs.len();
    for (i, job) in jobs.iter().enumerate() {
        let number = format!("{:04}", n - i);
        let job_dir = agent.layout.job(job);
        let main = job_dir.join("monit");
        if main.is_file() {
            std::fs::copy(&main, dir.join(format!("{number}_{job}.monitrc"))).map_err(io)?;
        }
        let Ok(entries) = std::fs::read_dir(&job_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let (Some(stem), Some("monit")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            std::fs::copy(&path, dir.join(format!("{number}_{job}_{stem}.monitrc"))).map_err(io)?;
        }
    }
    Ok(())
}
