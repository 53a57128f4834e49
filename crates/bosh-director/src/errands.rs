//! Errands (director-api.md §5.10): listing a deployment's errands and the `run_errand` task.
//!
//! An errand is either an instance group with `lifecycle: errand` (a *dedicated* errand: its
//! VMs are made for the run, see [`crate::deploy::errand`], and deleted after it unless
//! `keep-alive`), or a release job with a `bin/run` template (by job name: it runs
//! *colocated* on the service instances that have the job, in parallel). On each instance the
//! agent's `run_errand` runs the script; its exit code is a result, not a failure. Then the
//! instance's job logs are packed (`fetch_logs`) and one JSON line per instance goes to the
//! task's result output. `when-changed` skips a run when every instance would run with what
//! the last fully successful run had (`errand_runs`).

use async_trait::async_trait;
use bosh_agent_client::{AgentClient, AgentReply};
use bosh_planner::{DeploymentPlan, PlanInput};
use bosh_types::manifest::Lifecycle;
use futures::future::join_all;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::db::{Db, DbError, now_secs};
use crate::deploy::errand::{ErrandGroup, plan_load};
use crate::events::{NewEvent, event_create};
use crate::locks::LockSpec;
use crate::repair::{self, agent_failed};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob, TaskRegistry};

/// The task type of `POST /deployments/{dep}/errands/{name}/runs`.
pub const RUN_ERRAND: &str = "run_errand";
/// Ruby's `DeploymentNotFound`.
pub const DEPLOYMENT_NOT_FOUND: u32 = 70000;
/// Ruby's `JobNotFound`.
pub const ERRAND_NOT_FOUND: u32 = 70009;
/// Ruby's `InstanceNotFound`.
pub use crate::repair::INSTANCE_NOT_FOUND;
/// Ruby's `RunErrandError`.
pub const RUN_ERRAND_FAILED: u32 = 510000;
/// Ruby's `AgentInvalidTaskResult`.
pub const INVALID_RESULT: u32 = 400011;
/// How long an errand script may run.
const ERRAND_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How often a running errand looks for a cancel.
const CANCEL_POLL: Duration = Duration::from_secs(2);

/// Registers this component's task types.
pub fn tasks_register(registry: &mut TaskRegistry, services: &Services, director_name: &str) {
    registry.register(
        RUN_ERRAND,
        Arc::new(RunErrandJob {
            services: services.clone(),
            director_name: director_name.to_owned(),
        }),
    );
}

/// `{"group": …, "id": …}` of the request's `instances`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct InstanceFilter {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub id: Option<String>,
}

impl InstanceFilter {
    fn text(&self) -> String {
        match self.id.as_deref().filter(|s| !s.is_empty()) {
            Some(id) => format!("{}/{id}", self.group),
            None => self.group.clone(),
        }
    }

    /// Ruby's `InstanceFilter#matches?`: a group, `group/first`, `group/uuid` or `group/index`.
    fn matches(&self, i: &repair::Instance, all: &[repair::Instance]) -> bool {
        if i.record.group != self.group {
            return false;
        }
        match self.id.as_deref().filter(|s| !s.is_empty()) {
            None => true,
            Some("first") => {
                all.iter()
                    .filter(|x| x.record.group == self.group)
                    .map(|x| x.record.uuid.as_str())
                    .min()
                    == Some(i.record.uuid.as_str())
            }
            Some(x) => i.is_named(x),
        }
    }
}

/// The task payload.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct RunErrandPayload {
    pub deployment: String,
    pub errand: String,
    #[serde(default)]
    pub keep_alive: bool,
    #[serde(default)]
    pub when_changed: bool,
    #[serde(default)]
    pub instances: Vec<InstanceFilter>,
}

/// Whether a release job runs as an errand: one of its templates renders to `bin/run`.
fn job_runs_as_errand(input: &PlanInput, release: &str, version: &str, job: &str) -> bool {
    let mut candidates = input.releases.iter().filter(|r| r.name == release);
    let exact = input
        .releases
        .iter()
        .find(|r| r.name == release && r.version == version);
    let found = exact.or_else(|| candidates.next());
    found
        .and_then(|r| r.jobs.iter().find(|j| j.name == job))
        .is_some_and(|j| j.spec.templates.values().any(|dest| dest == "bin/run"))
}

/// The errand names of a plan, as Ruby lists them: errand groups, then every job that runs
/// as an errand, without repeats.
pub fn errand_names(plan: &DeploymentPlan, input: &PlanInput) -> Vec<String> {
    let mut out: Vec<String> = plan
        .instance_groups
        .iter()
        .filter(|g| g.lifecycle == Lifecycle::Errand)
        .map(|g| g.name.clone())
        .collect();
    for g in &plan.instance_groups {
        for j in &g.jobs {
            if job_runs_as_errand(input, &j.release, &j.release_version, &j.name)
                && !out.contains(&j.name)
            {
                out.push(j.name.clone());
            }
        }
    }
    out
}

/// The errands of a deployment's stored manifest.
pub async fn deployment_errands(db: &Db, manifest: &str) -> Result<Vec<String>, TaskError> {
    let (loaded, plan) = plan_load(db, manifest).await?;
    Ok(errand_names(&plan, &loaded.input))
}

/// Where an errand runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// On the errand group's own VMs.
    Dedicated { group: String },
    /// On the service instances of these groups.
    Colocated { groups: Vec<String> },
}

/// Ruby's `ErrandProvider#get`: a job name first (on every group with the job), else an
/// errand group's name.
fn steps_resolve(
    plan: &DeploymentPlan,
    name: &str,
    filters: &[InstanceFilter],
    ctx: &TaskContext,
) -> Result<(Vec<Step>, bool), TaskError> {
    let with_job: Vec<_> = plan
        .instance_groups
        .iter()
        .filter(|g| g.jobs.iter().any(|j| j.name == name))
        .collect();
    if with_job.is_empty() {
        let Some(g) = plan.instance_groups.iter().find(|g| g.name == name) else {
            return Err(TaskError::failed(
                ERRAND_NOT_FOUND,
                format!("Errand '{name}' doesn't exist"),
            ));
        };
        if g.lifecycle != Lifecycle::Errand {
            return Err(TaskError::failed(
                RUN_ERRAND_FAILED,
                format!(
                    "Instance group '{}' is not an errand. To mark an instance group as an errand set its lifecycle to 'errand' in the deployment manifest.",
                    g.name
                ),
            ));
        }
        if g.instances.is_empty() {
            return Err(TaskError::failed(
                INSTANCE_NOT_FOUND,
                format!("Instance '{}/{name}/0' doesn't exist", plan.name),
            ));
        }
        if !filters.is_empty() {
            return Err(TaskError::failed(
                RUN_ERRAND_FAILED,
                "Filtering by instances is not supported when running errand by instance group name",
            ));
        }
        return Ok((
            vec![Step::Dedicated {
                group: g.name.clone(),
            }],
            false,
        ));
    }
    if plan.instance_groups.iter().any(|g| g.name == name) {
        ctx.events().warning(&format!(
            "Ambiguous request: the requested errand name '{name}' matches both a job name and an errand instance group name. Executing errand on all relevant instances with job '{name}'."
        ));
    }
    let mut steps = Vec::new();
    let mut colocated = Vec::new();
    for g in with_job {
        if g.lifecycle == Lifecycle::Errand {
            if filters.is_empty() || filters.iter().any(|f| f.group == g.name) {
                steps.push(Step::Dedicated {
                    group: g.name.clone(),
                });
            }
        } else {
            colocated.push(g.name.clone());
        }
    }
    if !colocated.is_empty() {
        steps.push(Step::Colocated { groups: colocated });
    }
    Ok((steps, true))
}

/// One instance the errand runs on.
struct Target {
    inst: repair::Instance,
    state_hash: String,
}

/// One instance's result line.
struct RunResult {
    exit_code: i64,
}

pub struct RunErrandJob {
    pub services: Services,
    pub director_name: String,
}

#[async_trait]
impl TaskJob for RunErrandJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let p: RunErrandPayload = serde_json::from_value(payload).map_err(|e| {
            TaskError::failed(RUN_ERRAND_FAILED, format!("run_errand payload: {e}"))
        })?;
        ctx.lock(&LockSpec::deployment(&p.deployment)).await?;
        ctx.checkpoint().await?;
        self.errand_run(ctx, &p).await
    }
}

fn colocated_state_hash(inst: &repair::Instance) -> String {
    let spec = &inst.record.spec;
    let mut digest = Sha1::new();
    digest.update(&inst.record.uuid);
    digest.update(
        spec.get("configuration_hash")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    digest.update(
        spec.get("packages")
            .map(Value::to_string)
            .unwrap_or_default(),
    );
    hex::encode(digest.finalize())
}

impl RunErrandJob {
    async fn errand_run(
        &self,
        ctx: &TaskContext,
        p: &RunErrandPayload,
    ) -> Result<String, TaskError> {
        let db = ctx.db();
        let stage = ctx.events().stage("Preparing deployment", &[], Some(1));
        let t = stage.task("Preparing deployment");
        let prepared = async {
            let dep = crate::deployments::deployment_fetch(db, &p.deployment)
                .await?
                .ok_or_else(|| {
                    TaskError::failed(
                        DEPLOYMENT_NOT_FOUND,
                        format!("Deployment '{}' doesn't exist", p.deployment),
                    )
                })?;
            let (loaded, plan) = plan_load(db, &dep.manifest).await?;
            let (steps, by_job) = steps_resolve(&plan, &p.errand, &p.instances, ctx)?;
            let all = repair::instance_list(db, &p.deployment).await?;
            let mut colocated = Vec::new();
            let mut unmatched: Vec<String> = Vec::new();
            for f in &p.instances {
                if !all.iter().any(|i| f.matches(i, &all)) {
                    unmatched.push(f.text());
                }
            }
            for s in &steps {
                let Step::Colocated { groups } = s else {
                    continue;
                };
                let picked: Vec<&repair::Instance> = all
                    .iter()
                    .filter(|i| groups.contains(&i.record.group))
                    .filter(|i| p.instances.is_empty() || p.instances.iter().any(|f| f.matches(i, &all)))
                    .collect();
                let stopped: Vec<String> = picked
                    .iter()
                    .filter(|i| i.record.state != "started")
                    .map(|i| format!("'{}'", i.name()))
                    .collect();
                if !stopped.is_empty() {
                    return Err(TaskError::failed(
                        RUN_ERRAND_FAILED,
                        format!(
                            "Instance(s) {} is stopped, unable to run errand. Maybe start vm?",
                            stopped.join(",")
                        ),
                    ));
                }
                if picked.len() > 1 {
                    ctx.events().warning(
                        "Executing errand on multiple instances in parallel. Use the `--instance` flag to run the errand on a single instance.",
                    );
                }
                for i in picked {
                    if i.vm.is_none() {
                        ctx.events().warning(&format!(
                            "Skipping instance: {} no matching VM reference was found",
                            i.display()
                        ));
                        continue;
                    }
                    colocated.push(Target {
                        inst: i.clone(),
                        state_hash: colocated_state_hash(i),
                    });
                }
            }
            if !unmatched.is_empty() {
                return Err(TaskError::failed(
                    RUN_ERRAND_FAILED,
                    format!(
                        "No instances match selection criteria: [{}]",
                        unmatched.join(", ")
                    ),
                ));
            }
            let dedicated: Vec<String> = steps
                .iter()
                .filter_map(|s| match s {
                    Step::Dedicated { group } => Some(group.clone()),
                    Step::Colocated { .. } => None,
                })
                .collect();
            Ok::<_, TaskError>((loaded, plan, dedicated, colocated, by_job))
        }
        .await;
        let (loaded, plan, dedicated, mut targets, by_job) = match prepared {
            Ok(x) => {
                t.finished();
                x
            }
            Err(e) => {
                t.failed(&e.to_string());
                return Err(e);
            }
        };

        // Ruby runs a dedicated errand on the group's first instance; a run names one group.
        let mut group: Option<ErrandGroup> = None;
        if let Some(name) = dedicated.first() {
            let g = ErrandGroup::prepare(
                ctx,
                &self.services,
                &self.director_name,
                loaded,
                &plan,
                name,
            )
            .await?;
            group = Some(g);
        }
        let dedicated_first = group.as_ref().and_then(|g| {
            g.instances()
                .first()
                .map(|i| (i.id, g.instance_state_hash(i.id)))
        });

        if p.when_changed {
            let mut hashes: Vec<(String, String)> = targets
                .iter()
                .map(|t| (t.inst.record.uuid.clone(), t.state_hash.clone()))
                .collect();
            if let Some((id, h)) = &dedicated_first {
                hashes.push((id.to_string(), h.clone()));
            }
            if errand_unchanged(db, &p.deployment, &p.errand, &hashes).await? {
                ctx.info("errand skipped: nothing changed since the last successful run");
                return Ok("skipped - no changes detected".to_owned());
            }
        }

        let outcome = async {
            if let (Some(g), Some((id, hash))) = (&group, &dedicated_first) {
                g.vms_update(ctx, &self.services, &self.director_name)
                    .await?;
                let inst = repair::instance_list(db, &p.deployment)
                    .await?
                    .into_iter()
                    .find(|i| i.record.uuid == id.to_string())
                    .ok_or_else(|| {
                        TaskError::failed(
                            INSTANCE_NOT_FOUND,
                            format!("Errand instance '{id}' has no row"),
                        )
                    })?;
                targets.push(Target {
                    inst,
                    state_hash: hash.clone(),
                });
            }
            for t in &targets {
                errand_run_record(db, p, t, ctx.id.0).await?;
            }
            let runs = join_all(targets.iter().map(|t| self.instance_run(ctx, p, t, by_job))).await;
            let mut results = Vec::new();
            let mut first_err = None;
            for r in runs {
                match r {
                    Ok(x) => results.push(x),
                    Err(e) => {
                        if first_err.is_none() {
                            first_err = Some(e);
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            Ok::<_, TaskError>(results)
        }
        .await;

        if let Some(g) = &group
            && !p.keep_alive
        {
            let cleanup = self.errand_vms_delete(ctx, &p.deployment, g).await;
            if let Err(e) = &cleanup {
                tracing::warn!(error = %e, "deleting errand VMs");
            }
            if outcome.is_ok() {
                cleanup?;
            }
        }
        let results = outcome?;
        let count = |f: fn(i64) -> bool| results.iter().filter(|r| f(r.exit_code)).count();
        Ok(format!(
            "{} succeeded, {} errored, {} canceled",
            count(|c| c == 0),
            count(|c| c > 0 && c <= 128),
            count(|c| c > 128),
        ))
    }

    /// Deletes the VMs of the errand group's instances (they keep rows, disks and IPs).
    async fn errand_vms_delete(
        &self,
        ctx: &TaskContext,
        deployment: &str,
        g: &ErrandGroup,
    ) -> Result<(), TaskError> {
        let names: BTreeSet<&str> = g
            .plan
            .instance_groups
            .iter()
            .map(|x| x.name.as_str())
            .collect();
        for inst in repair::instance_list(ctx.db(), deployment).await? {
            if names.contains(inst.record.group.as_str()) && inst.vm.is_some() {
                repair::vm_remove(ctx, &self.services, &inst, true).await?;
            }
        }
        Ok(())
    }

    /// Runs the errand on one instance, fetches its logs and writes its result line.
    async fn instance_run(
        &self,
        ctx: &TaskContext,
        p: &RunErrandPayload,
        t: &Target,
        by_job: bool,
    ) -> Result<RunResult, TaskError> {
        let db = ctx.db();
        let base = NewEvent {
            user: ctx.user.clone(),
            action: "run".to_owned(),
            object_type: "errand".to_owned(),
            object_name: Some(p.errand.clone()),
            task: Some(ctx.id.to_string()),
            deployment: Some(p.deployment.clone()),
            instance: Some(t.inst.name()),
            ..NewEvent::default()
        };
        let parent = event_create(db, &base).await?;
        let outcome = self.instance_run_inner(ctx, p, t, by_job).await;
        let mut end = NewEvent {
            parent_id: Some(parent),
            ..base
        };
        match &outcome {
            Ok(r) => {
                let mut context = Map::new();
                context.insert("exit_code".into(), json!(r.exit_code));
                end.context = context;
            }
            Err(e) => end.error = Some(e.to_string()),
        }
        event_create(db, &end).await?;
        outcome
    }

    async fn instance_run_inner(
        &self,
        ctx: &TaskContext,
        p: &RunErrandPayload,
        t: &Target,
        by_job: bool,
    ) -> Result<RunResult, TaskError> {
        let client = self.services.agents()?.client();
        let agent = t.inst.agent().ok_or_else(|| {
            TaskError::failed(
                RUN_ERRAND_FAILED,
                format!("Instance '{}' has no VM", t.inst.display()),
            )
        })?;
        let stage = ctx.events().stage("Running errand", &[], Some(1));
        let task = stage.task(&t.inst.display());
        let args = if by_job {
            vec![json!(p.errand)]
        } else {
            Vec::new()
        };
        let (value, cancelled) = match errand_agent_run(ctx, client, &agent, args).await {
            Ok(x) => {
                task.finished();
                x
            }
            Err(e) => {
                task.failed(&e.to_string());
                return Err(e);
            }
        };
        let exit_code = value.get("exit_code").and_then(Value::as_i64);
        let stdout = value.get("stdout").and_then(Value::as_str);
        let stderr = value.get("stderr").and_then(Value::as_str);
        let (Some(exit_code), Some(stdout), Some(stderr)) = (exit_code, stdout, stderr) else {
            return Err(TaskError::failed(
                INVALID_RESULT,
                format!(
                    "Invalid run_errand result from '{}': {value}",
                    t.inst.display()
                ),
            ));
        };

        let logs_stage = ctx.events().stage(
            &format!("Fetching logs for {}", t.inst.display()),
            &[],
            Some(1),
        );
        let logs_task = logs_stage.task("Finding and packing log files");
        let logs = client
            .call(&agent, "fetch_logs", vec![json!("job"), Value::Null])
            .await
            .map_err(|e| agent_failed(&format!("Fetching logs of '{}'", t.inst.display()), &e));
        let (blobstore_id, sha1, logs_err) = match logs {
            Ok(v) => {
                logs_task.finished();
                let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
                (field("blobstore_id"), field("sha1"), None)
            }
            Err(e) => {
                logs_task.failed(&e.to_string());
                (None, None, Some(e))
            }
        };
        let line = json!({
            "instance": {"group": t.inst.record.group, "id": t.inst.record.uuid},
            "errand_name": p.errand,
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "logs": {"blobstore_id": blobstore_id, "sha1": sha1},
        });
        ctx.result_output().append_line(&line.to_string());
        errand_run_finish(ctx.db(), p, t, ctx.id.0, exit_code).await?;
        if cancelled {
            return Err(TaskError::Cancelled(ctx.id));
        }
        if let Some(e) = logs_err {
            return Err(e);
        }
        Ok(RunResult { exit_code })
    }
}

/// `run_errand` as a long-running agent task; a cancelled director task cancels the agent's
/// task, whose result still arrives (and says how the script ended). Returns the result and
/// whether it was cancelled.
async fn errand_agent_run(
    ctx: &TaskContext,
    client: &AgentClient,
    agent: &str,
    args: Vec<Value>,
) -> Result<(Value, bool), TaskError> {
    let failed = |e: bosh_agent_client::AgentError| agent_failed("Running errand", &e);
    let handle = match client
        .start_task(agent, "run_errand", args)
        .await
        .map_err(failed)?
    {
        AgentReply::Done(v) => return Ok((v, false)),
        AgentReply::Task(h) => h,
    };
    let id = handle.agent_task_id;
    let wait = client.wait_for_task(agent, "run_errand", &id, ERRAND_TIMEOUT);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            r = &mut wait => return r.map(|v| (v, false)).map_err(failed),
            _ = tokio::time::sleep(CANCEL_POLL) => {
                if let Err(TaskError::Cancelled(_)) = ctx.checkpoint().await {
                    if let Err(e) = client.cancel_task(agent, &id).await {
                        tracing::warn!(error = %e, "cancelling the agent's errand task");
                    }
                    return wait.await.map(|v| (v, true)).map_err(failed);
                }
            }
        }
    }
}

/// The run's row for an instance, without an exit code until it ends: a run that never ends
/// does not count as successful.
async fn errand_run_record(
    db: &Db,
    p: &RunErrandPayload,
    t: &Target,
    task_id: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO errand_runs (deployment, errand, instance_group, instance_uuid, \
         configuration_hash, task_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&p.deployment)
    .bind(&p.errand)
    .bind(&t.inst.record.group)
    .bind(&t.inst.record.uuid)
    .bind(&t.state_hash)
    .bind(task_id)
    .bind(now_secs())
    .execute(db.pool())
    .await?;
    Ok(())
}

async fn errand_run_finish(
    db: &Db,
    p: &RunErrandPayload,
    t: &Target,
    task_id: i64,
    exit_code: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE errand_runs SET exit_code = $1 WHERE deployment = $2 AND errand = $3 \
         AND instance_uuid = $4 AND task_id = $5",
    )
    .bind(exit_code)
    .bind(&p.deployment)
    .bind(&p.errand)
    .bind(&t.inst.record.uuid)
    .bind(task_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether the errand's last run succeeded everywhere with exactly these instances and state
/// hashes.
async fn errand_unchanged(
    db: &Db,
    deployment: &str,
    errand: &str,
    now: &[(String, String)],
) -> Result<bool, DbError> {
    let last: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT MAX(task_id) FROM errand_runs WHERE deployment = $1 AND errand = $2",
    )
    .bind(deployment)
    .bind(errand)
    .fetch_optional(db.pool())
    .await?;
    let Some((Some(task),)) = last else {
        return Ok(false);
    };
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT instance_uuid, configuration_hash, exit_code FROM errand_runs \
         WHERE deployment = $1 AND errand = $2 AND task_id = $3",
    )
    .bind(deployment)
    .bind(errand)
    .bind(task)
    .fetch_all(db.pool())
    .await?;
    if rows.is_empty() || rows.iter().any(|r| r.2 != Some(0)) {
        return Ok(false);
    }
    let before: BTreeSet<(String, String)> = rows.into_iter().map(|r| (r.0, r.1)).collect();
    let now: BTreeSet<(String, String)> = now.iter().cloned().collect();
    Ok(before == now)
}
