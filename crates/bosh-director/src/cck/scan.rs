//! The scan: which instances lost their VM or agent, and which persistent disks are missing,
//! inactive or not mounted where the database says (Ruby's `VmScanStage` and `DiskScanStage`,
//! with their event-log stages).

use bosh_cpi::Cpi;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::problems::{Found, ProblemRecord, ProblemType, ResolutionView};
use crate::db::{Db, DbError};
use crate::repair::{self, Instance};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError};

/// Instances checked at once.
pub const PARALLEL_CHECKS: usize = 16;

/// What the VM check of one instance saw.
#[derive(Debug, Clone, PartialEq)]
pub enum VmState {
    /// The agent answers; the disks it lists as mounted (`None` when it would not say).
    Ok(Option<Vec<String>>),
    Missing,
    Unresponsive,
}

/// Whether a VM is expected for the instance: not detached, not an errand, and made at least
/// once (so it can be made again).
pub async fn vm_expected(db: &Db, inst: &Instance) -> Result<bool, DbError> {
    if inst.record.state == "detached"
        || inst.record.spec.get("lifecycle").and_then(Value::as_str) == Some("errand")
    {
        return Ok(false);
    }
    if inst.vm.is_some() {
        return Ok(true);
    }
    Ok(crate::vms::instance_vm_spec_fetch(db, inst.record.id)
        .await?
        .is_some())
}

/// The VM check: the CPI first (a VM it no longer has is missing without waiting for a ping
/// to time out), then a ping.
pub async fn vm_check(cpi: &Arc<dyn Cpi>, services: &Services, inst: &Instance) -> VmState {
    let Some(vm) = &inst.vm else {
        return VmState::Missing;
    };
    if let Ok(false) = cpi.has_vm(&vm.cid).await {
        return VmState::Missing;
    }
    let agent = vm.agent_id.to_string();
    if !repair::agent_responsive(services, &agent).await {
        return VmState::Unresponsive;
    }
    let listed = match services.agents() {
        Ok(agents) => tokio::time::timeout(
            repair::PING_TIMEOUT * 2,
            agents.client().call(&agent, "list_disk", Vec::new()),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok()),
        Err(_) => None,
    };
    VmState::Ok(listed)
}

/// Scans the instances of `deployment` (only those with ids in `only`, when given): their
/// VMs, then (with `disks`) their persistent disks. Returns what it found; recording it is
/// the caller's.
pub async fn deployment_scan(
    ctx: &TaskContext,
    services: &Services,
    deployment: &str,
    only: Option<&BTreeSet<i64>>,
    disks: bool,
) -> Result<Vec<Found>, TaskError> {
    let db = ctx.db();
    let cpi = services.task_cpi(ctx)?;
    let all = repair::instance_list(db, deployment).await?;
    let mut expecting = Vec::new();
    for inst in all {
        if only.is_some_and(|o| !o.contains(&inst.record.id)) {
            continue;
        }
        if vm_expected(db, &inst).await? {
            expecting.push(inst);
        }
    }
    let ignored = expecting.iter().filter(|i| i.record.ignored).count();
    let checked: Vec<Instance> = expecting
        .into_iter()
        .filter(|i| !i.record.ignored)
        .collect();

    let stage = ctx.events().stage(
        &format!("Scanning {} VMs", checked.len() + ignored),
        &[],
        Some(2),
    );
    let t = stage.task("Checking VM states");
    let states: Vec<(Instance, VmState)> = futures::stream::iter(checked)
        .map(|inst| {
            let cpi = cpi.clone();
            async move {
                let state = vm_check(&cpi, services, &inst).await;
                (inst, state)
            }
        })
        .buffer_unordered(PARALLEL_CHECKS)
        .collect()
        .await;
    t.finished();
    let count = |s: fn(&VmState) -> bool| states.iter().filter(|(_, st)| s(st)).count();
    let ok = count(|s| matches!(s, VmState::Ok(_)));
    let unresponsive = count(|s| *s == VmState::Unresponsive);
    let missing = count(|s| *s == VmState::Missing);
    let mut summary = format!("{ok} OK, {unresponsive} unresponsive, {missing} missing, 0 unbound");
    if ignored > 0 {
        summary.push_str(&format!(", {ignored} ignored"));
    }
    stage.task(&summary).finished();

    let mut found = Vec::new();
    for (inst, state) in &states {
        let kind = match state {
            VmState::Ok(_) => continue,
            VmState::Missing => ProblemType::MissingVm,
            VmState::Unresponsive => ProblemType::UnresponsiveAgent,
        };
        ctx.info(&format!("Found {} for {}", kind.as_str(), inst.display()));
        found.push(Found {
            kind,
            resource_id: inst.record.uuid.clone(),
            instance_id: inst.record.id,
            data: json!({}),
        });
    }
    if disks {
        found.extend(disks_scan(ctx, &cpi, &states).await?);
    }
    Ok(found)
}

#[derive(Default)]
struct DiskCounts {
    ok: usize,
    missing: usize,
    inactive: usize,
    mismatch: usize,
}

async fn disks_scan(
    ctx: &TaskContext,
    cpi: &Arc<dyn Cpi>,
    states: &[(Instance, VmState)],
) -> Result<Vec<Found>, TaskError> {
    let disks: Vec<(&Instance, &VmState, &bosh_types::ids::DiskCid, bool)> = states
        .iter()
        .flat_map(|(inst, st)| {
            let active = inst.disk.iter().map(move |d| (inst, st, d, true));
            let inactive = inst
                .inactive_disks
                .iter()
                .map(move |d| (inst, st, d, false));
            active.chain(inactive)
        })
        .collect();
    let stage = ctx.events().stage(
        &format!("Scanning {} persistent disks", disks.len()),
        &[],
        Some(2),
    );
    let t = stage.task("Looking for inactive disks");
    let mut counts = DiskCounts::default();
    let mut found = Vec::new();
    for (inst, state, cid, active) in disks {
        let problem = |kind, data| Found {
            kind,
            resource_id: cid.to_string(),
            instance_id: inst.record.id,
            data,
        };
        if let Ok(false) = cpi.has_disk(cid).await {
            counts.missing += 1;
            found.push(problem(ProblemType::MissingDisk, json!({})));
            continue;
        }
        if !active {
            counts.inactive += 1;
            found.push(problem(ProblemType::InactiveDisk, json!({})));
            continue;
        }
        // Only an answering agent tells where the disk is mounted (as Ruby, a lost VM is
        // reported once, as a VM problem).
        let (Some(vm), VmState::Ok(Some(listed))) = (&inst.vm, state) else {
            counts.ok += 1;
            continue;
        };
        let mounted = listed.iter().any(|c| c == cid.as_str());
        let attached = match cpi.get_disks(&vm.cid).await {
            Ok(list) => list.contains(cid),
            Err(_) => true, // the CPI cannot tell
        };
        if mounted && attached {
            counts.ok += 1;
            continue;
        }
        counts.mismatch += 1;
        let owners: Vec<String> = if mounted {
            vec![vm.cid.to_string()]
        } else {
            Vec::new()
        };
        found.push(problem(
            ProblemType::MountInfoMismatch,
            json!({"owner_vms": owners}),
        ));
    }
    t.finished();
    stage
        .task(&format!(
            "{} OK, {} missing, {} inactive, {} mount-info mismatch",
            counts.ok, counts.missing, counts.inactive, counts.mismatch
        ))
        .finished();
    Ok(found)
}

/// A problem as `GET /deployments/{dep}/problems` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProblemView {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub instance_group: String,
    pub data: Value,
    pub resolutions: Vec<ResolutionView>,
}

/// Open problems with descriptions from the current state, as Ruby's handlers describe them.
pub async fn problem_view_list(db: &Db, deployment: &str) -> Result<Vec<ProblemView>, DbError> {
    let problems = super::problems::problem_list_open(db, deployment).await?;
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    let instances: BTreeMap<i64, Instance> = repair::instance_list(db, deployment)
        .await?
        .into_iter()
        .map(|i| (i.record.id, i))
        .collect();
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.cid, d.size FROM persistent_disks d JOIN instances i ON i.id = d.instance_id \
         WHERE i.deployment = $1",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    let sizes: BTreeMap<String, i64> = sizes.into_iter().collect();
    Ok(problems
        .into_iter()
        .filter_map(|p| {
            let kind = ProblemType::parse(&p.kind)?;
            let inst = p.instance_id.and_then(|id| instances.get(&id));
            let size = sizes.get(&p.resource_id).copied().unwrap_or(0);
            Some(ProblemView {
                id: p.id,
                kind: p.kind.clone(),
                description: problem_describe(kind, &p, inst, size),
                instance_group: inst
                    .map(|i| i.record.group.clone())
                    .unwrap_or_else(|| "unknown job".to_owned()),
                data: p.data.clone(),
                resolutions: kind.resolution_views(),
            })
        })
        .collect())
}

/// Ruby's handler descriptions.
pub fn problem_describe(
    kind: ProblemType,
    p: &ProblemRecord,
    inst: Option<&Instance>,
    size: i64,
) -> String {
    let display = inst
        .map(Instance::display)
        .unwrap_or_else(|| format!("unknown job/{}", p.resource_id));
    let vm_cid = inst.and_then(|i| i.vm.as_ref()).map(|v| v.cid.to_string());
    let with_cid = vm_cid
        .as_ref()
        .map(|c| format!(" with cloud ID '{c}'"))
        .unwrap_or_default();
    let (group, uuid, index) = inst
        .map(|i| {
            (
                i.record.group.clone(),
                i.record.uuid.clone(),
                i.record.index.to_string(),
            )
        })
        .unwrap_or_else(|| {
            (
                "unknown job".to_owned(),
                "unknown id".to_owned(),
                "unknown index".to_owned(),
            )
        });
    match kind {
        ProblemType::MissingVm => format!("VM for '{display}'{with_cid} missing."),
        ProblemType::UnresponsiveAgent => {
            format!("VM for '{display}'{with_cid} is not responding.")
        }
        ProblemType::MissingDisk => format!(
            "Disk '{}' ({group}/{uuid}, {size}M) is missing",
            p.resource_id
        ),
        ProblemType::InactiveDisk => format!(
            "Disk '{}' ({size}M) for instance '{group}/{uuid} ({index})' is inactive",
            p.resource_id
        ),
        ProblemType::MountInfoMismatch => {
            let owners: Vec<String> = p.data["owner_vms"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let mut out = "Inconsistent mount information:\n".to_owned();
            out.push_str(&format!(
                "Record shows that disk '{}' should be mounted on {}.\n",
                p.resource_id,
                vm_cid.unwrap_or_default()
            ));
            out.push_str("However it is currently :\n");
            if owners.is_empty() {
                out.push_str("\tNot mounted in any VM");
            } else {
                out.push_str(&format!("\tMounted on: {}", owners.join(", ")));
            }
            out
        }
    }
}
