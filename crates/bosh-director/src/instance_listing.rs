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

use crate::db::{Db, DbError, DbKind};
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
    let ips = ip_reservations_load(db, deployment).await?;
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
    match extras.ips.get(&inst.id) {
        Some(ips) => ips.clone(),
        None => spec_ips(&inst.spec),
    }
}

/// The `ip` of every network of an apply spec.
fn spec_ips(spec: &Value) -> Vec<String> {
    spec.get("networks")
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

/// Whether a deployment of that name exists, without reading its manifest.
pub async fn deployment_exists(db: &Db, deployment: &str) -> Result<bool, DbError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM deployments WHERE name = $1")
        .bind(deployment)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// `lifecycle: errand` in an apply spec's JSON text (a string at the top level of an object).
/// Most specs lack the key, so the text is searched before it is parsed, and then only that
/// key is decoded.
fn spec_is_errand(spec: &str) -> bool {
    #[derive(Deserialize)]
    struct Lifecycle<'a> {
        #[serde(borrow, default)]
        lifecycle: Option<std::borrow::Cow<'a, str>>,
    }
    if !spec.contains("\"lifecycle\"") || !spec.trim_start().starts_with('{') {
        return false;
    }
    matches!(
        serde_json::from_str::<Lifecycle>(spec),
        Ok(Lifecycle { lifecycle: Some(l) }) if l == "errand"
    )
}

/// The short listing: one element per instance (with its active VM), or one per VM.
///
/// One query, one row per element: the rows cross from SQLite's worker thread one at a time,
/// so three queries of 1,000 rows each cost three times one. The IP reservations come
/// aggregated (`string_agg` with `ORDER BY`: SQLite 3.44+, which the bundled SQLite is, and
/// PostgreSQL), and the apply spec only where `lifecycle` may say errand (the specs of
/// instances with no IP reservation come from a second query, only when there are any).
/// Reading and parsing every spec in three queries made 1,000 instances a 250 ms p99.
pub async fn instance_summary_list(
    db: &Db,
    deployment: &str,
    kind: ListingKind,
) -> Result<Vec<InstanceSummary>, DbError> {
    // Both listings leave out VMs without a cid; the instance listing pairs each instance
    // with its first active VM (or none), the VM listing has a row per VM.
    let vm_join = match kind {
        ListingKind::Instances => {
            "LEFT JOIN vms v ON v.instance_id = i.id \
             AND v.deployment = i.deployment AND v.cid IS NOT NULL AND v.active <> 0"
        }
        ListingKind::Vms => {
            "JOIN vms v ON v.instance_id = i.id \
             AND v.deployment = i.deployment AND v.cid IS NOT NULL"
        }
    };
    // A plain substring search: LIKE's pattern matching over every ~700-byte spec showed in
    // the profile.
    let maybe_errand = match db.kind() {
        DbKind::Sqlite => "instr(i.spec_json, '\"lifecycle\"') > 0",
        DbKind::Postgres => "strpos(i.spec_json, '\"lifecycle\"') > 0",
    };
    let sql = format!(
        "SELECT i.id, i.uuid, i.instance_group, i.instance_index, i.az, i.state, \
         (SELECT string_agg(a.address, ',' ORDER BY a.id) FROM ip_addresses a \
          WHERE a.deployment = i.deployment AND a.instance_id = i.id) AS ips, \
         CASE WHEN {maybe_errand} THEN i.spec_json END AS spec, \
         v.agent_id, v.cid, v.active, v.created_at \
         FROM instances i {vm_join} WHERE i.deployment = $1 \
         ORDER BY i.instance_group, i.instance_index, v.id"
    );
    type Row = (
        i64,
        String,
        String,
        i64,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(deployment)
        .fetch_all(db.pool())
        .await?;
    // Instances without an IP reservation (dynamic networks) list their spec's IPs: their
    // specs are read in a second query, only when there are any.
    let mut specs: HashMap<i64, Option<String>> = HashMap::new();
    if rows.iter().any(|r| r.6.is_none()) {
        let all: Vec<(i64, Option<String>)> =
            sqlx::query_as("SELECT id, spec_json FROM instances WHERE deployment = $1")
                .bind(deployment)
                .fetch_all(db.pool())
                .await?;
        specs = all.into_iter().collect();
    }
    let mut out: Vec<InstanceSummary> = Vec::with_capacity(rows.len());
    let mut last_instance = None;
    for (id, uuid, group, index, az, state, ips, spec, agent_id, cid, active, created_at) in rows {
        if kind == ListingKind::Instances && last_instance == Some(id) {
            // A second active VM: the first (oldest) one is listed.
            continue;
        }
        last_instance = Some(id);
        // Errand instances and detached ones have no VM on purpose.
        let expects_vm = state != "detached" && !spec.as_deref().is_some_and(spec_is_errand);
        let ips = match ips {
            Some(ips) => ips.split(',').map(str::to_owned).collect(),
            None => spec_ips(&spec_parse(specs.get(&id).and_then(Option::as_deref))),
        };
        let vm_active = active.map(|a| a != 0);
        out.push(InstanceSummary {
            // `cid` is never NULL on a joined VM, so it says whether there is one.
            agent_id: agent_id.filter(|_| cid.is_some()),
            vm_created_at: created_at.filter(|_| cid.is_some()).and_then(rfc3339),
            job: group,
            index,
            id: uuid,
            az,
            ips,
            expects_vm,
            active: match kind {
                ListingKind::Instances => None,
                ListingKind::Vms => vm_active,
            },
            cid,
        });
    }
    Ok(out)
}

/// IP reservations per instance, in reservation order.
async fn ip_reservations_load(
    db: &Db,
    deployment: &str,
) -> Result<HashMap<i64, Vec<String>>, DbError> {
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
    Ok(ips)
}

/// An apply spec's JSON text as a value, `Null` when there is none or it does not parse.
fn spec_parse(spec: Option<&str>) -> Value {
    spec.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// (instance, VM) pairs of a listing: every instance with its active VM, or every VM that
/// has a cid with its instance.
fn listing_pairs<'a>(
    instances: &'a [InstanceRecord],
    vms: &'a [VmRecord],
    kind: ListingKind,
) -> Vec<(&'a InstanceRecord, Option<&'a VmRecord>)> {
    // VMs with a cid by instance, in id order: one pass, not one per instance.
    let mut by_instance: HashMap<i64, Vec<&VmRecord>> = HashMap::new();
    for v in vms.iter().filter(|v| v.cid.is_some()) {
        by_instance.entry(v.instance_id).or_default().push(v);
    }
    let own = |inst: &InstanceRecord| {
        by_instance
            .get(&inst.id)
            .into_iter()
            .flatten()
            .copied()
            .collect::<Vec<&'a VmRecord>>()
    };
    match kind {
        ListingKind::Instances => instances
            .iter()
            .map(|inst| (inst, own(inst).into_iter().find(|v| v.active)))
            .collect(),
        ListingKind::Vms => instances
            .iter()
            .flat_map(|inst| own(inst).into_iter().map(move |v| (inst, Some(v))))
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

    /// The short listing as it was built before it read briefs: every row parsed into
    /// records, paired, and shaped; the new one must answer the same bytes.
    async fn summary_reference(db: &Db, dep: &str, kind: ListingKind) -> Vec<InstanceSummary> {
        let instances = instance_records_list(db, dep).await.unwrap();
        let vms = vm_records_list(db, dep).await.unwrap();
        let extras = extras_load(db, dep).await.unwrap();
        listing_pairs(&instances, &vms, kind)
            .into_iter()
            .map(|(inst, vm)| InstanceSummary {
                agent_id: vm.map(|v| v.agent_id.clone()),
                cid: vm.and_then(|v| v.cid.clone()),
                job: inst.group.clone(),
                index: inst.index,
                id: inst.uuid.clone(),
                az: inst.az.clone(),
                ips: instance_ips(&extras, inst),
                vm_created_at: vm.and_then(|v| rfc3339(v.created_at)),
                expects_vm: inst.spec.get("lifecycle").and_then(Value::as_str) != Some("errand")
                    && inst.state != "detached",
                active: match kind {
                    ListingKind::Instances => None,
                    ListingKind::Vms => vm.map(|v| v.active),
                },
            })
            .collect()
    }

    /// 300 instances of `big` (and a few of `other`, which must not show): instance i is in
    /// group web/worker/router by i % 3; i % 10 == 0 has a dynamic IP (none reserved, two
    /// networks in its spec), i % 25 == 1 is an errand, i % 30 == 2 is detached, i % 7 == 3
    /// has no VM, i % 11 == 4 a VM without a cid, i % 13 == 5 an older inactive VM as well,
    /// i % 17 == 6 a second IP.
    async fn listing_seed(db: &Db) {
        let q = |sql: &'static str| sqlx::query(sql);
        for dep in ["big", "other"] {
            q("INSERT INTO deployments (id, name, manifest, created_at) VALUES ($1, $2, '', 0)")
                .bind(format!("id-{dep}"))
                .bind(dep)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let mut vm_id = 0;
        for i in 0..310i64 {
            let dep = if i < 300 { "big" } else { "other" };
            let group = ["web", "worker", "router"][(i % 3) as usize];
            let mut spec = json!({
                "deployment": dep, "name": group, "index": i / 3, "id": format!("uuid-{i}"),
                "networks": {"default": {"ip": format!("10.0.{}.{}", i / 256, i % 256)}},
                "vm_type": {"name": "small", "cloud_properties": {}},
            });
            if i % 10 == 0 {
                spec["networks"] = json!({"z-net": {"ip": format!("10.9.0.{}", i % 256)},
                                          "a-net": {"ip": format!("10.8.0.{}", i % 256)}});
            }
            if i % 25 == 1 {
                spec["lifecycle"] = json!("errand");
            }
            let state = if i % 30 == 2 { "detached" } else { "started" };
            q("INSERT INTO instances (id, deployment, instance_group, uuid, instance_index, az, \
               bootstrap, state, spec_json, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)")
                .bind(i + 1)
                .bind(dep)
                .bind(group)
                .bind(format!("uuid-{i}"))
                .bind(i / 3)
                .bind(if i % 2 == 0 { Some("z1") } else { None })
                .bind(i64::from(i < 3))
                .bind(state)
                .bind(spec.to_string())
                .execute(db.pool())
                .await
                .unwrap();
            let mut vm =
                async |cid: Option<String>, active: bool| {
                    vm_id += 1;
                    q("INSERT INTO vms (id, agent_id, cid, deployment, instance_id, stemcell_cid, \
                   active, created_at) VALUES ($1, $2, $3, $4, $5, 'sc', $6, $7)")
                    .bind(vm_id)
                    .bind(format!("agent-{vm_id}"))
                    .bind(cid)
                    .bind(dep)
                    .bind(i + 1)
                    .bind(i64::from(active))
                    .bind(1_700_000_000 + vm_id)
                    .execute(db.pool())
                    .await
                    .unwrap();
                    vm_id
                };
            if i % 13 == 5 {
                vm(Some(format!("old-{i}")), false).await;
            }
            let vm_row = if i % 7 == 3 {
                None
            } else if i % 11 == 4 {
                Some(vm(None, true).await)
            } else {
                Some(vm(Some(format!("vm-{i}")), true).await)
            };
            if i % 17 == 6 {
                // A second reservation, made first: listed first.
                q(
                    "INSERT INTO ip_addresses (network_name, address, deployment, instance_id, \
                   created_at) VALUES ('second', $1, $2, $3, 0)",
                )
                .bind(format!("10.1.0.{i}"))
                .bind(dep)
                .bind(i + 1)
                .execute(db.pool())
                .await
                .unwrap();
            }
            if i % 10 != 0 {
                q(
                    "INSERT INTO ip_addresses (network_name, address, deployment, instance_id, \
                   vm_id, created_at) VALUES ('default', $1, $2, $3, $4, 0)",
                )
                .bind(format!("10.0.{}.{}", i / 256, i % 256))
                .bind(dep)
                .bind(i + 1)
                .bind(vm_row)
                .execute(db.pool())
                .await
                .unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_large_short_listing_shows_every_instance_as_before() {
        let dir = tempfile::tempdir().unwrap();
        large_listing_check(&Db::open_sqlite_in(dir.path()).await.unwrap()).await;
        // The query's SQL differs per backend.
        if let Some(db) = crate::db::test_postgres_fresh().await {
            large_listing_check(&db).await;
        }
    }

    async fn large_listing_check(db: &Db) {
        let db = db.clone();
        listing_seed(&db).await;
        assert!(deployment_exists(&db, "big").await.unwrap());
        assert!(!deployment_exists(&db, "nope").await.unwrap());

        let list = instance_summary_list(&db, "big", ListingKind::Instances)
            .await
            .unwrap();
        assert_eq!(list.len(), 300);
        // By group, then index; group `router` holds i % 3 == 2.
        assert_eq!((list[0].job.as_str(), list[0].index), ("router", 0));
        let by_id = |id: &str| list.iter().find(|s| s.id == id).unwrap();
        let s = by_id("uuid-19");
        assert_eq!(s.ips, ["10.0.0.19"]);
        assert_eq!(s.cid.as_deref(), Some("vm-19"));
        assert!(
            s.agent_id
                .as_deref()
                .is_some_and(|a| a.starts_with("agent-"))
        );
        assert!(s.expects_vm);
        assert_eq!(s.active, None);
        // Dynamic: the spec's IPs, in the spec's network order.
        assert_eq!(by_id("uuid-20").ips, ["10.9.0.20", "10.8.0.20"]);
        assert_eq!(by_id("uuid-23").ips, ["10.1.0.23", "10.0.0.23"]);
        assert!(!by_id("uuid-26").expects_vm, "errand");
        assert!(!by_id("uuid-32").expects_vm, "detached");
        assert_eq!(by_id("uuid-3").cid, None, "no VM");
        assert_eq!(by_id("uuid-4").cid, None, "VM without a cid");
        assert_eq!(
            by_id("uuid-18").cid.as_deref(),
            Some("vm-18"),
            "the active VM"
        );
        assert!(
            list.iter()
                .all(|s| s.id["uuid-".len()..].parse::<i64>().unwrap() < 300),
            "only instances of the deployment asked for"
        );

        let vms = instance_summary_list(&db, "big", ListingKind::Vms)
            .await
            .unwrap();
        let of_18: Vec<_> = vms.iter().filter(|s| s.id == "uuid-18").collect();
        let cids: Vec<_> = of_18.iter().map(|s| (s.cid.as_deref(), s.active)).collect();
        assert_eq!(
            cids,
            [(Some("old-18"), Some(false)), (Some("vm-18"), Some(true))]
        );
        assert!(vms.iter().all(|s| s.cid.is_some()));

        for kind in [ListingKind::Instances, ListingKind::Vms] {
            let new =
                serde_json::to_string(&instance_summary_list(&db, "big", kind).await.unwrap());
            let old = serde_json::to_string(&summary_reference(&db, "big", kind).await);
            assert_eq!(new.unwrap(), old.unwrap(), "{kind:?}");
        }
    }

    #[test]
    fn errand_specs_are_found_without_parsing_others() {
        assert!(spec_is_errand(r#"{"a": 1, "lifecycle": "errand"}"#));
        assert!(!spec_is_errand(r#"{"lifecycle": "service"}"#));
        assert!(!spec_is_errand(r#"{"lifecycle": 3}"#));
        assert!(!spec_is_errand(r#"["lifecycle", "errand"]"#));
        assert!(!spec_is_errand(r#"{"job": {"lifecycle": "errand"}}"#));
        assert!(!spec_is_errand("not json \"lifecycle\""));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
    }
}
