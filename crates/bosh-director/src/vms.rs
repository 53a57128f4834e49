//! VMs: create through the CPI with the agent env, wait for the agent, delete; and dynamic IP
//! reservations for VMs that need one (compilation VMs).
//!
//! `vm_create` is a persisted step with undo: the `vms` row (with the agent id, cid still NULL)
//! is written before the CPI is called, so a director that dies mid-call leaves a row that names
//! the agent; every failure after `create_vm` returned deletes the VM, its NATS user and its row.
//! The work runs in its own Tokio task, so a caller that stops waiting (a cancelled task)
//! cannot interrupt the undo.

use bosh_cpi::CpiError;
use bosh_cpi_protocol::CpiErrorKind;
use bosh_cpi_protocol::methods::{CloudProperties, CreateVmArgs, Metadata, Networks};
use bosh_types::ids::{AgentId, StemcellCid, VmCid};
use serde_json::{Map, Value, json};
use std::net::IpAddr;
use std::time::Duration;

use crate::agents::AgentsError;
use crate::db::{Db, DbError, now_secs};
use crate::error::error_chain;
use crate::services::Services;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Unavailable(String),
    #[error("database")]
    Db(#[from] DbError),
    #[error("registering the agent on NATS")]
    Agents(#[from] AgentsError),
    #[error("CPI '{method}' failed")]
    Cpi {
        method: &'static str,
        #[source]
        source: CpiError,
    },
    #[error("Timed out pinging VM '{cid}' with agent '{agent_id}' after {after:?}")]
    AgentUnresponsive {
        cid: VmCid,
        agent_id: AgentId,
        after: Duration,
        #[source]
        source: bosh_agent_client::AgentError,
    },
    #[error("VM creation was interrupted")]
    Interrupted,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub deployment: String,
    /// `instances.id`; `None` for compilation VMs.
    pub instance_id: Option<i64>,
    pub stemcell_name: String,
    pub stemcell_version: String,
    pub stemcell_cid: StemcellCid,
    pub cloud_properties: CloudProperties,
    pub networks: Networks,
    /// The instance group's (or compilation block's) `env`; `env.bosh` is enriched here.
    pub env: Map<String, Value>,
    /// `env.bosh.group` and `groups` (director, deployment, instance group names).
    pub group: String,
    pub groups: Vec<String>,
    /// `set_vm_metadata` tags (besides `director`, added here).
    pub metadata: Metadata,
    pub compilation: bool,
    pub task_id: Option<i64>,
    /// How long the agent may take to answer its first ping (the Ruby default is 600 s).
    pub agent_wait: Duration,
    /// An agent id issued (and registered with `Agents::agents_register`) ahead of time, so
    /// that many VMs share one NATS reload; `None` issues a fresh one here.
    pub agent_id: Option<AgentId>,
}

/// What an instance's VM is made from, kept on the instance (`instances.vm_spec`) so a lost VM
/// can be recreated as it was, without a new plan (resurrector, cloud check, instance
/// operations). It holds the user's env only: certificates and credentials are added per VM.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredVmSpec {
    pub stemcell_name: String,
    pub stemcell_version: String,
    pub stemcell_cid: StemcellCid,
    pub cloud_properties: CloudProperties,
    pub networks: Networks,
    pub env: Map<String, Value>,
    pub group: String,
    pub groups: Vec<String>,
    pub metadata: Metadata,
}

impl VmSpec {
    pub fn stored(&self) -> StoredVmSpec {
        StoredVmSpec {
            stemcell_name: self.stemcell_name.clone(),
            stemcell_version: self.stemcell_version.clone(),
            stemcell_cid: self.stemcell_cid.clone(),
            cloud_properties: self.cloud_properties.clone(),
            networks: self.networks.clone(),
            env: self.env.clone(),
            group: self.group.clone(),
            groups: self.groups.clone(),
            metadata: self.metadata.clone(),
        }
    }

    /// The spec of a new VM for instance row `instance_id` made as `stored` says.
    pub fn from_stored(
        stored: StoredVmSpec,
        deployment: &str,
        instance_id: i64,
        task_id: Option<i64>,
        agent_wait: Duration,
    ) -> VmSpec {
        VmSpec {
            deployment: deployment.to_owned(),
            instance_id: Some(instance_id),
            stemcell_name: stored.stemcell_name,
            stemcell_version: stored.stemcell_version,
            stemcell_cid: stored.stemcell_cid,
            cloud_properties: stored.cloud_properties,
            networks: stored.networks,
            env: stored.env,
            group: stored.group,
            groups: stored.groups,
            metadata: stored.metadata,
            compilation: false,
            task_id,
            agent_wait,
            agent_id: None,
        }
    }
}

/// The stored VM spec of an instance row, if it ever had a VM.
pub async fn instance_vm_spec_fetch(
    db: &Db,
    instance_id: i64,
) -> Result<Option<StoredVmSpec>, DbError> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT vm_spec FROM instances WHERE id = $1")
            .bind(instance_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row
        .and_then(|r| r.0)
        .and_then(|s| serde_json::from_str(&s).ok()))
}

/// A created VM whose agent answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vm {
    /// `vms.id`
    pub id: i64,
    pub cid: VmCid,
    pub agent_id: AgentId,
}

/// The env given to `create_vm`: the spec's env with `env.bosh` carrying the agent's mbus
/// certificate, the director's blobstores, and the group names.
pub fn agent_env_build(
    services: &Services,
    spec: &VmSpec,
    cert: &bosh_agent_protocol::MbusCert,
) -> Map<String, Value> {
    let mut env = spec.env.clone();
    let bosh = env
        .entry("bosh")
        .or_insert_with(|| Value::Object(Map::new()));
    if !bosh.is_object() {
        *bosh = Value::Object(Map::new());
    }
    if let Value::Object(b) = bosh {
        b.insert("mbus".to_owned(), json!({ "cert": cert }));
        if !services.agent_env.blobstores.is_empty() {
            b.insert(
                "blobstores".to_owned(),
                Value::Array(services.agent_env.blobstores.clone()),
            );
        }
        b.insert("group".to_owned(), json!(spec.group));
        b.insert("groups".to_owned(), json!(spec.groups));
    }
    env
}

async fn vm_row_insert(db: &Db, spec: &VmSpec, agent_id: &AgentId) -> Result<i64, DbError> {
    // Only the user-given env is stored: certificates and blobstore credentials are not.
    let env = serde_json::to_string(&spec.env).unwrap_or_else(|_| "{}".into());
    let networks = serde_json::to_string(&spec.networks).unwrap_or_else(|_| "{}".into());
    let row: (i64,) = sqlx::query_as(
        "INSERT INTO vms (agent_id, cid, deployment, instance_id, stemcell_name, stemcell_version, \
         stemcell_cid, env, network_spec, compilation, active, task_id, created_at) \
         VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11) RETURNING id",
    )
    .bind(agent_id.to_string())
    .bind(&spec.deployment)
    .bind(spec.instance_id)
    .bind(&spec.stemcell_name)
    .bind(&spec.stemcell_version)
    .bind(spec.stemcell_cid.as_str())
    .bind(env)
    .bind(networks)
    .bind(i64::from(spec.compilation))
    .bind(spec.task_id)
    .bind(now_secs())
    .fetch_one(db.pool())
    .await?;
    Ok(row.0)
}

async fn vm_row_delete(db: &Db, id: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE ip_addresses SET vm_id = NULL WHERE vm_id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    sqlx::query("DELETE FROM vms WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Creates a VM, waits until its agent answers, and returns it; on any failure nothing is
/// left (VM, NATS user, row).
pub async fn vm_create(db: &Db, services: &Services, spec: VmSpec) -> Result<Vm, VmError> {
    let db = db.clone();
    let services = services.clone();
    tokio::spawn(async move { vm_create_step(&db, &services, &spec).await })
        .await
        .map_err(|_| VmError::Interrupted)?
}

async fn vm_create_step(db: &Db, services: &Services, spec: &VmSpec) -> Result<Vm, VmError> {
    let result = vm_create_inner(db, services, spec).await;
    // A pre-issued id whose VM never got as far as its own undo still has its NATS users.
    if let (Err(_), Some(id), Some(agents)) = (&result, spec.agent_id, &services.agents) {
        agents.agents_unregister(&[id]);
    }
    result
}

async fn vm_create_inner(db: &Db, services: &Services, spec: &VmSpec) -> Result<Vm, VmError> {
    let cpi = services.cpi.clone().ok_or_else(|| {
        VmError::Unavailable(format!("CPI '{}' is not available", services.cpi_name))
    })?;
    let agents = services
        .agents
        .clone()
        .ok_or_else(|| VmError::Unavailable("This director has no NATS to reach agents".into()))?;
    let agent_id = spec.agent_id.unwrap_or_else(AgentId::new_v4);
    let agent = agent_id.to_string();
    let row = vm_row_insert(db, spec, &agent_id).await?;
    if let Some(instance) = spec.instance_id {
        let stored = serde_json::to_string(&spec.stored()).unwrap_or_else(|_| "{}".into());
        let saved = sqlx::query("UPDATE instances SET vm_spec = $1 WHERE id = $2")
            .bind(stored)
            .bind(instance)
            .execute(db.pool())
            .await;
        if let Err(e) = saved {
            let _ = vm_row_delete(db, row).await;
            return Err(DbError::from(e).into());
        }
    }

    // Err((error, keep_row)): the row stays only when a created VM could not be deleted.
    let created: Result<Vm, (VmError, bool)> = async {
        let cert = agents
            .agent_register(&agent)
            .await
            .map_err(|e| (e.into(), false))?;
        let env = agent_env_build(services, spec, &cert);
        let result = cpi
            .create_vm(CreateVmArgs {
                agent_id,
                stemcell_cid: spec.stemcell_cid.clone(),
                cloud_properties: spec.cloud_properties.clone(),
                networks: spec.networks.clone(),
                disk_cids: Default::default(),
                env,
            })
            .await
            .map_err(|source| {
                (
                    VmError::Cpi {
                        method: "create_vm",
                        source,
                    },
                    false,
                )
            })?;
        let vm = Vm {
            id: row,
            cid: result.vm_cid,
            agent_id,
        };
        if let Err(e) = vm_ready(db, &cpi, &agents, spec, &vm).await {
            return match cpi.delete_vm(&vm.cid).await {
                Ok(()) => Err((e, false)),
                Err(d) if d.is(CpiErrorKind::VmNotFound) => Err((e, false)),
                Err(d) => {
                    tracing::error!(cid = %vm.cid, error = %error_chain(&d), "cannot delete a failed VM; its row is kept");
                    Err((e, true))
                }
            };
        }
        Ok(vm)
    }
    .await;

    match created {
        Ok(vm) => {
            tracing::info!(cid = %vm.cid, agent_id = %agent, "VM created");
            Ok(vm)
        }
        Err((e, keep_row)) => {
            let _ = agents.agent_unregister(&agent).await;
            if !keep_row {
                let _ = vm_row_delete(db, row).await;
            }
            Err(e)
        }
    }
}

/// After `create_vm`: record the cid, tag the VM, wait for the agent, mark the row active.
async fn vm_ready(
    db: &Db,
    cpi: &std::sync::Arc<dyn bosh_cpi::Cpi>,
    agents: &crate::agents::Agents,
    spec: &VmSpec,
    vm: &Vm,
) -> Result<(), VmError> {
    sqlx::query("UPDATE vms SET cid = $1 WHERE id = $2")
        .bind(vm.cid.as_str())
        .bind(vm.id)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
    let mut metadata = spec.metadata.clone();
    metadata
        .entry("deployment".to_owned())
        .or_insert_with(|| spec.deployment.clone());
    metadata.insert("created_at".to_owned(), chrono::Utc::now().to_rfc3339());
    match cpi.set_vm_metadata(&vm.cid, &metadata).await {
        Err(e) if !e.is(CpiErrorKind::NotImplemented) => {
            return Err(VmError::Cpi {
                method: "set_vm_metadata",
                source: e,
            });
        }
        _ => {}
    }
    let agent = vm.agent_id.to_string();
    agent_ready_wait(agents.client(), &agent, spec.agent_wait)
        .await
        .map_err(|source| VmError::AgentUnresponsive {
            cid: vm.cid.clone(),
            agent_id: vm.agent_id,
            after: spec.agent_wait,
            source,
        })?;
    sqlx::query("UPDATE vms SET active = 1 WHERE id = $1")
        .bind(vm.id)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
    Ok(())
}

/// Most time between pings while waiting for a new VM's agent.
const READY_PING_INTERVAL: Duration = Duration::from_millis(200);

/// Pings a new VM's agent until it answers, for at most `wait`. The pings overlap: the next
/// one goes out after 50 ms, doubling up to [`READY_PING_INTERVAL`], without waiting for the
/// previous one's timeout. A ping sent before the booting agent subscribed is lost, and
/// waiting out each one's timeout (as `ping_until_ready` does) left the agent idle for up to
/// a second after it came up: at a thousand VMs through a window of a hundred that doubled
/// VM creation. A slow answer to an earlier ping still counts.
async fn agent_ready_wait(
    client: &bosh_agent_client::AgentClient,
    agent: &str,
    wait: Duration,
) -> Result<(), bosh_agent_client::AgentError> {
    use bosh_agent_client::{AgentError, AgentReply};
    use futures::stream::{FuturesUnordered, StreamExt};
    let start = tokio::time::Instant::now();
    let deadline = start + wait;
    let timeout = client.config().ping_timeout;
    let mut step = Duration::from_millis(50);
    let mut next = start;
    let mut pings = FuturesUnordered::new();
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(AgentError::Timeout {
                agent_id: agent.to_owned(),
                method: "ping".into(),
                after: wait,
            });
        }
        if now >= next {
            pings.push(client.request(agent, "ping", vec![], timeout.min(deadline - now)));
            next = now + step;
            step = (step * 2).min(READY_PING_INTERVAL);
        }
        tokio::select! {
            Some(reply) = pings.next(), if !pings.is_empty() => match reply {
                Ok(AgentReply::Done(v)) if v == "pong" => return Ok(()),
                Ok(_) => {
                    return Err(AgentError::InvalidReply {
                        agent_id: agent.to_owned(),
                        method: "ping".into(),
                        reason: "expected \"pong\"".into(),
                    });
                }
                Err(AgentError::Timeout { .. }) => {}
                Err(AgentError::Exception { message, .. })
                    if message.starts_with("restarting agent") => {}
                Err(e) => return Err(e),
            },
            _ = tokio::time::sleep_until(next.min(deadline)) => {}
        }
    }
}

/// Deletes the VM (a VM the CPI no longer knows counts as deleted), then its row and its NATS
/// user. The row stays when the CPI fails, so the VM can be found again.
pub async fn vm_delete(db: &Db, services: &Services, vm: &Vm) -> Result<(), VmError> {
    let db = db.clone();
    let services = services.clone();
    let vm = vm.clone();
    tokio::spawn(async move {
        let cpi = services.cpi.clone().ok_or_else(|| {
            VmError::Unavailable(format!("CPI '{}' is not available", services.cpi_name))
        })?;
        match cpi.delete_vm(&vm.cid).await {
            Ok(()) => {}
            Err(e) if e.is(CpiErrorKind::VmNotFound) => {}
            Err(source) => {
                return Err(VmError::Cpi {
                    method: "delete_vm",
                    source,
                });
            }
        }
        vm_row_delete(&db, vm.id).await?;
        if let Some(agents) = &services.agents {
            agents.agent_unregister(&vm.agent_id.to_string()).await?;
        }
        tracing::info!(cid = %vm.cid, "VM deleted");
        Ok(())
    })
    .await
    .map_err(|_| VmError::Interrupted)?
}

/// Agent ids of every VM row (the NATS users a restarted director must keep).
pub async fn vm_agent_ids(db: &Db) -> Result<Vec<String>, DbError> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT agent_id FROM vms ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Number of VM rows of a deployment (compilation VMs included).
pub async fn vm_count_by_deployment(db: &Db, deployment: &str) -> Result<i64, DbError> {
    let row: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM vms WHERE deployment = $1")
        .bind(deployment)
        .fetch_one(db.pool())
        .await?;
    Ok(row.0)
}

// ---------------------------------------------------------------------------------------------
// IP reservations

/// A dynamic reservation: the first free address of `candidates` (in order) not already in
/// `ip_addresses` for `network`. The table's UNIQUE (network, address) settles races: a
/// losing insert moves on to the next address.
pub async fn ip_reserve_dynamic(
    db: &Db,
    network: &str,
    deployment: &str,
    candidates: impl IntoIterator<Item = IpAddr>,
    task_id: Option<i64>,
) -> Result<Option<IpAddr>, DbError> {
    let taken: Vec<(String,)> =
        sqlx::query_as("SELECT address FROM ip_addresses WHERE network_name = $1")
            .bind(network)
            .fetch_all(db.pool())
            .await?;
    let taken: std::collections::HashSet<String> = taken.into_iter().map(|r| r.0).collect();
    for ip in candidates {
        let text = ip.to_string();
        if taken.contains(&text) {
            continue;
        }
        let done = sqlx::query(
            "INSERT INTO ip_addresses (network_name, address, deployment, static, task_id, created_at) \
             VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (network_name, address) DO NOTHING",
        )
        .bind(network)
        .bind(&text)
        .bind(deployment)
        .bind(task_id)
        .bind(now_secs())
        .execute(db.pool())
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// Ties a reservation to the VM that uses it.
pub async fn ip_assign_vm(db: &Db, network: &str, ip: IpAddr, vm_id: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE ip_addresses SET vm_id = $1 WHERE network_name = $2 AND address = $3")
        .bind(vm_id)
        .bind(network)
        .bind(ip.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn ip_release(db: &Db, network: &str, ip: IpAddr) -> Result<(), DbError> {
    sqlx::query("DELETE FROM ip_addresses WHERE network_name = $1 AND address = $2")
        .bind(network)
        .bind(ip.to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}
