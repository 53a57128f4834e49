//! Applying one resolution to one problem, with the repair primitives of [`crate::repair`].

use bosh_types::ids::DiskCid;
use serde_json::json;
use std::collections::BTreeMap;

use super::problems::{ProblemRecord, ProblemType, Resolution};
use crate::error::error_chain;
use crate::repair::{self, Instance, RecreateOptions};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError};

/// How a resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The problem cannot or need not be fixed this way (Ruby's `ProblemHandlerError`): it is
    /// reported, and the problem still counts as resolved.
    #[error("{0}")]
    Handler(String),
    /// The repair itself failed; the problem stays open.
    #[error("{0}")]
    Failed(#[from] TaskError),
}

fn handler(msg: impl Into<String>) -> ResolveError {
    ResolveError::Handler(msg.into())
}

/// The instance a problem is about, as it is now.
pub async fn problem_instance(
    ctx: &TaskContext,
    problem: &ProblemRecord,
) -> Result<Instance, ResolveError> {
    let id = problem
        .instance_id
        .ok_or_else(|| handler(format!("Problem '{}' names no instance", problem.id)))?;
    repair::instance_list(ctx.db(), &problem.deployment)
        .await
        .map_err(TaskError::from)?
        .into_iter()
        .find(|i| i.record.id == id)
        .ok_or_else(|| handler(format!("Instance '{id}' is no longer in the database")))
}

/// Applies `resolution` to `problem` (of type `kind`); `validate`: check first that an
/// unresponsive agent still does not answer.
pub async fn resolution_apply(
    ctx: &TaskContext,
    services: &Services,
    problem: &ProblemRecord,
    kind: ProblemType,
    resolution: Resolution,
    validate: bool,
) -> Result<(), ResolveError> {
    if resolution == Resolution::Ignore {
        return Ok(());
    }
    let inst = problem_instance(ctx, problem).await?;
    if validate && kind == ProblemType::UnresponsiveAgent {
        // As Ruby's `validate`: an agent that answers again needs no repair.
        let agent = inst
            .agent()
            .ok_or_else(|| handler("VM is no longer in the database"))?;
        if repair::agent_responsive(services, &agent).await {
            return Err(handler("Agent is responding now, skipping resolution"));
        }
    }
    let disk = || DiskCid::new(problem.resource_id.clone()).map_err(|e| handler(e.to_string()));
    match resolution {
        Resolution::Ignore => Ok(()),
        Resolution::RecreateVm | Resolution::RecreateVmWithoutWait => {
            vm_recreate_lost(ctx, services, inst, resolution == Resolution::RecreateVm).await
        }
        Resolution::RebootVm => vm_reboot(ctx, services, &inst).await,
        Resolution::DeleteVm => {
            repair::vm_remove(ctx, services, &inst, true).await?;
            Ok(())
        }
        Resolution::DeleteVmReference => vm_reference_delete(ctx, services, &inst).await,
        Resolution::DeleteDiskReference => {
            disk_reference_delete(ctx, services, &inst, &disk()?).await
        }
        Resolution::DeleteDisk => disk_inactive_delete(ctx, services, &inst, &disk()?).await,
        Resolution::ActivateDisk => disk_activate(ctx, services, &inst, &disk()?).await,
        Resolution::ReattachDisk | Resolution::ReattachDiskAndReboot => {
            let cid = disk()?;
            let vm = inst.vm.as_ref().ok_or_else(|| {
                handler(format!("Can't find corresponding vm-cid for disk '{cid}'"))
            })?;
            let agent = vm.agent_id.to_string();
            repair::disk_attach(services, vm, &agent, &cid).await?;
            if resolution == Resolution::ReattachDiskAndReboot {
                vm_reboot(ctx, services, &inst).await?;
            }
            Ok(())
        }
    }
}

/// Replaces a VM that is gone or whose agent does not answer: its remains are deleted without
/// talking to the agent (no ping to time out), then the VM is made again as it was.
async fn vm_recreate_lost(
    ctx: &TaskContext,
    services: &Services,
    mut inst: Instance,
    wait: bool,
) -> Result<(), ResolveError> {
    if let Some(vm) = inst.vm.take() {
        for cid in inst.disk.iter().chain(&inst.inactive_disks) {
            repair::disk_unmount_detach(services, &vm, None, cid).await;
        }
        crate::vms::vm_delete(ctx.db(), services, &vm)
            .await
            .map_err(|e| {
                TaskError::failed(
                    repair::AGENT_FAILED,
                    format!(
                        "Deleting VM '{}' of '{}': {}",
                        vm.cid,
                        inst.name(),
                        error_chain(&e)
                    ),
                )
            })?;
    }
    let opts = RecreateOptions {
        skip_drain: true,
        wait,
        ..RecreateOptions::default()
    };
    repair::vm_recreate(ctx, services, &inst, opts).await?;
    Ok(())
}

/// CPI `reboot_vm`, then the agent must answer again and (for a started instance) run its
/// jobs.
async fn vm_reboot(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
) -> Result<(), ResolveError> {
    let vm = inst
        .vm
        .as_ref()
        .ok_or_else(|| handler("VM is no longer in the database"))?;
    let cpi = services.task_cpi(ctx)?;
    cpi.reboot_vm(&vm.cid).await.map_err(|e| {
        TaskError::failed(
            repair::AGENT_FAILED,
            format!("Rebooting VM '{}': {}", vm.cid, error_chain(&e)),
        )
    })?;
    let agent = vm.agent_id.to_string();
    let client = services.agents()?.client();
    client
        .ping_until_ready(&agent, repair::AGENT_WAIT)
        .await
        .map_err(|_| handler("Agent still unresponsive after reboot"))?;
    if inst.record.state == "started" && !inst.record.spec.is_null() {
        client
            .start(&agent)
            .await
            .map_err(|e| repair::agent_failed(&format!("Starting '{}'", inst.name()), &e))?;
        repair::running_wait(ctx, services, &agent, &inst.name(), repair::WATCH_DEFAULT).await?;
    }
    Ok(())
}

/// Forgets the VM: its row goes, and its agent's NATS user; the VM itself is left alone.
async fn vm_reference_delete(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
) -> Result<(), ResolveError> {
    let Some(vm) = &inst.vm else {
        return Ok(());
    };
    let db = ctx.db().pool();
    let fail = |e: sqlx::Error| ResolveError::Failed(TaskError::Db(e.into()));
    sqlx::query("UPDATE ip_addresses SET vm_id = NULL WHERE vm_id = $1")
        .bind(vm.id)
        .execute(db)
        .await
        .map_err(fail)?;
    sqlx::query("DELETE FROM vms WHERE id = $1")
        .bind(vm.id)
        .execute(db)
        .await
        .map_err(fail)?;
    if let Ok(agents) = services.agents() {
        agents
            .agent_unregister(&vm.agent_id.to_string())
            .await
            .map_err(|e| {
                handler(format!(
                    "Removing the agent's NATS user: {}",
                    error_chain(&e)
                ))
            })?;
    }
    Ok(())
}

/// The disks the instance's agent has mounted (`None`: no VM or the agent does not answer).
async fn disks_mounted(services: &Services, inst: &Instance) -> Option<Vec<String>> {
    let agent = inst.agent()?;
    let client = services.agents().ok()?.client();
    let v = tokio::time::timeout(
        repair::PING_TIMEOUT * 2,
        client.call(&agent, "list_disk", Vec::new()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_value(v).ok()
}

async fn disk_orphan(ctx: &TaskContext, inst: &Instance, cid: &DiskCid) -> Result<(), TaskError> {
    crate::deploy::persist::disk_orphan(
        ctx.db(),
        inst.record.id,
        cid.as_str(),
        &inst.deployment,
        &inst.name(),
        inst.record.az.as_deref(),
    )
    .await?;
    Ok(())
}

/// A missing disk: deactivated, unmounted and detached if a VM still has it, then its record
/// moves to the orphaned disks (as Ruby).
async fn disk_reference_delete(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
    cid: &DiskCid,
) -> Result<(), ResolveError> {
    sqlx::query("UPDATE persistent_disks SET active = 0 WHERE cid = $1")
        .bind(cid.as_str())
        .execute(ctx.db().pool())
        .await
        .map_err(|e| ResolveError::Failed(TaskError::Db(e.into())))?;
    if let Some(vm) = &inst.vm {
        let cpi = services.task_cpi(ctx)?;
        if let Ok(true) = cpi.has_vm(&vm.cid).await {
            let agent = inst.agent();
            let alive = match &agent {
                Some(a) => repair::agent_responsive(services, a).await,
                None => false,
            };
            let agent = agent.filter(|_| alive);
            repair::disk_unmount_detach(services, vm, agent.as_deref(), cid).await;
        }
    }
    disk_orphan(ctx, inst, cid).await?;
    Ok(())
}

/// An inactive disk that is not in use: detached and orphaned (as Ruby).
async fn disk_inactive_delete(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
    cid: &DiskCid,
) -> Result<(), ResolveError> {
    if disks_mounted(services, inst)
        .await
        .is_some_and(|l| l.iter().any(|c| c == cid.as_str()))
    {
        return Err(handler("Disk is currently in use"));
    }
    if let Some(vm) = &inst.vm {
        let cpi = services.task_cpi(ctx)?;
        if let Err(e) = cpi.detach_disk(&vm.cid, cid).await {
            ctx.info(&format!("Detaching disk '{cid}': {}", error_chain(&e)));
        }
    }
    disk_orphan(ctx, inst, cid).await?;
    Ok(())
}

/// Makes an inactive disk the instance's active one; it must be mounted (it is mounted first
/// when the instance's VM answers and does not have it).
async fn disk_activate(
    ctx: &TaskContext,
    services: &Services,
    inst: &Instance,
    cid: &DiskCid,
) -> Result<(), ResolveError> {
    if inst.disk.is_some() {
        return Err(handler("Instance already has an active disk"));
    }
    let mounted = disks_mounted(services, inst).await;
    match (&mounted, &inst.vm) {
        (Some(list), _) if list.iter().any(|c| c == cid.as_str()) => {}
        (Some(_), Some(vm)) => {
            repair::disk_attach(services, vm, &vm.agent_id.to_string(), cid).await?;
        }
        _ => return Err(handler("Disk is not mounted")),
    }
    sqlx::query("UPDATE persistent_disks SET active = 1 WHERE cid = $1")
        .bind(cid.as_str())
        .execute(ctx.db().pool())
        .await
        .map_err(|e| ResolveError::Failed(TaskError::Db(e.into())))?;
    Ok(())
}

/// The event a resolution records on its instance: (action, object type).
pub fn resolution_event(resolution: Resolution) -> Option<(&'static str, &'static str)> {
    Some(match resolution {
        Resolution::Ignore => return None,
        Resolution::RecreateVm | Resolution::RecreateVmWithoutWait => ("recreate", "instance"),
        Resolution::RebootVm => ("reboot", "vm"),
        Resolution::DeleteVm | Resolution::DeleteVmReference => ("delete", "vm"),
        Resolution::DeleteDiskReference | Resolution::DeleteDisk => ("delete", "disk"),
        Resolution::ActivateDisk => ("update", "disk"),
        Resolution::ReattachDisk | Resolution::ReattachDiskAndReboot => ("attach", "disk"),
    })
}

/// Records that a resolution was applied to an instance.
pub async fn resolution_event_create(
    ctx: &TaskContext,
    problem: &ProblemRecord,
    inst_name: &str,
    resolution: Resolution,
    error: Option<String>,
) {
    let Some((action, object_type)) = resolution_event(resolution) else {
        return;
    };
    let object_name = if object_type == "disk" {
        problem.resource_id.clone()
    } else {
        inst_name.to_owned()
    };
    let context: serde_json::Map<String, serde_json::Value> = BTreeMap::from([
        ("problem".to_owned(), json!(problem.kind)),
        ("resolution".to_owned(), json!(resolution.as_str())),
    ])
    .into_iter()
    .collect();
    let e = crate::events::NewEvent {
        user: ctx.user.clone(),
        action: action.to_owned(),
        object_type: object_type.to_owned(),
        object_name: Some(object_name),
        task: Some(ctx.id.to_string()),
        deployment: Some(problem.deployment.clone()),
        instance: Some(inst_name.to_owned()),
        context,
        error,
        ..Default::default()
    };
    if let Err(err) = crate::events::event_create(ctx.db(), &e).await {
        tracing::warn!(error = %err, "recording the cloud-check event");
    }
}
