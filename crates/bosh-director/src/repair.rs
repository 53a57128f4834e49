//! Acting on one instance from what it last ran with, without a new plan: the primitives the
//! resurrector, cloud check and instance operations (`start`, `stop`, `restart`, `recreate`,
//! `delete-vm`) share, and the deploy's updater uses for disks and the running wait.
//!
//! An instance remembers how its VM is made (`instances.vm_spec`, see
//! [`crate::vms::StoredVmSpec`]) and what was applied to it (`instances.spec_json`), so a lost
//! or replaced VM comes back with the same stemcell, cloud properties, networks (and IPs),
//! persistent disk and jobs: it converges to the last successful deploy.

use bosh_agent_client::DrainType;
use bosh_types::ids::{AgentId, DiskCid, VmCid};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::db::{Db, DbError};
use crate::error::error_chain;
use crate::instance_listing::{InstanceRecord, instance_records_list};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError};
use crate::vms::{self, StoredVmSpec, Vm, VmSpec};

/// Ruby's RPC failure code, as the updater uses.
pub const AGENT_FAILED: u32 = 450001;
/// Ruby's `AgentJobNotRunning`.
pub const NOT_RUNNING: u32 = 400007;
/// Ruby's `InstanceNotFound`.
pub const INSTANCE_NOT_FOUND: u32 = 70001;
/// How long a new VM's agent may take to answer (the Ruby default).
pub const AGENT_WAIT: Duration = Duration::from_secs(600);
/// How long a ping may take before an agent counts as unresponsive.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The running wait when the manifest's watch times are not at hand (BOSH's defaults).
pub const WATCH_DEFAULT: (u64, u64) = (0, 300_000);

pub fn agent_failed(what: &str, e: &(dyn std::error::Error + 'static)) -> TaskError {
    TaskError::failed(AGENT_FAILED, format!("{what}: {}", error_chain(e)))
}

/// An instance with its current VM and active persistent disk.
#[derive(Debug, Clone)]
pub struct Instance {
    pub deployment: String,
    pub record: InstanceRecord,
    /// The active VM (a row with a cid), if any.
    pub vm: Option<Vm>,
    /// The active persistent disk, if any.
    pub disk: Option<DiskCid>,
    /// Inactive persistent disks (a migration that did not finish).
    pub inactive_disks: Vec<DiskCid>,
}

impl Instance {
    /// `group/uuid`
    pub fn name(&self) -> String {
        self.record.name()
    }

    /// `group/uuid (index)`
    pub fn display(&self) -> String {
        self.record.display()
    }

    pub fn agent(&self) -> Option<String> {
        self.vm.as_ref().map(|v| v.agent_id.to_string())
    }

    /// Whether the user's `index_or_id` (as typed after `group/`) names this instance: its
    /// uuid or its index. Every `group/index|uuid` selector resolves through this.
    pub fn is_named(&self, index_or_id: &str) -> bool {
        self.record.uuid == index_or_id || self.record.index.to_string() == index_or_id
    }
}

/// Every instance of a deployment with its VM and disks, by group and index.
pub async fn instance_list(db: &Db, deployment: &str) -> Result<Vec<Instance>, DbError> {
    let records = instance_records_list(db, deployment).await?;
    let vms: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT instance_id, id, cid, agent_id FROM vms \
         WHERE deployment = $1 AND instance_id IS NOT NULL AND cid IS NOT NULL AND active = 1 \
         ORDER BY id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    let disks: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT d.instance_id, d.cid, d.active FROM persistent_disks d \
         JOIN instances i ON i.id = d.instance_id WHERE i.deployment = $1 ORDER BY d.id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    Ok(records
        .into_iter()
        .map(|record| {
            let vm = vms
                .iter()
                .rev()
                .find(|v| v.0 == record.id)
                .and_then(|(_, id, cid, agent)| {
                    Some(Vm {
                        id: *id,
                        cid: VmCid::new(cid.clone()).ok()?,
                        agent_id: agent.parse::<AgentId>().ok()?,
                    })
                });
            let mine = disks.iter().filter(|d| d.0 == record.id);
            let disk = mine
                .clone()
                .filter(|d| d.2 != 0)
                .filter_map(|d| DiskCid::new(d.1.clone()).ok())
                .next_back();
            let inactive_disks = mine
                .filter(|d| d.2 == 0)
                .filter_map(|d| DiskCid::new(d.1.clone()).ok())
                .collect();
            Instance {
                deployment: deployment.to_owned(),
                record,
                vm,
                disk,
                inactive_disks,
            }
        })
        .collect())
}

/// One instance by group and index or uuid (as the user typed it).
pub async fn instance_fetch(
    db: &Db,
    deployment: &str,
    group: &str,
    index_or_id: &str,
) -> Result<Option<Instance>, DbError> {
    Ok(instance_list(db, deployment)
        .await?
        .into_iter()
        .find(|i| i.record.group == group && i.is_named(index_or_id)))
}

/// The instances a `group[/index_or_id]` selector names (`None` group: all of them); fails
/// with Ruby's code when a named instance does not exist.
pub async fn instance_select(
    db: &Db,
    deployment: &str,
    group: Option<&str>,
    index_or_id: Option<&str>,
) -> Result<Vec<Instance>, TaskError> {
    let all = instance_list(db, deployment).await?;
    let picked: Vec<Instance> = all
        .into_iter()
        .filter(|i| group.is_none_or(|g| i.record.group == g))
        .filter(|i| index_or_id.is_none_or(|x| i.is_named(x)))
        .collect();
    if picked.is_empty() && group.is_some() {
        let what = match index_or_id {
            Some(x) => format!("{}/{x}", group.unwrap_or_default()),
            None => group.unwrap_or_default().to_owned(),
        };
        return Err(TaskError::failed(
            INSTANCE_NOT_FOUND,
            format!("Instance '{what}' doesn't exist in deployment '{deployment}'"),
        ));
    }
    Ok(picked)
}

/// Whether the agent answers a ping within [`PING_TIMEOUT`].
pub async fn agent_responsive(services: &Services, agent: &str) -> bool {
    agent_responsive_within(services, agent, PING_TIMEOUT).await
}

/// Whether the agent answers a ping within `wait`.
pub async fn agent_responsive_within(services: &Services, agent: &str, wait: Duration) -> bool {
    let Ok(agents) = services.agents() else {
        return false;
    };
    matches!(
        tokio::time::timeout(wait, agents.client().ping(agent)).await,
        Ok(Ok(()))
    )
}

/// `instances.state`: started | stopped | detached.
pub async fn instance_state_save(db: &Db, instance: i64, state: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE instances SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(instance)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// What the next state of the VM, instance and deployment will be, for the stop scripts.
#[derive(Debug, Clone, Copy)]
pub struct NextState {
    pub vm_goes: bool,
    pub instance_goes: bool,
    pub deployment_goes: bool,
}

/// pre-stop → drain → stop → post-stop on a running agent.
pub async fn jobs_stop(
    services: &Services,
    agent: &str,
    name: &str,
    next_spec: Option<&Value>,
    drain: Option<DrainType>,
    next: NextState,
) -> Result<(), TaskError> {
    let client = services.agents()?.client();
    client
        .get_state(agent, false)
        .await
        .map_err(|e| agent_failed(&format!("Getting the state of '{name}'"), &e))?;
    let keep = |b: bool| if b { "delete" } else { "keep" }.to_owned();
    let env = BTreeMap::from([
        ("BOSH_VM_NEXT_STATE".to_owned(), keep(next.vm_goes)),
        (
            "BOSH_INSTANCE_NEXT_STATE".to_owned(),
            keep(next.instance_goes),
        ),
        (
            "BOSH_DEPLOYMENT_NEXT_STATE".to_owned(),
            keep(next.deployment_goes),
        ),
    ]);
    client
        .run_script(agent, "pre-stop", &env)
        .await
        .map_err(|e| agent_failed(&format!("pre-stop of '{name}'"), &e))?;
    if let Some(kind) = drain {
        client
            .drain(agent, kind, next_spec)
            .await
            .map_err(|e| agent_failed(&format!("Draining '{name}'"), &e))?;
    }
    client
        .stop(agent)
        .await
        .map_err(|e| agent_failed(&format!("Stopping '{name}'"), &e))?;
    client
        .run_script(agent, "post-stop", &BTreeMap::new())
        .await
        .map_err(|e| agent_failed(&format!("post-stop of '{name}'"), &e))?;
    Ok(())
}

/// pre-start → start → running wait → post-start.
pub async fn jobs_start(
    ctx: &TaskContext,
    services: &Services,
    agent: &str,
    name: &str,
    watch: (u64, u64),
) -> Result<(), TaskError> {
    let client = services.agents()?.client();
    let none = BTreeMap::new();
    client
        .run_script(agent, "pre-start", &none)
        .await
        .map_err(|e| agent_failed(&format!("pre-start of '{name}'"), &e))?;
    client
        .start(agent)
        .await
        .map_err(|e| agent_failed(&format!("Starting '{name}'"), &e))?;
    running_wait(ctx, services, agent, name, watch).await?;
    client
        .run_script(agent, "post-start", &none)
        .await
        .map_err(|e| agent_failed(&format!("post-start of '{name}'"), &e))?;
    Ok(())
}

/// Waits until every process runs. As the Ruby director, the first `get_state` comes after
/// the min watch time (a job must still run then to pass) and the instance fails when it is
/// not running at the max. Between the two the Ruby director polls every
/// `clamp((max-min)/9, 1 s, 15 s)`; we poll from 50 ms doubling up to that step, so an
/// instance that runs is seen within milliseconds, with the same pass/fail decisions.
pub async fn running_wait(
    ctx: &TaskContext,
    services: &Services,
    agent: &str,
    name: &str,
    (min, max): (u64, u64),
) -> Result<(), TaskError> {
    let client = services.agents()?.client();
    let max = max.max(min);
    let step = Duration::from_millis(((max - min) / 9).clamp(1000, 15000));
    let start = tokio::time::Instant::now();
    let deadline = start + Duration::from_millis(max);
    tokio::time::sleep(Duration::from_millis(min)).await;
    let mut wait = Duration::from_millis(50);
    loop {
        let state = client
            .get_state(agent, false)
            .await
            .map_err(|e| agent_failed(&format!("Getting the state of '{name}'"), &e))?;
        let running = serde_json::to_value(state.job_state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if running == "running" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let failing: Vec<String> = state
                .processes
                .iter()
                .filter_map(|p| {
                    let s = serde_json::to_value(p.state).ok()?;
                    (s.as_str() != Some("running")).then(|| p.name.clone())
                })
                .collect();
            return Err(TaskError::failed(
                NOT_RUNNING,
                format!(
                    "'{name}' is not running after update. Review logs for failed jobs: {}",
                    failing.join(", ")
                ),
            ));
        }
        ctx.checkpoint().await?;
        let now = tokio::time::Instant::now();
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(now))).await;
        wait = (wait * 2).min(step);
    }
}

/// CPI `attach_disk`, then the agent's `add_persistent_disk` (older agents lack it) and
/// `mount_disk` (at `store`, or the migration target when `store` holds another disk).
pub async fn disk_attach(
    services: &Services,
    vm: &Vm,
    agent: &str,
    cid: &DiskCid,
) -> Result<(), TaskError> {
    let cpi = services.cpi()?;
    let client = services.agents()?.client();
    let hint = cpi.attach_disk(&vm.cid, cid).await.map_err(|e| {
        TaskError::failed(
            AGENT_FAILED,
            format!(
                "Attaching disk '{cid}' to VM '{}': {}",
                vm.cid,
                error_chain(&e)
            ),
        )
    })?;
    let hint = serde_json::to_value(&hint).unwrap_or(Value::Null);
    // As the Ruby director's MountDiskStep: a CPI may restart the VM to attach (the docker
    // CPI recreates the container), so the agent must answer again first.
    client
        .ping_until_ready(agent, AGENT_WAIT)
        .await
        .map_err(|e| agent_failed(&format!("Agent after attaching disk '{cid}'"), &e))?;
    match client
        .call(
            agent,
            "add_persistent_disk",
            vec![json!(cid.as_str()), hint],
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_unknown_message() => {}
        Err(e) => return Err(agent_failed("add_persistent_disk", &e)),
    }
    client
        .call(agent, "mount_disk", vec![json!(cid.as_str())])
        .await
        .map_err(|e| agent_failed(&format!("Mounting disk '{cid}'"), &e))?;
    Ok(())
}

/// Unmounts (when the agent lists it as mounted) and detaches a disk; best effort, a disk the
/// CPI no longer sees attached is what we want anyway. `agent` is `None` when the agent is
/// known to be gone.
pub async fn disk_unmount_detach(services: &Services, vm: &Vm, agent: Option<&str>, cid: &DiskCid) {
    if let (Ok(agents), Some(agent)) = (services.agents(), agent) {
        let client = agents.client();
        let mounted = client
            .call(agent, "list_disk", Vec::new())
            .await
            .ok()
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
            .is_some_and(|l| l.iter().any(|c| c == cid.as_str()));
        if mounted {
            let _ = client
                .call(agent, "unmount_disk", vec![json!(cid.as_str())])
                .await;
        }
    }
    if let Ok(cpi) = services.cpi() {
        let _ = cpi.detach_disk(&vm.cid, cid).await;
    }
}

/// Options of [`vm_recreate`].
#[derive(Debug, Clone, Copy)]
pub struct RecreateOptions {
    /// Skip drain on the old VM.
    pub skip_drain: bool,
    /// Wait until the jobs run (`recreate_vm_without_wait` does not).
    pub wait: bool,
    pub watch: (u64, u64),
}

impl Default for RecreateOptions {
    fn default() -> Self {
        RecreateOptions {
            skip_drain: false,
            wait: true,
            watch: WATCH_DEFAULT,
        }
    }
}

/// Stops the jobs when the agent answers, detaches the persistent disk and deletes the VM
/// (a VM the CPI no longer knows counts as deleted). The instance keeps its disk and IPs.
pub async fn vm_remove(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
    skip_drain: bool,
) -> Result<(), TaskError> {
    let Some(vm) = &inst.vm else {
        return Ok(());
    };
    let name = inst.name();
    let agent = vm.agent_id.to_string();
    let alive = agent_responsive(services, &agent).await;
    if alive {
        let drain = (!skip_drain).then_some(DrainType::Shutdown);
        let next = NextState {
            vm_goes: true,
            instance_goes: false,
            deployment_goes: false,
        };
        jobs_stop(services, &agent, &name, None, drain, next).await?;
    }
    for cid in inst.disk.iter().chain(&inst.inactive_disks) {
        disk_unmount_detach(services, vm, alive.then_some(agent.as_str()), cid).await;
    }
    vms::vm_delete(ctx.db(), services, vm).await.map_err(|e| {
        TaskError::failed(
            AGENT_FAILED,
            format!("Deleting VM '{}' of '{name}': {}", vm.cid, error_chain(&e)),
        )
    })?;
    Ok(())
}

/// Replaces (or, for an instance without one, creates) the instance's VM as it was made, with
/// its persistent disk mounted and its last applied spec applied; the jobs start when the
/// instance's state is `started`. Returns the new VM.
pub async fn vm_recreate(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
    opts: RecreateOptions,
) -> Result<Vm, TaskError> {
    let db = ctx.db();
    let name = inst.name();
    let stored: StoredVmSpec = vms::instance_vm_spec_fetch(db, inst.record.id)
        .await?
        .ok_or_else(|| {
            TaskError::failed(
                AGENT_FAILED,
                format!("'{name}' has never had a VM; deploy it first"),
            )
        })?;
    vm_remove(ctx, services, inst, opts.skip_drain).await?;
    let spec = VmSpec::from_stored(
        stored,
        &inst.deployment,
        inst.record.id,
        Some(ctx.id.0),
        AGENT_WAIT,
    );
    let vm = vms::vm_create(db, services, spec).await.map_err(|e| {
        TaskError::failed(
            AGENT_FAILED,
            format!("Creating VM for '{name}': {}", error_chain(&e)),
        )
    })?;
    // The instance's addresses now belong to the new VM.
    sqlx::query("UPDATE ip_addresses SET vm_id = $1 WHERE instance_id = $2")
        .bind(vm.id)
        .bind(inst.record.id)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
    vm_converge(ctx, services, inst, &vm, opts).await?;
    Ok(vm)
}

/// On a new VM: mount the disk, apply the last spec, start when the instance is started.
async fn vm_converge(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
    vm: &Vm,
    opts: RecreateOptions,
) -> Result<(), TaskError> {
    let name = inst.name();
    let agent = vm.agent_id.to_string();
    if let Some(cid) = &inst.disk {
        disk_attach(services, vm, &agent, cid).await?;
    }
    if inst.record.spec.is_null() {
        return Ok(()); // never applied: nothing to converge to
    }
    let client = services.agents()?.client();
    client
        .apply(&agent, &inst.record.spec)
        .await
        .map_err(|e| agent_failed(&format!("Applying to '{name}'"), &e))?;
    if inst.record.state != "started" {
        return Ok(());
    }
    if opts.wait {
        jobs_start(ctx, services, &agent, &name, opts.watch).await
    } else {
        let none = BTreeMap::new();
        client
            .run_script(&agent, "pre-start", &none)
            .await
            .map_err(|e| agent_failed(&format!("pre-start of '{name}'"), &e))?;
        client
            .start(&agent)
            .await
            .map_err(|e| agent_failed(&format!("Starting '{name}'"), &e))?;
        Ok(())
    }
}
