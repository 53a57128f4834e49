//! `drain(type, [spec])` (async, cancellable): unmonitors jobs, then runs every job's
//! `bin/drain` in parallel and honours static (N ≥ 0: wait N s) and dynamic (N < 0: wait |N| s,
//! ask again with `job_check_status`) results itself, so the action always returns 0 (§10.7).

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync, run_job_scripts};
use crate::agent::Agent;
use bosh_agent_protocol::{ApplySpec, subjects};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const ACTION: ActionDef = ActionDef {
    name: "drain",
    asynchronous: not_sync,
    cancellable: true,
    persistent: false,
    run,
};

/// Drain script arguments (agent `drain.ScriptParams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainParams {
    pub job_change: &'static str,
    pub hash_change: &'static str,
    pub updated_packages: Vec<String>,
    pub job_state: String,
    pub job_next_state: Option<String>,
}

fn presented_state(spec: &ApplySpec) -> String {
    json!({"persistent_disk": spec.persistent_disk.unwrap_or(0)}).to_string()
}

impl DrainParams {
    pub fn shutdown(old: &ApplySpec, new: Option<&ApplySpec>) -> Self {
        DrainParams {
            job_change: "job_shutdown",
            hash_change: "hash_unchanged",
            updated_packages: vec![],
            job_state: presented_state(old),
            job_next_state: new.map(presented_state),
        }
    }

    pub fn update(old: &ApplySpec, new: &ApplySpec) -> Self {
        let job_change = if old.job_names().is_empty() {
            "job_new"
        } else {
            "job_changed"
        };
        let hash_change = match (
            old.configuration_hash.as_deref().unwrap_or(""),
            new.configuration_hash.as_deref(),
        ) {
            ("", _) => "hash_new",
            (o, Some(n)) if o == n => "hash_unchanged",
            _ => "hash_changed",
        };
        let mut updated_packages: Vec<String> = new
            .packages
            .values()
            .filter(|p| old.packages.get(&p.name).is_none_or(|o| o.sha1 != p.sha1))
            .map(|p| p.name.clone())
            .collect();
        updated_packages.sort();
        DrainParams {
            job_change,
            hash_change,
            updated_packages,
            job_state: presented_state(old),
            job_next_state: Some(presented_state(new)),
        }
    }

    fn status(&self) -> Self {
        DrainParams {
            job_change: "job_check_status",
            hash_change: "hash_unchanged",
            updated_packages: vec![],
            job_state: self.job_state.clone(),
            job_next_state: None,
        }
    }

    fn args(&self) -> Vec<String> {
        let mut a = vec![self.job_change.to_owned(), self.hash_change.to_owned()];
        a.extend(self.updated_packages.iter().cloned());
        a
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("BOSH_JOB_STATE".to_owned(), self.job_state.clone())];
        if let Some(next) = &self.job_next_state {
            env.push(("BOSH_JOB_NEXT_STATE".to_owned(), next.clone()));
        }
        env
    }
}

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let kind: String = inv.args.get(0, 1)?;
        let new_spec: Option<ApplySpec> = inv.args.optional(1)?;
        let old = agent.spec();
        let params = match kind.as_str() {
            "update" => {
                let new =
                    new_spec.ok_or_else(|| ActionError::msg("Drain update requires new spec"))?;
                DrainParams::update(&old, &new)
            }
            "shutdown" => {
                agent.publish(
                    subjects::shutdown(&agent.agent_id),
                    &serde_json::Value::Null,
                );
                DrainParams::shutdown(&old, new_spec.as_ref())
            }
            "status" => {
                return Err(ActionError::msg(
                    "Check Status on Drain action requires a valid drain type",
                ));
            }
            other => return Err(ActionError::msg(format!("Unknown drain type '{other}'"))),
        };
        agent.supervisor.unmonitor_all();
        let jobs = old.job_names();
        let drains = jobs
            .iter()
            .map(|job| drain_job(&agent, job, &params, &inv.cancel));
        let errors: Vec<String> = futures::future::join_all(drains)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        if !errors.is_empty() {
            return Err(ActionError::msg(errors.join("; ")));
        }
        Ok(json!(0))
    })
}

/// Runs one job's drain script to completion, including dynamic-drain status polling.
async fn drain_job(
    agent: &Agent,
    job: &str,
    params: &DrainParams,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let mut current = params.clone();
    loop {
        let jobs = [job.to_owned()];
        let mut results = run_job_scripts(
            agent,
            &jobs,
            "drain",
            &current.args(),
            &current.env(),
            cancel,
        )
        .await;
        let Some((_, result)) = results.pop() else {
            return Ok(());
        };
        let (status, stdout) =
            result.map_err(|e| format!("Running drain script for {job}: {e}"))?;
        if !status.success() {
            return Err(format!("Running drain script for {job}: {status}"));
        }
        let wait: i64 = stdout.trim().parse().map_err(|_| {
            format!(
                "Running drain script for {job}: script printed '{}', not an integer",
                stdout.trim()
            )
        })?;
        let secs = Duration::from_secs(wait.unsigned_abs());
        tokio::select! {
            _ = tokio::time::sleep(secs) => {}
            _ = cancel.cancelled() => return Err("canceled".to_owned()),
        }
        if wait >= 0 {
            return Ok(());
        }
        current = params.status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_params_follow_the_agent() {
        let old: ApplySpec = serde_json::from_value(json!({
            "job": {"name": "j", "templates": [{"name": "a"}]}, "configuration_hash": "h1", "persistent_disk": 1024,
            "packages": {"p": {"name": "p", "sha1": "x"}, "q": {"name": "q", "sha1": "y"}}
        }))
        .unwrap();
        let new: ApplySpec = serde_json::from_value(json!({
            "configuration_hash": "h2",
            "packages": {"p": {"name": "p", "sha1": "x"}, "q": {"name": "q", "sha1": "z"}, "r": {"name": "r", "sha1": "w"}}
        }))
        .unwrap();
        let p = DrainParams::update(&old, &new);
        assert_eq!(p.args(), vec!["job_changed", "hash_changed", "q", "r"]);
        assert_eq!(
            p.env()[0],
            (
                "BOSH_JOB_STATE".to_owned(),
                r#"{"persistent_disk":1024}"#.to_owned()
            )
        );
        assert_eq!(
            p.status().args(),
            vec!["job_check_status", "hash_unchanged"]
        );
        assert_eq!(
            DrainParams::update(&ApplySpec::default(), &new).args()[..2],
            ["job_new", "hash_new"]
        );
        assert_eq!(
            DrainParams::shutdown(&old, None).args(),
            vec!["job_shutdown", "hash_unchanged"]
        );
    }
}
