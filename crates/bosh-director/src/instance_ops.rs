//! Instance operations (director-api.md §5.4, §5.11): `bosh start|stop|restart|recreate`, with
//! and without `--no-converge`, and `bosh delete-vm`.
//!
//! Unlike the Ruby director, which re-plans the whole deployment for a state change, these
//! tasks act on the selected instances from what they last ran with (`crate::repair`): the
//! stored VM spec and the last applied spec. That is what "converge to the last successful
//! deploy" means here; a manifest change still needs `bosh deploy`.

use async_trait::async_trait;
use bosh_agent_client::DrainType;
use bosh_cpi_protocol::CpiErrorKind;
use bosh_types::ids::VmCid;
use bosh_types::manifest::{Count, Manifest, UpdateConfig};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::error_chain;
use crate::events::{NewEvent, event_create, task_events_wrap};
use crate::locks::LockSpec;
use crate::repair::{self, Instance, NextState, RecreateOptions, WATCH_DEFAULT};
use crate::services::Services;
use crate::tasks::events::Stage;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob, TaskRegistry};
use crate::vms::{self, Vm};

/// The task type of every state change (converging or not). Ruby runs the converging form
/// as `update_deployment`; `update_instance` keeps both visible in `bosh tasks`.
pub const UPDATE_INSTANCE: &str = "update_instance";
/// `bosh delete-vm`.
pub const DELETE_VM: &str = "delete_vm";

/// Ruby's `JobInstanceIgnored` (an ignored instance named in a converging change).
pub const INSTANCE_IGNORED: u32 = 140021;
/// Ruby's `DeploymentIgnoredInstancesModification` (the `--no-converge` form).
pub const IGNORED_MODIFICATION: u32 = 190020;
/// Ruby's `JobInvalidLifecycle`.
pub const INVALID_LIFECYCLE: u32 = 140011;
/// Ruby's `DeploymentNotFound`.
const DEPLOYMENT_NOT_FOUND: u32 = 70000;

/// Registers this component's task types.
pub fn tasks_register(registry: &mut TaskRegistry, services: &Services, _director_name: &str) {
    registry.register(
        UPDATE_INSTANCE,
        Arc::new(InstanceStateJob {
            services: services.clone(),
        }),
    );
    registry.register(
        DELETE_VM,
        Arc::new(DeleteVmJob {
            services: services.clone(),
        }),
    );
}

/// What `state=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    Started,
    Stopped,
    Detached,
    Restart,
    Recreate,
}

impl TargetState {
    pub fn parse(s: &str) -> Option<TargetState> {
        Some(match s {
            "started" => TargetState::Started,
            "stopped" => TargetState::Stopped,
            "detached" => TargetState::Detached,
            "restart" => TargetState::Restart,
            "recreate" => TargetState::Recreate,
            _ => return None,
        })
    }

    /// The event action Ruby records per instance.
    fn action(self) -> &'static str {
        match self {
            TargetState::Started => "start",
            TargetState::Stopped | TargetState::Detached => "stop",
            TargetState::Restart => "restart",
            TargetState::Recreate => "recreate",
        }
    }
}

/// A non-converging action (`POST …/actions/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Restart,
    Recreate,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "restart" => Action::Restart,
            "recreate" => Action::Recreate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Recreate => "recreate",
        }
    }
}

/// The payload of an `update_instance` task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum StatePayload {
    /// `PUT /deployments/{dep}/jobs/{group|*}[/{index_or_id}]?state=…`
    Converge {
        deployment: String,
        group: Option<String>,
        index_or_id: Option<String>,
        state: TargetState,
        #[serde(default)]
        skip_drain: bool,
        #[serde(default)]
        fix: bool,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        canaries: Option<String>,
        #[serde(default)]
        max_in_flight: Option<String>,
    },
    /// `POST /deployments/{dep}/instance_groups/{g}/{id}/actions/{action}`
    Action {
        deployment: String,
        group: String,
        index_or_id: String,
        action: Action,
        #[serde(default)]
        skip_drain: bool,
        #[serde(default)]
        hard: bool,
        #[serde(default)]
        ignore_unresponsive_agent: bool,
    },
}

pub struct InstanceStateJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for InstanceStateJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let payload: StatePayload = serde_json::from_value(payload)
            .map_err(|e| TaskError::failed(40000, format!("Invalid task payload: {e}")))?;
        let deployment = match &payload {
            StatePayload::Converge { deployment, .. } | StatePayload::Action { deployment, .. } => {
                deployment.clone()
            }
        };
        ctx.lock(&LockSpec::deployment(&deployment)).await?;
        ctx.checkpoint().await?;
        let manifest = crate::deployments::deployment_fetch(ctx.db(), &deployment)
            .await?
            .ok_or_else(|| {
                TaskError::failed(
                    DEPLOYMENT_NOT_FOUND,
                    format!("Deployment '{deployment}' doesn't exist"),
                )
            })?
            .manifest;
        let policy = Policy::from_manifest(&manifest);
        match payload {
            StatePayload::Converge {
                deployment,
                group,
                index_or_id,
                state,
                skip_drain,
                fix,
                dry_run,
                canaries,
                max_in_flight,
            } => {
                let req = Converge {
                    deployment: deployment.clone(),
                    group,
                    index_or_id,
                    state,
                    skip_drain,
                    fix,
                    dry_run,
                    canaries: count_parse(canaries.as_deref(), "canaries")?,
                    max_in_flight: count_parse(max_in_flight.as_deref(), "max_in_flight")?,
                    policy,
                };
                task_events_wrap(
                    ctx,
                    "update",
                    "deployment",
                    Some(deployment.clone()),
                    Map::new(),
                    async { Ok((self.converge(ctx, &req).await?, None)) },
                )
                .await
            }
            StatePayload::Action {
                deployment,
                group,
                index_or_id,
                action,
                skip_drain,
                hard,
                ignore_unresponsive_agent,
            } => {
                let inst = repair::instance_select(
                    ctx.db(),
                    &deployment,
                    Some(&group),
                    Some(&index_or_id),
                )
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    TaskError::failed(
                        repair::INSTANCE_NOT_FOUND,
                        format!(
                            "Instance '{group}/{index_or_id}' doesn't exist in deployment '{deployment}'"
                        ),
                    )
                })?;
                let opts = ActionOptions {
                    skip_drain,
                    hard,
                    ignore_unresponsive_agent,
                    watch: policy.watch(&inst.record.group, false),
                };
                self.action(ctx, inst, action, opts).await
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The update policy of the stored manifest

/// Canaries, max_in_flight and watch times per group, from the stored manifest's `update`
/// blocks; a manifest that no longer parses gives BOSH's defaults (1, 1, 0-300000 ms).
#[derive(Debug, Default)]
struct Policy {
    groups: Vec<String>,
    updates: BTreeMap<String, UpdateConfig>,
    base: UpdateConfig,
}

impl Policy {
    fn from_manifest(text: &str) -> Policy {
        match Manifest::parse(text) {
            Ok(m) => Policy {
                groups: m.instance_groups.iter().map(|g| g.name.clone()).collect(),
                updates: m
                    .instance_groups
                    .iter()
                    .map(|g| {
                        let u = g
                            .update
                            .as_ref()
                            .map(|u| u.with_defaults(&m.update))
                            .unwrap_or_else(|| m.update.clone());
                        (g.name.clone(), u)
                    })
                    .collect(),
                base: m.update,
            },
            Err(e) => {
                tracing::warn!(error = %e, "stored manifest does not parse; default update policy");
                Policy::default()
            }
        }
    }

    fn update(&self, group: &str) -> &UpdateConfig {
        self.updates.get(group).unwrap_or(&self.base)
    }

    fn watch(&self, group: &str, canary: bool) -> (u64, u64) {
        let u = self.update(group);
        let w = if canary {
            u.canary_watch_time
        } else {
            u.update_watch_time
        };
        w.map(|w| (w.min_ms, w.max_ms)).unwrap_or(WATCH_DEFAULT)
    }

    /// The position of a group in the manifest (unknown groups last, by name).
    fn order(&self, group: &str) -> usize {
        self.groups
            .iter()
            .position(|g| g == group)
            .unwrap_or(usize::MAX)
    }
}

fn count_parse(v: Option<&str>, what: &str) -> Result<Option<Count>, TaskError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Count>()
                .map_err(|e| TaskError::failed(40000, format!("Invalid {what} '{s}': {e}")))
        })
        .transpose()
}

// ---------------------------------------------------------------------------------------------
// Converging changes

struct Converge {
    deployment: String,
    group: Option<String>,
    index_or_id: Option<String>,
    state: TargetState,
    skip_drain: bool,
    fix: bool,
    dry_run: bool,
    canaries: Option<Count>,
    max_in_flight: Option<Count>,
    policy: Policy,
}

/// What one instance needs to reach the target state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Stop the jobs, keep the VM.
    Stop,
    /// Stop and delete the VM (disk and IPs kept).
    Detach,
    /// Start the jobs on the VM it has.
    Start,
    /// A VM made from the stored spec, the last spec applied, the jobs started.
    CreateStarted,
    /// A VM made from the stored spec, the last spec applied, the jobs left stopped.
    CreateStopped,
    /// Stop and start on the same VM.
    Restart,
    /// A new VM for a started instance.
    Recreate,
}

fn step_for(inst: &Instance, target: TargetState) -> Option<Step> {
    let state = inst.record.state.as_str();
    let has_vm = inst.vm.is_some();
    match target {
        TargetState::Stopped => match (state, has_vm) {
            ("started", true) => Some(Step::Stop),
            (_, false) => Some(Step::CreateStopped),
            _ => None,
        },
        TargetState::Detached => match (state, has_vm) {
            (_, true) => Some(Step::Detach),
            ("detached", false) => None,
            (_, false) => Some(Step::Detach), // only the state changes
        },
        TargetState::Started => match (state, has_vm) {
            ("started", true) => None,
            (_, true) => Some(Step::Start),
            (_, false) => Some(Step::CreateStarted),
        },
        TargetState::Restart => match has_vm {
            true => Some(Step::Restart),
            false => Some(Step::CreateStarted),
        },
        TargetState::Recreate => Some(Step::Recreate),
    }
}

fn is_errand(inst: &Instance) -> bool {
    inst.record.spec.get("lifecycle").and_then(Value::as_str) == Some("errand")
}

impl InstanceStateJob {
    async fn converge(&self, ctx: &TaskContext, req: &Converge) -> Result<String, TaskError> {
        let db = ctx.db();
        let selected = repair::instance_select(
            db,
            &req.deployment,
            req.group.as_deref(),
            req.index_or_id.as_deref(),
        )
        .await?;
        if req.index_or_id.is_some()
            && let Some(i) = selected.iter().find(|i| i.record.ignored)
        {
            return Err(TaskError::failed(
                INSTANCE_IGNORED,
                format!(
                    "You are trying to change the state of the ignored instance '{}'. \
                     This operation is not allowed. You need to unignore it first.",
                    i.name()
                ),
            ));
        }
        // Ignored instances and errand instances (which have no VM on purpose) are left alone.
        let mut by_group: BTreeMap<(usize, String), Vec<(Instance, Step)>> = BTreeMap::new();
        for inst in selected {
            if inst.record.ignored || is_errand(&inst) {
                continue;
            }
            if let Some(step) = step_for(&inst, req.state) {
                by_group
                    .entry((
                        req.policy.order(&inst.record.group),
                        inst.record.group.clone(),
                    ))
                    .or_default()
                    .push((inst, step));
            }
        }
        for ((_, group), list) in &by_group {
            let names: Vec<String> = list
                .iter()
                .map(|(i, s)| format!("{} ({s:?})", i.display()))
                .collect();
            ctx.info(&format!("{group}: {}", names.join(", ")));
        }
        let result = format!("/deployments/{}", req.deployment);
        if req.dry_run {
            return Ok(result);
        }
        for ((_, group), list) in by_group {
            ctx.checkpoint().await?;
            let update = req.policy.update(&group);
            let size = list.len() as u32;
            let canaries = req
                .canaries
                .or(update.canaries)
                .map(|c| c.resolve(size))
                .unwrap_or(1)
                .min(size);
            let max_in_flight = req
                .max_in_flight
                .or(update.max_in_flight)
                .map(|c| c.resolve(size))
                .unwrap_or(1)
                .max(1);
            let stage = ctx
                .events()
                .stage("Updating instance", &[group.as_str()], Some(size));
            let (canary, rest) = list.split_at(canaries as usize);
            if !canary.is_empty() {
                self.batch_converge(ctx, req, &stage, canary, true).await?;
            }
            for batch in rest.chunks(max_in_flight as usize) {
                ctx.checkpoint().await?;
                self.batch_converge(ctx, req, &stage, batch, false).await?;
            }
        }
        Ok(result)
    }

    async fn batch_converge(
        &self,
        ctx: &TaskContext,
        req: &Converge,
        stage: &Stage,
        batch: &[(Instance, Step)],
        canary: bool,
    ) -> Result<(), TaskError> {
        let results = join_all(batch.iter().map(|(inst, step)| async move {
            let mut name = inst.display();
            if canary {
                name.push_str(" (canary)");
            }
            let t = stage.task(&name);
            let watch = req.policy.watch(&inst.record.group, canary);
            let outcome = instance_event_wrap(ctx, inst, req.state.action(), async {
                self.step_run(ctx, inst, *step, req, watch).await
            })
            .await;
            match &outcome {
                Ok(()) => t.finished(),
                Err(e) => t.failed(&e.to_string()),
            }
            outcome
        }))
        .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    async fn step_run(
        &self,
        ctx: &TaskContext,
        inst: &Instance,
        step: Step,
        req: &Converge,
        watch: (u64, u64),
    ) -> Result<(), TaskError> {
        let db = ctx.db();
        let s = &self.services;
        let id = inst.record.id;
        match step {
            Step::Stop => {
                instance_jobs_stop(s, inst, req.skip_drain, req.fix).await?;
                repair::instance_state_save(db, id, "stopped").await?;
            }
            Step::Detach => {
                repair::vm_remove(ctx, s, inst, req.skip_drain).await?;
                repair::instance_state_save(db, id, "detached").await?;
            }
            Step::Start => {
                let agent = inst.agent().unwrap_or_default();
                repair::instance_state_save(db, id, "started").await?;
                repair::jobs_start(ctx, s, &agent, &inst.name(), watch).await?;
            }
            Step::CreateStarted | Step::CreateStopped => {
                let state = if step == Step::CreateStarted {
                    "started"
                } else {
                    "stopped"
                };
                let mut target = inst.clone();
                target.record.state = state.to_owned();
                repair::instance_state_save(db, id, state).await?;
                let opts = RecreateOptions {
                    skip_drain: req.skip_drain,
                    wait: true,
                    watch,
                };
                repair::vm_recreate(ctx, s, &target, opts).await?;
            }
            Step::Restart => {
                let agent = inst.agent().unwrap_or_default();
                if inst.record.state == "started" {
                    instance_jobs_stop(s, inst, req.skip_drain, req.fix).await?;
                }
                repair::instance_state_save(db, id, "started").await?;
                repair::jobs_start(ctx, s, &agent, &inst.name(), watch).await?;
            }
            Step::Recreate => {
                // As Ruby: a recreated instance runs its jobs afterwards.
                let mut target = inst.clone();
                target.record.state = "started".to_owned();
                repair::instance_state_save(db, id, "started").await?;
                let opts = RecreateOptions {
                    skip_drain: req.skip_drain,
                    wait: true,
                    watch,
                };
                repair::vm_recreate(ctx, s, &target, opts).await?;
            }
        }
        Ok(())
    }
}

/// pre-stop → drain → stop → post-stop, keeping the VM. An unresponsive agent fails the
/// instance unless `tolerate_unresponsive` (`--fix`, `--ignore-unresponsive-agent`).
async fn instance_jobs_stop(
    services: &Services,
    inst: &Instance,
    skip_drain: bool,
    tolerate_unresponsive: bool,
) -> Result<(), TaskError> {
    let Some(agent) = inst.agent() else {
        return Ok(());
    };
    if tolerate_unresponsive && !repair::agent_responsive(services, &agent).await {
        tracing::warn!(instance = %inst.name(), "agent unresponsive; not stopping its jobs");
        return Ok(());
    }
    let drain = (!skip_drain).then_some(DrainType::Shutdown);
    let next = NextState {
        vm_goes: false,
        instance_goes: false,
        deployment_goes: false,
    };
    repair::jobs_stop(services, &agent, &inst.name(), None, drain, next).await
}

/// An instance event pair (begin, then end with the error), as Ruby's `add_event`.
async fn instance_event_wrap<F>(
    ctx: &TaskContext,
    inst: &Instance,
    action: &str,
    run: F,
) -> Result<(), TaskError>
where
    F: std::future::Future<Output = Result<(), TaskError>>,
{
    let base = NewEvent {
        user: ctx.user.clone(),
        action: action.to_owned(),
        object_type: "instance".to_owned(),
        object_name: Some(inst.name()),
        task: Some(ctx.id.to_string()),
        deployment: Some(inst.deployment.clone()),
        instance: Some(inst.name()),
        ..NewEvent::default()
    };
    let parent = event_create(ctx.db(), &base).await?;
    let outcome = run.await;
    let end = NewEvent {
        parent_id: Some(parent),
        error: outcome.as_ref().err().map(ToString::to_string),
        ..base
    };
    event_create(ctx.db(), &end).await?;
    outcome
}

// ---------------------------------------------------------------------------------------------
// Non-converging actions (`--no-converge`), as Ruby's `UpdateInstance` job

#[derive(Debug, Clone, Copy)]
struct ActionOptions {
    skip_drain: bool,
    hard: bool,
    ignore_unresponsive_agent: bool,
    watch: (u64, u64),
}

impl InstanceStateJob {
    async fn action(
        &self,
        ctx: &TaskContext,
        mut inst: Instance,
        action: Action,
        opts: ActionOptions,
    ) -> Result<String, TaskError> {
        if is_errand(&inst) {
            return Err(TaskError::failed(
                INVALID_LIFECYCLE,
                format!(
                    "Isolated {} can not be run on instances of type errand. \
                     Try the bosh run-errand command.",
                    action.as_str()
                ),
            ));
        }
        if inst.record.ignored {
            return Err(TaskError::failed(
                IGNORED_MODIFICATION,
                format!(
                    "You are trying to change the state of the ignored instance '{}'.\
                     This operation is not allowed. You need to unignore it first.",
                    inst.name()
                ),
            ));
        }
        let stage = ctx
            .events()
            .stage(&format!("Updating instance {}", inst.display()), &[], None);
        match action {
            Action::Stop => {
                self.isolated_stop(ctx, &stage, &mut inst, opts).await?;
            }
            Action::Start => {
                self.isolated_start(ctx, &stage, &mut inst, opts).await?;
            }
            Action::Restart | Action::Recreate => {
                // Ruby: recreate is a restart with `hard`, under its own event.
                let mut opts = opts;
                opts.hard = action == Action::Recreate;
                let label = action.as_str();
                let inst_ref = inst.clone();
                instance_event_wrap(ctx, &inst_ref, label, async {
                    self.isolated_stop(ctx, &stage, &mut inst, opts).await?;
                    self.isolated_start(ctx, &stage, &mut inst, opts).await
                })
                .await?;
            }
        }
        Ok(inst.name())
    }

    async fn isolated_stop(
        &self,
        ctx: &TaskContext,
        stage: &Stage,
        inst: &mut Instance,
        opts: ActionOptions,
    ) -> Result<(), TaskError> {
        let state = inst.record.state.clone();
        if (state == "stopped" && !opts.hard) || state == "detached" {
            return Ok(());
        }
        let s = &self.services;
        let db = ctx.db();
        let unresponsive = match inst.agent() {
            Some(agent) => !repair::agent_responsive(s, &agent).await,
            None => true,
        };
        if unresponsive && inst.vm.is_some() && !opts.ignore_unresponsive_agent {
            return Err(TaskError::failed(
                450002,
                format!(
                    "{}: Timed out sending 'get_state' to instance '{}'",
                    inst.name(),
                    inst.agent().unwrap_or_default()
                ),
            ));
        }
        ctx.checkpoint().await?;
        if state == "started" {
            tracked(stage, "Stopping instance", async {
                instance_event_wrap(ctx, inst, "stop", async {
                    if !unresponsive {
                        instance_jobs_stop(s, inst, opts.skip_drain, false).await?;
                    }
                    repair::instance_state_save(db, inst.record.id, "stopped").await?;
                    Ok(())
                })
                .await
            })
            .await?;
            inst.record.state = "stopped".to_owned();
        }
        if opts.hard {
            ctx.checkpoint().await?;
            tracked(stage, "Deleting VM", async {
                // The jobs are stopped already: nothing to drain.
                repair::vm_remove(ctx, s, inst, true).await?;
                repair::instance_state_save(db, inst.record.id, "detached").await?;
                Ok(())
            })
            .await?;
            inst.vm = None;
            inst.record.state = "detached".to_owned();
        }
        Ok(())
    }

    async fn isolated_start(
        &self,
        ctx: &TaskContext,
        stage: &Stage,
        inst: &mut Instance,
        opts: ActionOptions,
    ) -> Result<(), TaskError> {
        let s = &self.services;
        let db = ctx.db();
        if inst.vm.is_none() {
            ctx.checkpoint().await?;
            // The VM gets the last applied spec; the jobs start in the next step.
            let mut target = inst.clone();
            target.record.state = "stopped".to_owned();
            let ropts = RecreateOptions {
                skip_drain: true,
                wait: true,
                watch: opts.watch,
            };
            let vm = tracked(stage, "Creating VM", async {
                repair::vm_recreate(ctx, s, &target, ropts).await
            })
            .await?;
            inst.vm = Some(vm);
            if inst.record.state == "detached" {
                inst.record.state = "stopped".to_owned();
            }
            // Jobs of a started instance on the new VM still have to start.
            if inst.record.state == "started" {
                inst.record.state = "stopped".to_owned();
            }
        }
        if inst.record.state == "started" {
            return Ok(());
        }
        ctx.checkpoint().await?;
        let agent = inst.agent().unwrap_or_default();
        tracked(stage, "Starting instance", async {
            instance_event_wrap(ctx, inst, "start", async {
                repair::instance_state_save(db, inst.record.id, "started").await?;
                repair::jobs_start(ctx, s, &agent, &inst.name(), opts.watch).await
            })
            .await
        })
        .await?;
        inst.record.state = "started".to_owned();
        Ok(())
    }
}

/// A stage task around `run`: finished, or failed with the error.
async fn tracked<T, F>(stage: &Stage, name: &str, run: F) -> Result<T, TaskError>
where
    F: std::future::Future<Output = Result<T, TaskError>>,
{
    let t = stage.task(name);
    match run.await {
        Ok(v) => {
            t.finished();
            Ok(v)
        }
        Err(e) => {
            t.failed(&e.to_string());
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// delete-vm

/// `delete_vm`: payload `{"cid": "…"}`. An instance's VM is stopped (when its agent answers),
/// its disks detached and the VM deleted with its row and NATS user; the instance keeps its
/// disk, IPs and state, so `start`, cloud check or the next deploy bring a VM back. A cid the
/// director does not know is still deleted through the CPI, as Ruby does.
pub struct DeleteVmJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for DeleteVmJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let cid = payload["cid"]
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| TaskError::failed(40001, "delete_vm needs a cid"))?
            .to_owned();
        let row: Option<(i64, String, Option<i64>, String)> = sqlx::query_as(
            "SELECT id, agent_id, instance_id, deployment FROM vms WHERE cid = $1 ORDER BY id",
        )
        .bind(&cid)
        .fetch_optional(ctx.db().pool())
        .await
        .map_err(crate::db::DbError::from)?;
        let (deployment, instance) = match &row {
            Some((_, _, Some(instance_id), dep)) => {
                let inst = repair::instance_list(ctx.db(), dep)
                    .await?
                    .into_iter()
                    .find(|i| i.record.id == *instance_id);
                (Some(dep.clone()), inst)
            }
            Some((_, _, None, dep)) => (Some(dep.clone()), None),
            None => (None, None),
        };
        if let Some(dep) = &deployment {
            ctx.lock(&LockSpec::deployment(dep)).await?;
        }
        ctx.checkpoint().await?;
        let stage = ctx.events().stage("Delete VM", &[], Some(1));
        let base = NewEvent {
            user: ctx.user.clone(),
            action: "delete".to_owned(),
            object_type: "vm".to_owned(),
            object_name: Some(cid.clone()),
            task: Some(ctx.id.to_string()),
            deployment: deployment.clone(),
            instance: instance.as_ref().map(Instance::name),
            ..NewEvent::default()
        };
        let parent = event_create(ctx.db(), &base).await?;
        let outcome = tracked(&stage, &cid, async {
            self.vm_delete(ctx, &cid, row.as_ref(), instance.as_ref())
                .await
        })
        .await;
        let end = NewEvent {
            parent_id: Some(parent),
            error: outcome.as_ref().err().map(ToString::to_string),
            ..base
        };
        event_create(ctx.db(), &end).await?;
        outcome?;
        Ok(format!("vm {cid} deleted"))
    }
}

impl DeleteVmJob {
    async fn vm_delete(
        &self,
        ctx: &TaskContext,
        cid: &str,
        row: Option<&(i64, String, Option<i64>, String)>,
        instance: Option<&Instance>,
    ) -> Result<(), TaskError> {
        let s = &self.services;
        let vm_cid = VmCid::new(cid.to_owned())
            .map_err(|e| TaskError::failed(40000, format!("Invalid VM cid '{cid}': {e}")))?;
        // The instance's active VM: stop, detach, delete; the instance keeps the rest.
        if let Some(inst) = instance.filter(|i| i.vm.as_ref().is_some_and(|v| v.cid == vm_cid)) {
            return repair::vm_remove(ctx, s, inst, false).await;
        }
        if let Some((id, agent, _, _)) = row {
            let vm = Vm {
                id: *id,
                cid: vm_cid,
                agent_id: agent.parse().map_err(|_| {
                    TaskError::failed(100, format!("VM '{cid}' has an invalid agent id"))
                })?,
            };
            return vms::vm_delete(ctx.db(), s, &vm).await.map_err(|e| {
                TaskError::failed(
                    repair::AGENT_FAILED,
                    format!("Deleting VM '{cid}': {}", error_chain(&e)),
                )
            });
        }
        match s.task_cpi(ctx)?.delete_vm(&vm_cid).await {
            Ok(()) => Ok(()),
            Err(e) if e.is(CpiErrorKind::VmNotFound) => {
                ctx.events()
                    .warning(&format!("VM {cid} does not exist. Deletion is skipped"));
                Ok(())
            }
            Err(e) => Err(TaskError::failed(
                100,
                format!("Deleting VM '{cid}': {}", error_chain(&e)),
            )),
        }
    }
}

/// `PUT …/ignore`: sets `instances.ignored`; false when no such instance exists.
pub async fn instance_ignore_set(
    db: &crate::db::Db,
    deployment: &str,
    group: &str,
    index_or_id: &str,
    ignore: bool,
) -> Result<bool, crate::db::DbError> {
    let Some(inst) = repair::instance_fetch(db, deployment, group, index_or_id).await? else {
        return Ok(false);
    };
    sqlx::query("UPDATE instances SET ignored = $1 WHERE id = $2")
        .bind(i64::from(ignore))
        .bind(inst.record.id)
        .execute(db.pool())
        .await?;
    Ok(true)
}

/// The JSON payload for a converging change (used by the API).
#[allow(clippy::too_many_arguments)]
pub fn converge_payload(
    deployment: &str,
    group: Option<&str>,
    index_or_id: Option<&str>,
    state: TargetState,
    skip_drain: bool,
    fix: bool,
    dry_run: bool,
    canaries: Option<String>,
    max_in_flight: Option<String>,
) -> Value {
    json!(StatePayload::Converge {
        deployment: deployment.to_owned(),
        group: group.map(str::to_owned),
        index_or_id: index_or_id.map(str::to_owned),
        state,
        skip_drain,
        fix,
        dry_run,
        canaries,
        max_in_flight,
    })
}
