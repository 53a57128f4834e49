//! `run_script(name, {"env": {...}})` (async): runs `bin/<name>` of every job that has it, in
//! parallel. Missing scripts are skipped; any failure fails the action with the real agent's
//! summary message.

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync, run_job_scripts};
use crate::agent::Agent;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "run_script",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

#[derive(Debug, Default, Deserialize)]
struct RunScriptOptions {
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let name: String = inv.args.get(0, 2)?;
        let options: RunScriptOptions = inv
            .args
            .get_folded::<Option<RunScriptOptions>>(1, 2, &["env"])?
            .unwrap_or_default();
        let env: Vec<(String, String)> = options.env.into_iter().collect();
        let jobs = agent.spec().job_names();
        let results = run_job_scripts(&agent, &jobs, &name, &[], &env, &inv.cancel).await;
        let (mut failed, mut ok) = (Vec::new(), Vec::new());
        for (job, result) in &results {
            match result {
                Ok((status, _)) if status.success() => ok.push(job.clone()),
                Ok((status, _)) => {
                    tracing::warn!(%job, script = %name, %status, "job script failed");
                    failed.push(job.clone());
                }
                Err(e) => {
                    tracing::warn!(%job, script = %name, error = %e, "job script could not run");
                    failed.push(job.clone());
                }
            }
        }
        if !failed.is_empty() {
            return Err(ActionError::msg(format!(
                "{} of {} {name} scripts failed. Failed Jobs: {}. Successful Jobs: {}.",
                failed.len(),
                results.len(),
                failed.join(", "),
                ok.join(", ")
            )));
        }
        Ok(serde_json::json!({}))
    })
}
