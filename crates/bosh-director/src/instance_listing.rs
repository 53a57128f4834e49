//! `bosh instances` and `bosh vms` (director-api §5.5, §5.6): the short listings answered
//! directly, and the `vms` task that asks every agent for `get_state full` and writes one JSON
//! line per instance or VM to the task's result output.
//!
//! An agent that does not answer within a short timeout is reported as `unresponsive agent`
//! with empty vitals; it never fails the task (as the Ruby director's `VmState` job, which
//! waits 5 s per agent). Agents are asked in parallel, so a listing takes about one timeout
//! however many agents are down.

use async_trait::async_trait;
use bosh_agent_client::{AgentClient, AgentError, AgentReply};
use bosh_agent_protocol::{ProcessStatus, Vitals};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

use crate::db::{Db, DbError};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob};

/// The task type of both full listings (Ruby's `VmState` job).
pub const VMS: &str = "vms";

/// Ruby's `VmState::TIMEOUT`.
pub const AGENT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// How many agents are asked at once.
const PARALLEL_AGENTS: usize = 32;

/// Which listing: every instance with its active VM, or every VM of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingKind {
    Instances,
    Vms,
}

/// An `instances` row.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub id: i64,
    pub uuid: String,
    pub group: String,
    pub index: i64,
    pub az: Option<String>,
    pub bootstrap: bool,
    pub state: String,
    pub ignored: bool,
    /// The apply spec last sent (`instances.spec_json`), `Null` when none was.
    pub spec: Value,
}

impl InstanceRecord {
    /// `group/uuid (index)`, as Ruby's `Instance#to_s`.
    pub fn display(&self) -> String {
        format!("{}/{} ({})", self.group, self.uuid, self.index)
    }

    /// `group/uuid`, the instance name events and orphaned disks use.
    pub fn name(&self) -> String {
        format!("{}/{}", self.group, self.uuid)
    }

    /// Errand instances and detached ones have no VM on purpose.
    fn expects_vm(&self) -> bool {
        self.spec.get("lifecycle").and_then(Value::as_str) != Some("errand")
            && self.state != "detached"
    }
}

/// A `vms` row that belongs to an instance.
#[derive(Debug, Clone)]
pub struct VmRecord {
    pub id: i64,
    pub instance_id: i64,
    pub agent_id: String,
    /// `None` while `create_vm` has not answered (or never did).
    pub cid: Option<String>,
    pub stemcell_name: String,
    pub stemcell_version: String,
    pub active: bool,
    pub created_at: i64,
}

/// Instances of a deployment, by group and index.
pub async fn instance_records_list(
    db: &Db,
    deployment: &str,
) -> Result<Vec<InstanceRecord>, DbError> {
    type Row = (
        i64,
        String,
        String,
        i64,
        Option<String>,
        i64,
        String,
        i64,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, uuid, instance_group, instance_index, az, bootstrap, state, ignored, spec_json \
         FROM instances WHERE deployment = $1 ORDER BY instance_group, instance_index",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, uuid, group, index, az, bootstrap, state, ignored, spec)| InstanceRecord {
                id,
                uuid,
                group,
                index,
                az,
                bootstrap: bootstrap != 0,
                state,
                ignored: ignored != 0,
                spec: spec
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Value::Null),
            },
        )
        .collect())
}

/// VMs of a deployment's instances (compilation VMs have no instance and are left out).
pub async fn vm_records_list(db: &Db, deployment: &str) -> Result<Vec<VmRecord>, DbError> {
    type Row = (i64, i64, String, Option<String>, String, String, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, instance_id, agent_id, cid, stemcell_name, stemcell_version, active, created_at \
         FROM vms WHERE deployment = $1 AND instance_id IS NOT NULL ORDER BY id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                instance_id,
                agent_id,
                cid,
                stemcell_name,
                stemcell_version,
                active,
                created_at,
            )| {
                VmRecord {
                    id,
                    instance_id,
                    agent_id,
                    cid,
                    stemcell_name,
                    stemcell_version,
                    active: active != 0,
                    created_at,
                }
            },
        )
        .collect())
}

/// What the listings need besides instances and VMs: IPs and disks per instance, and the
/// stemcells' API versions.
struct Extras {
    ips: HashMap<i64, Vec<String>>,
    /// (cid, active) per instance, oldest first.
    disks: HashMap<i64, Vec<(String, bool)>>,
    stemcell_api: HashMap<(String, String), Option<i64>>,
}

async fn extras_load(db: &Db, deployment: &str) -> Result<Extras, DbError> {
    let ip_rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT instance_id, address FROM ip_addresses \
         WHERE deployment = $1 AND instance_id IS NOT NULL ORDER BY id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    let mut ips: HashMap<i64, Vec<String>> = HashMap::new();
    for (instance, address) in ip_rows {
        ips.entry(instance).or_default().push(address);
    }
    let disk_rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT d.instance_id, d.cid, d.active FROM persistent_disks d \
         JOIN instances i ON i.id = d.instance_id WHERE i.deployment = $1 ORDER BY d.id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    let mut disks: HashMap<i64, Vec<(String, bool)>> = HashMap::new();
    for (instance, cid, active) in disk_rows {
        disks.entry(instance).or_default().push((cid, active != 0));
    }
    let stemcell_rows: Vec<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT name, version, api_version FROM stemcells")
            .fetch_all(db.pool())
            .await?;
    let stemcell_api = stemcell_rows
        .into_iter()
        .map(|(n, v, a)| ((n, v), a))
        .collect();
    Ok(Extras {
        ips,
        disks,
        stemcell_api,
    })
}

fn rfc3339(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The instance's IPs: its reservations, else the IPs of its last apply spec (dynamic
/// networks have no reservation).
fn instance_ips(extras: &Extras, inst: &InstanceRecord) -> Vec<String> {
    if let Some(ips) = extras.ips.get(&inst.id) {
        return ips.clone();
    }
    inst.spec
        .get("networks")
        .and_then(Value::as_object)
        .map(|nets| {
            nets.values()
                .filter_map(|n| n.get("ip").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `vm_type` (or the legacy `resource_pool`) of the apply spec: its name and cloud properties.
fn vm_type(inst: &InstanceRecord) -> (Option<String>, Value) {
    let block = inst
        .spec
        .get("vm_type")
        .filter(|v| v.is_object())
        .or_else(|| inst.spec.get("resource_pool"));
    let name = block
        .and_then(|b| b.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let cloud_properties = block
        .and_then(|b| b.get("cloud_properties"))
        .filter(|c| c.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    (name, cloud_properties)
}

/// `stemcell` of a line: the VM's, else the apply spec's.
fn stemcell_ref(
    extras: &Extras,
    inst: &InstanceRecord,
    vm: Option<&VmRecord>,
) -> Option<StemcellRef> {
    let (name, version) = match vm {
        Some(vm) if !vm.stemcell_name.is_empty() => {
            (vm.stemcell_name.clone(), vm.stemcell_version.clone())
        }
        _ => {
            let s = inst.spec.get("stemcell")?;
            let text = |k: &str| match s.get(k)? {
                Value::String(v) => Some(v.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            (text("name")?, text("version")?)
        }
    };
    // A stemcell without `api_version` in its manifest speaks the first API.
    let api_version = extras
        .stemcell_api
        .get(&(name.clone(), version.clone()))
        .copied()
        .flatten()
        .unwrap_or(1);
    Some(StemcellRef {
        name,
        version,
        api_version,
    })
}

// ---------------------------------------------------------------------------------------------
// Short forms (no task)

/// An element of `GET /deployments/{dep}/instances` (and of `/vms`, with `active`).
#[derive(Debug, Clone, Serialize)]
pub struct InstanceSummary {
    pub agent_id: Option<String>,
    pub cid: Option<String>,
    pub job: String,
    pub index: i64,
    pub id: String,
    pub az: Option<String>,
    pub ips: Vec<String>,
    pub vm_created_at: Option<String>,
    pub expects_vm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// The short listing: one element per instance (with its active VM), or one per VM.
pub async fn instance_summary_list(
    db: &Db,
    deployment: &str,
    kind: ListingKind,
) -> Result<Vec<InstanceSummary>, DbError> {
    let instances = instance_records_list(db, deployment).await?;
    let vms = vm_records_list(db, deployment).await?;
    let extras = extras_load(db, deployment).await?;
    let summary =
        |inst: &InstanceRecord, vm: Option<&VmRecord>, active: Option<bool>| InstanceSummary {
            agent_id: vm.map(|v| v.agent_id.clone()),
            cid: vm.and_then(|v| v.cid.clone()),
            job: inst.group.clone(),
            index: inst.index,
            id: inst.uuid.clone(),
            az: inst.az.clone(),
            ips: instance_ips(&extras, inst),
            vm_created_at: vm.and_then(|v| rfc3339(v.created_at)),
            expects_vm: inst.expects_vm(),
            active,
        };
    Ok(listing_pairs(&instances, &vms, kind)
        .into_iter()
        .map(|(inst, vm)| match kind {
            ListingKind::Instances => summary(inst, vm, None),
            ListingKind::Vms => summary(inst, vm, vm.map(|v| v.active)),
        })
        .collect())
}

/// (instance, VM) pairs of a listing: every instance with its active VM, or every VM that
/// has a cid with its instance.
fn listing_pairs<'a>(
    instances: &'a [InstanceRecord],
    vms: &'a [VmRecord],
    kind: ListingKind,
) -> Vec<(&'a InstanceRecord, Option<&'a VmRecord>)> {
    match kind {
        ListingKind::Instances => instances
            .iter()
            .map(|inst| {
                let vm = vms
                    .iter()
                    .find(|v| v.instance_id == inst.id && v.active && v.cid.is_some());
                (inst, vm)
            })
            .collect(),
        ListingKind::Vms => instances
            .iter()
            .flat_map(|inst| {
                vms.iter()
                    .filter(move |v| v.instance_id == inst.id && v.cid.is_some())
                    .map(move |v| (inst, Some(v)))
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Full form (the `vms` task)

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StemcellRef {
    pub name: String,
    pub version: String,
    pub api_version: i64,
}

/// One line of the result output (director-api §5.6). `vitals` holds the agent's strings;
/// `processes` keeps numbers.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceLine {
    pub vm_cid: Option<String>,
    pub vm_created_at: Option<String>,
    pub cloud_properties: Value,
    pub disk_cid: Option<String>,
    pub disk_cids: Vec<String>,
    pub ips: Vec<String>,
    pub dns: Vec<String>,
    pub agent_id: Option<String>,
    pub job_name: String,
    pub index: Option<i64>,
    pub job_state: Option<String>,
    pub state: String,
    pub resource_pool: Option<String>,
    pub vm_type: Option<String>,
    pub vitals: Value,
    pub processes: Vec<ProcessStatus>,
    pub resurrection_paused: bool,
    pub az: Option<String>,
    pub id: String,
    pub bootstrap: bool,
    pub ignore: bool,
    pub active: Option<bool>,
    pub stemcell: Option<StemcellRef>,
}

/// The parts of `get_state full` a listing uses; the rest of the state is ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ListedState {
    job_state: Option<String>,
    processes: Vec<ProcessStatus>,
    vitals: Option<Vitals>,
}

pub const UNRESPONSIVE_AGENT: &str = "unresponsive agent";

impl ListedState {
    fn unresponsive() -> ListedState {
        ListedState {
            job_state: Some(UNRESPONSIVE_AGENT.to_owned()),
            ..ListedState::default()
        }
    }
}

/// One `get_state full` with its own short timeout and no retries; any failure reads as
/// an unresponsive agent.
async fn agent_probe(client: &AgentClient, agent_id: &str, timeout: Duration) -> ListedState {
    match client
        .request(agent_id, "get_state", vec![json!("full")], timeout)
        .await
    {
        Ok(AgentReply::Done(value)) => match serde_json::from_value::<ListedState>(value.clone()) {
            Ok(state) => state,
            Err(e) => {
                // Keep what can be read; a process list we cannot decode is left out.
                tracing::warn!(agent_id, error = %e, "cannot decode get_state from agent");
                ListedState {
                    job_state: value
                        .get("job_state")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    ..ListedState::default()
                }
            }
        },
        Ok(AgentReply::Task(_)) => {
            tracing::warn!(agent_id, "agent answered get_state with a task handle");
            ListedState::unresponsive()
        }
        Err(AgentError::Timeout { .. }) => ListedState::unresponsive(),
        Err(e) => {
            tracing::warn!(agent_id, error = %crate::error::error_chain(&e), "get_state failed");
            ListedState::unresponsive()
        }
    }
}

async fn agent_probe_optional(
    client: Option<&AgentClient>,
    agent: Option<String>,
    timeout: Duration,
) -> Option<ListedState> {
    let agent = agent?;
    Some(match client {
        Some(c) => agent_probe(c, &agent, timeout).await,
        None => ListedState::unresponsive(),
    })
}

/// Builds every line of a full listing, asking agents in parallel. `client` is `None` on a
/// director without NATS: every VM then reads as unresponsive.
pub async fn instance_line_list(
    db: &Db,
    client: Option<&AgentClient>,
    deployment: &str,
    kind: ListingKind,
    timeout: Duration,
) -> Result<Vec<InstanceLine>, DbError> {
    let instances = instance_records_list(db, deployment).await?;
    let vms = vm_records_list(db, deployment).await?;
    let extras = extras_load(db, deployment).await?;
    let pairs = listing_pairs(&instances, &vms, kind);
    // Owned agent ids: a stream closure over borrowed pairs is not `Send` for every lifetime.
    let agents: Vec<Option<String>> = pairs
        .iter()
        .map(|(_, vm)| vm.map(|v| v.agent_id.clone()))
        .collect();
    let probes: Vec<Option<ListedState>> = futures::stream::iter(agents)
        .map(|agent| agent_probe_optional(client, agent, timeout))
        .buffered(PARALLEL_AGENTS)
        .collect()
        .await;

    Ok(pairs
        .iter()
        .zip(probes)
        .map(|((inst, vm), probe)| {
            let ListedState {
                job_state,
                processes,
                vitals,
            } = probe.unwrap_or_default();
            let disks = extras.disks.get(&inst.id);
            let disk_cids: Vec<String> = disks
                .map(|d| {
                    d.iter()
                        .filter(|(_, active)| *active)
                        .map(|(cid, _)| cid.clone())
                        .collect()
                })
                .unwrap_or_default();
            let (vm_type, cloud_properties) = vm_type(inst);
            InstanceLine {
                vm_cid: vm.and_then(|v| v.cid.clone()),
                vm_created_at: vm.and_then(|v| rfc3339(v.created_at)),
                cloud_properties,
                disk_cid: disk_cids.first().cloned(),
                disk_cids,
                ips: instance_ips(&extras, inst),
                dns: Vec::new(),
                agent_id: vm.map(|v| v.agent_id.clone()),
                job_name: inst.group.clone(),
                index: Some(inst.index),
                job_state,
                state: inst.state.clone(),
                resource_pool: vm_type.clone(),
                vm_type,
                // Empty, not null, when unknown: both CLIs read an object here.
                vitals: vitals
                    .and_then(|v| serde_json::to_value(v).ok())
                    .unwrap_or_else(|| Value::Object(Map::new())),
                processes,
                resurrection_paused: false,
                az: inst.az.clone(),
                id: inst.uuid.clone(),
                bootstrap: inst.bootstrap,
                ignore: inst.ignored,
                active: vm.map(|v| v.active),
                stemcell: stemcell_ref(&extras, inst, *vm),
            }
        })
        .collect())
}

/// `vms`: payload `{"deployment": "...", "kind": "instances"|"vms"}`; writes the lines of
/// [`instance_line_list`] to the result output.
pub struct VmStateJob {
    pub services: Services,
    /// How long one agent may take to answer `get_state`.
    pub agent_timeout: Duration,
}

impl VmStateJob {
    pub fn new(services: Services) -> VmStateJob {
        VmStateJob {
            services,
            agent_timeout: AGENT_TIMEOUT_DEFAULT,
        }
    }
}

#[async_trait]
impl TaskJob for VmStateJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let deployment = payload["deployment"]
            .as_str()
            .ok_or_else(|| TaskError::failed(40001, "vms needs a deployment"))?;
        let kind: ListingKind = serde_json::from_value(payload["kind"].clone())
            .map_err(|_| TaskError::failed(40001, "vms needs a kind: instances or vms"))?;
        if crate::deployments::deployment_fetch(ctx.db(), deployment)
            .await?
            .is_none()
        {
            return Err(TaskError::failed(
                70000,
                format!("Deployment '{deployment}' doesn't exist"),
            ));
        }
        let client = self.services.agents.as_ref().map(|a| a.client());
        let lines =
            instance_line_list(ctx.db(), client, deployment, kind, self.agent_timeout).await?;
        let mut out = Vec::new();
        for line in &lines {
            // Serialising these plain structs cannot fail.
            if let Ok(mut text) = serde_json::to_vec(line) {
                text.push(b'\n');
                out.extend_from_slice(&text);
            }
        }
        // One write: a reader never sees half the listing.
        ctx.result_output().append(&out);
        ctx.info(&format!(
            "Listed {} {} of deployment '{deployment}'",
            lines.len(),
            match kind {
                ListingKind::Instances => "instances",
                ListingKind::Vms => "VMs",
            }
        ));
        Ok(String::new())
    }

    fn resumable(&self) -> bool {
        // Read-only: running it again is harmless.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: i64, spec: Value) -> InstanceRecord {
        InstanceRecord {
            id,
            uuid: format!("u{id}"),
            group: "web".into(),
            index: id,
            az: Some("z1".into()),
            bootstrap: id == 0,
            state: "started".into(),
            ignored: false,
            spec,
        }
    }

    fn vm(id: i64, instance_id: i64, active: bool, cid: Option<&str>) -> VmRecord {
        VmRecord {
            id,
            instance_id,
            agent_id: format!("a{id}"),
            cid: cid.map(str::to_owned),
            stemcell_name: "s".into(),
            stemcell_version: "1".into(),
            active,
            created_at: 1_700_000_000,
        }
    }

    #[test]
    fn instances_pair_with_their_active_vm_and_vms_list_every_vm_with_a_cid() {
        let instances = [inst(0, Value::Null), inst(1, Value::Null)];
        let vms = [
            vm(1, 0, false, Some("old")),
            vm(2, 0, true, Some("new")),
            vm(3, 1, false, None),
        ];
        let by_instance = listing_pairs(&instances, &vms, ListingKind::Instances);
        assert_eq!(by_instance.len(), 2);
        assert_eq!(by_instance[0].1.unwrap().id, 2);
        assert!(by_instance[1].1.is_none());
        let by_vm = listing_pairs(&instances, &vms, ListingKind::Vms);
        let ids: Vec<i64> = by_vm.iter().map(|(_, v)| v.unwrap().id).collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn vm_type_and_ips_come_from_the_apply_spec() {
        let i = inst(
            0,
            json!({"vm_type": {"name": "small", "cloud_properties": {"cpu": 2}},
                   "networks": {"default": {"ip": "10.0.0.5"}}}),
        );
        assert_eq!(vm_type(&i), (Some("small".into()), json!({"cpu": 2})));
        let extras = Extras {
            ips: HashMap::new(),
            disks: HashMap::new(),
            stemcell_api: HashMap::new(),
        };
        assert_eq!(instance_ips(&extras, &i), ["10.0.0.5"]);
        assert_eq!(vm_type(&inst(1, Value::Null)), (None, json!({})));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
    }
}
