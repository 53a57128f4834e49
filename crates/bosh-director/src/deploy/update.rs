//! The updater: missing VMs first, then instance groups in order, canaries first and then
//! batches of `max_in_flight` per AZ; per instance the agent sequence of agent-protocol.md
//! §8.2. Instances whose change is None get no agent and no CPI call.

use bosh_agent_client::DrainType;
use bosh_cpi_protocol::methods::{CloudProperties, CreateDiskArgs};
use bosh_planner::{
    Change, DeploymentPlan, InstanceGroupPlan, InstancePlan, InstanceState, ObsoleteInstance,
};
use bosh_types::ids::{AgentId, DiskCid, InstanceId, StemcellCid};
use futures::future::join_all;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::apply_spec::existing_after_apply;
use super::apply_spec::{ArchiveRef, CompiledPackages, apply_spec_build, cpi_networks};
use super::inputs::{InstanceRow, VmRow};
use super::persist;
use super::render::{InstanceRendered, JobSource, service_groups};
use crate::error::error_chain;
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError};
use crate::vms::{self, Vm, VmSpec};

use crate::repair::AGENT_WAIT;
/// Ruby's `AgentJobNotRunning` / RPC failure codes.
pub use crate::repair::{AGENT_FAILED, NOT_RUNNING};
/// How many VMs "Creating missing vms" creates at once by default
/// (`deploy.vm_create_concurrency`).
const CREATE_PARALLEL: usize = 32;

use crate::repair::{self, agent_failed};

fn as_map(v: &bosh_yaml::Value) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Everything the updater reads.
pub struct Updater<'a> {
    pub ctx: &'a TaskContext,
    pub services: &'a Services,
    pub plan: &'a DeploymentPlan,
    pub director_name: &'a str,
    pub ids: &'a HashMap<InstanceId, i64>,
    pub rows: &'a HashMap<InstanceId, InstanceRow>,
    pub sources: &'a HashMap<(String, String), JobSource>,
    pub compiled: &'a CompiledPackages,
    pub rendered: &'a HashMap<InstanceId, InstanceRendered>,
    pub archives: &'a HashMap<InstanceId, ArchiveRef>,
    pub skip_drain: bool,
    pub recreate_persistent_disks: bool,
    pub variable_set: Option<i64>,
    /// The VM each instance runs on now.
    pub vms: Mutex<HashMap<InstanceId, Vm>>,
    /// VMs made by this deploy that have not been started yet (nothing to drain or stop).
    pub fresh: Mutex<HashSet<InstanceId>>,
}

fn vm_of(row: &VmRow) -> Vm {
    Vm {
        id: row.id,
        cid: row.cid.clone(),
        agent_id: row.agent_id,
    }
}

fn task_name(g: &InstanceGroupPlan, i: &InstancePlan, canary: bool) -> String {
    let mut name = format!("{}/{} ({})", g.name, i.id, i.index);
    if canary {
        name.push_str(" (canary)");
    }
    name
}

impl Updater<'_> {
    pub fn vms_from_rows(&self) {
        if let Ok(mut vms) = self.vms.lock() {
            for (id, row) in self.rows {
                if let Some(vm) = &row.vm {
                    vms.insert(*id, vm_of(vm));
                }
            }
        }
    }

    /// Uuids of ignored instances (`bosh ignore`): the updater leaves them untouched.
    async fn ignored(&self) -> Result<HashSet<String>, TaskError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT uuid FROM instances WHERE deployment = $1 AND ignored = 1")
                .bind(&self.plan.name)
                .fetch_all(self.ctx.db().pool())
                .await
                .map_err(crate::db::DbError::from)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    fn vm(&self, id: InstanceId) -> Option<Vm> {
        self.vms.lock().ok().and_then(|v| v.get(&id).cloned())
    }

    async fn vm_create(&self, g: &InstanceGroupPlan, i: &InstancePlan) -> Result<Vm, TaskError> {
        self.vm_create_as(g, i, None).await
    }

    /// Creates the instance's VM; `agent_id` is an id registered ahead (see
    /// `missing_vms_create_with`).
    async fn vm_create_as(
        &self,
        g: &InstanceGroupPlan,
        i: &InstancePlan,
        agent_id: Option<AgentId>,
    ) -> Result<Vm, TaskError> {
        let row = self.ids.get(&i.id).copied();
        let director = self.director_name;
        let deployment = &self.plan.name;
        let spec = VmSpec {
            deployment: deployment.clone(),
            instance_id: row,
            stemcell_name: g.stemcell.name.clone(),
            stemcell_version: g.stemcell.version.clone(),
            stemcell_cid: StemcellCid::clone(&g.stemcell.cid),
            cloud_properties: as_map(&i.cloud_properties) as CloudProperties,
            networks: cpi_networks(i),
            env: as_map(&g.env),
            group: format!("{director}-{deployment}-{}", g.name),
            groups: vec![
                director.to_owned(),
                deployment.clone(),
                g.name.clone(),
                format!("{director}-{deployment}"),
                format!("{deployment}-{}", g.name),
                format!("{director}-{deployment}-{}", g.name),
            ],
            metadata: BTreeMap::from([
                ("instance_group".to_owned(), g.name.clone()),
                ("job".to_owned(), g.name.clone()),
                ("index".to_owned(), i.index.to_string()),
                ("id".to_owned(), i.id.to_string()),
                ("name".to_owned(), format!("{}/{}", g.name, i.id)),
            ]),
            compilation: false,
            task_id: Some(self.ctx.id.0),
            agent_wait: AGENT_WAIT,
            agent_id,
        };
        let vm = vms::vm_create(self.ctx.db(), self.services, spec)
            .await
            .map_err(|e| {
                TaskError::failed(
                    AGENT_FAILED,
                    format!("Creating VM for '{}/{}': {}", g.name, i.id, error_chain(&e)),
                )
            })?;
        for n in i.networks.values() {
            if let Some(ip) = n.ip
                && let Some((name, _)) = i.networks.iter().find(|(_, x)| x.ip == Some(ip))
            {
                vms::ip_assign_vm(self.ctx.db(), name, ip, vm.id).await?;
            }
        }
        if let Ok(mut v) = self.vms.lock() {
            v.insert(i.id, vm.clone());
        }
        if let Ok(mut f) = self.fresh.lock() {
            f.insert(i.id);
        }
        Ok(vm)
    }

    /// "Creating missing vms": every instance to update that has no VM gets one.
    pub async fn missing_vms_create(&self) -> Result<(), TaskError> {
        self.missing_vms_create_with(CREATE_PARALLEL).await
    }

    /// "Creating missing vms" with at most `concurrency` VMs being created at once.
    pub async fn missing_vms_create_with(&self, concurrency: usize) -> Result<(), TaskError> {
        let mut todo = Vec::new();
        let ignored = self.ignored().await?;
        for g in service_groups(self.plan) {
            for i in &g.instances {
                // A detached instance (`bosh stop --hard`) stays without a VM.
                if i.change != Change::None
                    && i.state != InstanceState::Detached
                    && !ignored.contains(&i.id.to_string())
                    && self.vm(i.id).is_none()
                {
                    todo.push((g, i));
                }
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let stage = self
            .ctx
            .events()
            .stage("Creating missing vms", &[], Some(todo.len() as u32));
        // Every new VM's agent needs NATS users; registering them all now costs one
        // nats-server reload instead of one per few VMs (a reload re-reads every user).
        let agents = self.services.agents()?;
        let ids: Vec<AgentId> = todo.iter().map(|_| AgentId::new_v4()).collect();
        if let Err(e) = agents.agents_register(&ids).await {
            agents.agents_unregister(&ids);
            return Err(TaskError::failed(
                AGENT_FAILED,
                format!("Registering agents on NATS: {}", error_chain(&e)),
            ));
        }
        // A sliding window, not batches: one slow VM does not hold up the next ones.
        let failed = std::sync::atomic::AtomicBool::new(false);
        let window = tokio::sync::Semaphore::new(concurrency.max(1));
        // Ids whose VM creation never started (a VM failed, or the task was cancelled): a
        // started creation unregisters its own id when it fails.
        let unused = Mutex::new(Vec::new());
        let results = join_all(todo.iter().zip(&ids).map(|((g, i), id)| {
            let stage = &stage;
            let failed = &failed;
            let window = &window;
            let unused = &unused;
            async move {
                let _slot = window.acquire().await;
                let start = if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    Ok(false) // a VM failed already: start no more
                } else {
                    self.ctx.checkpoint().await.map(|()| true)
                };
                if !matches!(start, Ok(true)) {
                    if let Ok(mut u) = unused.lock() {
                        u.push(*id);
                    }
                    return start.map(|_| ());
                }
                let t = stage.task(&task_name(g, i, false));
                match self.vm_create_as(g, i, Some(*id)).await {
                    Ok(_) => {
                        t.finished();
                        Ok(())
                    }
                    Err(e) => {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        t.failed(&e.to_string());
                        Err(e)
                    }
                }
            }
        }))
        .await;
        let unused = unused.into_inner().unwrap_or_default();
        if !unused.is_empty() {
            agents.agents_unregister(&unused);
        }
        let first_err = results.into_iter().find_map(Result::err);
        first_err.map_or(Ok(()), Err)
    }

    /// Instance groups in order; a failed canary or batch stops the deploy.
    pub async fn groups_update(&self) -> Result<(), TaskError> {
        let ignored = self.ignored().await?;
        for g in service_groups(self.plan) {
            let changing: Vec<&InstancePlan> = g
                .instances
                .iter()
                .filter(|i| i.change != Change::None && i.state != InstanceState::Detached)
                .filter(|i| !ignored.contains(&i.id.to_string()))
                .collect();
            if changing.is_empty() {
                continue;
            }
            let stage = self.ctx.events().stage(
                "Updating instance",
                &[g.name.as_str()],
                Some(changing.len() as u32),
            );
            // Per AZ in the plan's order; instances of an AZ the plan does not list go last.
            let mut by_az: Vec<(Vec<&InstancePlan>, u32, u32)> = Vec::new();
            let mut seen = HashSet::new();
            for az in &g.update.azs {
                let list: Vec<&InstancePlan> =
                    changing.iter().copied().filter(|i| i.az == az.az).collect();
                seen.insert(az.az.clone());
                by_az.push((list, az.canaries, az.max_in_flight.max(1)));
            }
            let rest: Vec<&InstancePlan> = changing
                .iter()
                .copied()
                .filter(|i| !seen.contains(&i.az))
                .collect();
            if !rest.is_empty() {
                by_az.push((rest, 0, 1));
            }
            let mut first_az = true;
            for (list, canaries, max_in_flight) in by_az {
                let mut rest = list.as_slice();
                if first_az && canaries > 0 {
                    let n = (canaries as usize).min(rest.len());
                    let (canary, after) = rest.split_at(n);
                    self.batch_update(g, canary, true, &stage).await?;
                    rest = after;
                }
                first_az = false;
                for batch in rest.chunks(max_in_flight as usize) {
                    self.batch_update(g, batch, false, &stage).await?;
                }
            }
        }
        Ok(())
    }

    async fn batch_update(
        &self,
        g: &InstanceGroupPlan,
        batch: &[&InstancePlan],
        canary: bool,
        stage: &crate::tasks::events::Stage,
    ) -> Result<(), TaskError> {
        self.ctx.checkpoint().await?;
        // The batch's recreated instances get their agents' NATS users in one reload.
        let ids: Vec<Option<AgentId>> = batch
            .iter()
            .map(|i| (i.change == Change::Recreate && !self.is_fresh(i.id)).then(AgentId::new_v4))
            .collect();
        let registered: Vec<AgentId> = ids.iter().flatten().copied().collect();
        if !registered.is_empty() {
            let agents = self.services.agents()?;
            if let Err(e) = agents.agents_register(&registered).await {
                agents.agents_unregister(&registered);
                return Err(TaskError::failed(
                    AGENT_FAILED,
                    format!("Registering agents on NATS: {}", error_chain(&e)),
                ));
            }
        }
        let used = Mutex::new(HashSet::new());
        let results = join_all(batch.iter().zip(&ids).map(|(i, id)| {
            let used = &used;
            async move {
                let t = stage.task(&task_name(g, i, canary));
                match self.instance_update(g, i, canary, *id, used).await {
                    Ok(()) => {
                        t.finished();
                        Ok(())
                    }
                    Err(e) => {
                        t.failed(&e.to_string());
                        Err(e)
                    }
                }
            }
        }))
        .await;
        // Ids of instances that failed before their new VM was started.
        let used = used.into_inner().unwrap_or_default();
        let unused: Vec<AgentId> = registered
            .into_iter()
            .filter(|id| !used.contains(id))
            .collect();
        if !unused.is_empty() {
            self.services.agents()?.agents_unregister(&unused);
        }
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    fn is_fresh(&self, id: InstanceId) -> bool {
        self.fresh.lock().map(|f| f.contains(&id)).unwrap_or(false)
    }

    /// `agent_id`: an id registered ahead for the instance's new VM when it is recreated;
    /// recorded in `used` once its creation starts (which then owns its undo).
    async fn instance_update(
        &self,
        g: &InstanceGroupPlan,
        i: &InstancePlan,
        canary: bool,
        agent_id: Option<AgentId>,
        used: &Mutex<HashSet<AgentId>>,
    ) -> Result<(), TaskError> {
        let db = self.ctx.db();
        let client = self.services.agents()?.client();
        let row = *self.ids.get(&i.id).ok_or_else(|| {
            TaskError::failed(AGENT_FAILED, format!("instance {} has no row", i.id))
        })?;
        persist::instance_dirty_mark(db, row).await?;
        let (rendered, archive) = match (self.rendered.get(&i.id), self.archives.get(&i.id)) {
            (Some(r), Some(a)) => (r, a),
            _ => {
                return Err(TaskError::failed(
                    AGENT_FAILED,
                    format!("instance {}/{} was not rendered", g.name, i.id),
                ));
            }
        };
        let spec = apply_spec_build(
            &self.plan.name,
            g,
            i,
            self.sources,
            self.compiled,
            rendered,
            archive,
        );
        let mut vm = match self.vm(i.id) {
            Some(vm) => vm,
            None => self.vm_create(g, i).await?,
        };
        let fresh = self
            .fresh
            .lock()
            .map(|f| f.contains(&i.id))
            .unwrap_or(false);
        let name = format!("{}/{}", g.name, i.id);
        if !fresh {
            let agent = vm.agent_id.to_string();
            self.instance_stop(&agent, &name, &spec, i.change == Change::Recreate)
                .await?;
            if i.change == Change::Recreate {
                self.disk_detach(&vm, &agent).await;
                vms::vm_delete(db, self.services, &vm).await.map_err(|e| {
                    TaskError::failed(
                        AGENT_FAILED,
                        format!("Deleting VM '{}' of '{name}': {}", vm.cid, error_chain(&e)),
                    )
                })?;
                if let Ok(mut v) = self.vms.lock() {
                    v.remove(&i.id);
                }
                if let (Some(id), Ok(mut u)) = (agent_id, used.lock()) {
                    u.insert(id);
                }
                vm = self.vm_create_as(g, i, agent_id).await?;
            }
        }
        let agent = vm.agent_id.to_string();
        let new_vm = fresh || i.change == Change::Recreate;
        self.disk_update(g, i, row, &vm, &agent, new_vm).await?;
        if i.change != Change::Restart || new_vm {
            client
                .apply(&agent, &spec)
                .await
                .map_err(|e| agent_failed(&format!("Applying to '{name}'"), &e))?;
        }
        let watch = if canary {
            g.update.canary_watch_time
        } else {
            g.update.update_watch_time
        };
        // A stopped instance gets its new jobs but stays stopped (`bosh stop`).
        if i.state == InstanceState::Started {
            repair::jobs_start(
                self.ctx,
                self.services,
                &agent,
                &name,
                (watch.min, watch.max),
            )
            .await?;
        }
        if let Ok(mut f) = self.fresh.lock() {
            f.remove(&i.id);
        }
        let state = existing_after_apply(g, i, Some(&vm.cid), Some(&rendered.configuration_hash));
        persist::instance_applied_save(db, row, &spec, &state, self.variable_set).await?;
        Ok(())
    }

    /// pre-stop → drain → stop → post-stop on a running instance.
    async fn instance_stop(
        &self,
        agent: &str,
        name: &str,
        next_spec: &Value,
        vm_goes: bool,
    ) -> Result<(), TaskError> {
        let drain = (!self.skip_drain).then_some(DrainType::Update);
        let next = repair::NextState {
            vm_goes,
            instance_goes: false,
            deployment_goes: false,
        };
        repair::jobs_stop(self.services, agent, name, Some(next_spec), drain, next).await
    }

    /// Brings the instance's persistent disk to what the plan wants, in disk_manager.rb's
    /// order: a new VM first gets the current disk back (attached and mounted); a new size or
    /// new cloud properties create a disk, mount it at the migration target and migrate the
    /// data onto it; the disk left behind (replaced or no longer wanted) is unmounted,
    /// detached and orphaned, never deleted.
    async fn disk_update(
        &self,
        g: &InstanceGroupPlan,
        i: &InstancePlan,
        row: i64,
        vm: &Vm,
        agent: &str,
        new_vm: bool,
    ) -> Result<(), TaskError> {
        let current = self.rows.get(&i.id).and_then(|r| r.disk.clone());
        let want = g.persistent_disk.as_ref();
        let changed = match (&current, want) {
            (None, None) => return Ok(()),
            (Some(c), Some(w)) => {
                self.recreate_persistent_disks
                    || c.size != w.size
                    || as_map(&c.cloud_properties) != as_map(&w.cloud_properties)
            }
            _ => true,
        };
        let name = format!("{}/{}", g.name, i.id);
        // The old VM's disk was detached before it went; a new VM mounts it again.
        let mut old_attached = !new_vm;
        if let (Some(c), Some(_), true) = (&current, want, new_vm) {
            self.disk_attach(vm, agent, &c.cid).await?;
            old_attached = true;
        }
        if !changed {
            return Ok(());
        }
        if let Some(w) = want {
            let cpi = self.services.cpi()?;
            let props = as_map(&w.cloud_properties);
            let cid: DiskCid = cpi
                .create_disk(CreateDiskArgs {
                    size_mib: w.size,
                    cloud_properties: props.clone(),
                    vm_cid: Some(vm.cid.clone()),
                })
                .await
                .map_err(|e| {
                    TaskError::failed(
                        AGENT_FAILED,
                        format!("Creating a disk for '{name}': {}", error_chain(&e)),
                    )
                })?;
            let id = persist::disk_insert(
                self.ctx.db(),
                row,
                cid.as_str(),
                w.size,
                &Value::Object(props),
            )
            .await?;
            let moved = async {
                self.disk_attach(vm, agent, &cid).await?;
                if current.is_some() && old_attached {
                    // Copies `store` onto the new disk and mounts it at `store`.
                    self.services
                        .agents()?
                        .client()
                        .call(
                            agent,
                            "migrate_disk",
                            vec![
                                json!(current.as_ref().map(|c| c.cid.as_str())),
                                json!(cid.as_str()),
                            ],
                        )
                        .await
                        .map_err(|e| {
                            agent_failed(&format!("Migrating the disk of '{name}'"), &e)
                        })?;
                }
                Ok::<(), TaskError>(())
            }
            .await;
            if let Err(e) = moved {
                // The new disk is kept as an orphan; the old one stays the instance's disk.
                self.disk_unmount_detach(vm, agent, &cid).await;
                persist::disk_orphan(
                    self.ctx.db(),
                    row,
                    cid.as_str(),
                    &self.plan.name,
                    &name,
                    i.az.as_deref(),
                )
                .await?;
                return Err(e);
            }
            persist::disk_activate(self.ctx.db(), row, id).await?;
        }
        if let Some(c) = current {
            if old_attached {
                self.disk_unmount_detach(vm, agent, &c.cid).await;
            }
            persist::disk_orphan(
                self.ctx.db(),
                row,
                c.cid.as_str(),
                &self.plan.name,
                &name,
                i.az.as_deref(),
            )
            .await?;
        }
        Ok(())
    }

    async fn disk_attach(&self, vm: &Vm, agent: &str, cid: &DiskCid) -> Result<(), TaskError> {
        repair::disk_attach(self.services, vm, agent, cid).await
    }

    async fn disk_unmount_detach(&self, vm: &Vm, agent: &str, cid: &DiskCid) {
        repair::disk_unmount_detach(self.services, vm, Some(agent), cid).await
    }

    /// Unmounts and detaches the instance's disk before its VM goes; best effort, the CPI's
    /// delete_vm detaches what is left.
    async fn disk_detach(&self, vm: &Vm, agent: &str) {
        let Some(disk) = self
            .rows
            .values()
            .find(|r| r.vm.as_ref().map(|v| v.id) == Some(vm.id))
            .and_then(|r| r.disk.clone())
        else {
            return;
        };
        self.disk_unmount_detach(vm, agent, &disk.cid).await;
    }

    /// Stops and deletes instances the plan no longer wants; their disks become orphans and
    /// their IPs are released.
    pub async fn obsolete_delete(&self, obsolete: &[ObsoleteInstance]) -> Result<(), TaskError> {
        if obsolete.is_empty() {
            return Ok(());
        }
        let stage = self.ctx.events().stage(
            "Deleting unneeded instances",
            &[],
            Some(obsolete.len() as u32),
        );
        let db = self.ctx.db();
        for o in obsolete {
            self.ctx.checkpoint().await?;
            let name = format!("{}/{}", o.group, o.id);
            let t = stage.task(&format!("{name} ({})", o.index));
            let result = async {
                let row = self.rows.get(&o.id);
                if let Some(vm) = row.and_then(|r| r.vm.as_ref()).map(vm_of) {
                    let agent = vm.agent_id.to_string();
                    let client = self.services.agents()?.client();
                    // An unresponsive agent must not keep its VM alive.
                    if client.ping(&agent).await.is_ok() {
                        if !self.skip_drain {
                            let _ = client
                                .drain(&agent, DrainType::Shutdown, None::<&Value>)
                                .await;
                        }
                        let _ = client.stop(&agent).await;
                    }
                    self.disk_detach(&vm, &agent).await;
                    vms::vm_delete(db, self.services, &vm).await.map_err(|e| {
                        TaskError::failed(
                            AGENT_FAILED,
                            format!("Deleting VM '{}' of '{name}': {}", vm.cid, error_chain(&e)),
                        )
                    })?;
                }
                if let Ok(mut v) = self.vms.lock() {
                    v.remove(&o.id);
                }
                if let Some(row) = row {
                    persist::disks_orphan(db, row.id, &self.plan.name, &name, o.az.as_deref())
                        .await?;
                    persist::instance_row_delete(db, row.id).await?;
                }
                Ok::<(), TaskError>(())
            }
            .await;
            match result {
                Ok(()) => t.finished(),
                Err(e) => {
                    t.failed(&e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `post-deploy` on every instance with a VM.
    pub async fn post_deploy(&self) -> Result<(), TaskError> {
        let client = self.services.agents()?.client();
        let vms: Vec<(InstanceId, Vm)> = self
            .vms
            .lock()
            .map(|v| v.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default();
        let none = BTreeMap::new();
        let results = join_all(vms.iter().map(|(id, vm)| {
            let none = &none;
            async move {
                client
                    .run_script(&vm.agent_id.to_string(), "post-deploy", none)
                    .await
                    .map_err(|e| agent_failed(&format!("post-deploy of instance {id}"), &e))
            }
        }))
        .await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }
}
