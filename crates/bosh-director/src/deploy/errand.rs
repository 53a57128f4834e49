//! A dedicated errand group (`lifecycle: errand`) made ready to run: the deployment's stored
//! manifest planned with the current configs, cut down to the errand group (handled as a
//! service group from here on, so the deploy's steps apply unchanged), its instance rows and
//! IPs persisted, its properties interpolated with the deployment's variable set, its
//! packages compiled and its templates rendered. [`ErrandGroup::vms_update`] then creates
//! and applies its VMs with the deploy's updater (a VM kept alive is reused when unchanged).

use bosh_planner::{Change, DeploymentPlan, InstancePlan, PlanOptions, RandomIds};
use bosh_types::ids::InstanceId;
use bosh_types::manifest::Lifecycle;
use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::apply_spec::CompiledPackages;
use super::inputs::{self, DeployContext, Loaded};
use super::render::{self, InstanceRendered, JobSource};
use super::{PLAN_FAILED, VARIABLES_FAILED, persist, update};
use crate::config_server::ConfigServer;
use crate::error::error_chain;
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError};

/// Plans a deployment's stored manifest with the current configs, as a deploy would, without
/// touching anything.
pub async fn plan_load(
    db: &crate::db::Db,
    manifest: &str,
) -> Result<(Loaded, DeploymentPlan), TaskError> {
    let loaded = inputs::plan_input_load(
        db,
        manifest,
        &DeployContext::default(),
        PlanOptions::default(),
    )
    .await?;
    let plan = bosh_planner::plan(&loaded.input, &mut RandomIds).map_err(|e| {
        TaskError::failed(PLAN_FAILED, format!("Deployment manifest is invalid:\n{e}"))
    })?;
    Ok((loaded, plan))
}

/// One errand group, planned, persisted, compiled and rendered.
pub struct ErrandGroup {
    /// The plan holding only the errand group, as a service group.
    pub plan: DeploymentPlan,
    pub loaded: Loaded,
    pub ids: HashMap<InstanceId, i64>,
    pub sources: HashMap<(String, String), JobSource>,
    pub compiled: CompiledPackages,
    pub rendered: HashMap<InstanceId, InstanceRendered>,
    pub variable_set: Option<i64>,
}

impl ErrandGroup {
    /// Cuts `plan` down to `group` and prepares it (rows, IPs, variables, compile, render).
    pub async fn prepare(
        ctx: &TaskContext,
        services: &Services,
        director_name: &str,
        loaded: Loaded,
        plan: &DeploymentPlan,
        group: &str,
    ) -> Result<ErrandGroup, TaskError> {
        let db = ctx.db();
        let mut plan = plan.clone();
        plan.instance_groups.retain(|g| g.name == group);
        let prefix = format!("{group}/");
        plan.ip_reservations_new
            .retain(|r| r.instance.starts_with(&prefix));
        plan.ip_reservations_released.clear();
        plan.instances_to_delete.clear();
        // The deploy generated and pinned them; a run only interpolates.
        plan.variables.clear();
        for g in &mut plan.instance_groups {
            g.lifecycle = Lifecycle::Service;
            for i in &mut g.instances {
                let has_vm = loaded.rows.get(&i.id).is_some_and(|r| r.vm.is_some());
                // An errand VM deleted after its last run comes back.
                if !has_vm && i.change == Change::None {
                    i.change = Change::Create;
                }
            }
        }

        // Rows and IPs stay after the run (as Ruby's errand instances do).
        let mut added = persist::Added::default();
        let ids = persist::instance_rows_insert(db, &plan, &loaded.rows, &mut added).await?;
        persist::ips_reserve(db, &plan, &ids, ctx.id.0, &mut added).await?;

        let failed = |e: crate::config_server::ConfigServerError| {
            TaskError::failed(VARIABLES_FAILED, error_chain(&e))
        };
        let cs = ConfigServer::open(db.clone(), &services.data_dir, director_name)
            .await
            .map_err(failed)?;
        let set = match cs
            .variable_set_last_successful(&plan.name)
            .await
            .map_err(failed)?
        {
            Some(s) => s,
            None => match cs.variable_set_current(&plan.name).await.map_err(failed)? {
                Some(s) => s,
                None => cs
                    .variable_set_create(&plan.name, true)
                    .await
                    .map_err(failed)?,
            },
        };
        let job_inputs = super::variables_resolve(&cs, &set, &plan, false).await?;
        let sources = render::job_sources_load(ctx, services, &plan).await?;
        let compiled = super::packages_compile(ctx, services, &plan, &loaded.input).await?;
        let rendered = render::instances_render(&plan, &sources, &job_inputs).await?;
        // A changed configuration updates a kept VM.
        for g in &mut plan.instance_groups {
            for i in &mut g.instances {
                let Some(r) = rendered.get(&i.id) else {
                    continue;
                };
                let old = loaded
                    .input
                    .current
                    .iter()
                    .find(|e| e.id == i.id)
                    .and_then(|e| e.applied.as_ref())
                    .and_then(|a| a.configuration_hash.clone());
                i.change = bosh_planner::instance_change_with_config(
                    i.change,
                    &mut i.reasons,
                    old.as_deref(),
                    &r.configuration_hash,
                );
            }
        }
        Ok(ErrandGroup {
            plan,
            loaded,
            ids,
            sources,
            compiled,
            rendered,
            variable_set: Some(set.id.0),
        })
    }

    /// The group's instances, lowest index first.
    pub fn instances(&self) -> Vec<&InstancePlan> {
        let mut out: Vec<&InstancePlan> = self
            .plan
            .instance_groups
            .iter()
            .flat_map(|g| &g.instances)
            .collect();
        out.sort_by_key(|i| i.index);
        out
    }

    /// What the instance would run with: its id, rendered configuration and packages (Ruby's
    /// errand `state_hash` inputs).
    pub fn instance_state_hash(&self, id: InstanceId) -> String {
        let mut digest = Sha1::new();
        digest.update(id.to_string());
        if let Some(r) = self.rendered.get(&id) {
            digest.update(&r.configuration_hash);
        }
        for g in &self.plan.instance_groups {
            for p in &g.packages {
                digest.update(format!("{}/{}/{};", p.release, p.name, p.fingerprint));
            }
        }
        hex::encode(digest.finalize())
    }

    /// Uploads the archives of instances that change, then creates missing VMs and applies
    /// and starts them ("Creating missing vms", "Updating instance").
    pub async fn vms_update(
        &self,
        ctx: &TaskContext,
        services: &Services,
        director_name: &str,
    ) -> Result<(), TaskError> {
        let archives =
            super::archives_upload(ctx, services, &self.plan, &self.ids, &self.rendered).await?;
        let updater = update::Updater {
            ctx,
            services,
            plan: &self.plan,
            director_name,
            ids: &self.ids,
            rows: &self.loaded.rows,
            sources: &self.sources,
            compiled: &self.compiled,
            rendered: &self.rendered,
            archives: &archives,
            skip_drain: false,
            recreate_persistent_disks: false,
            variable_set: self.variable_set,
            vms: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashSet::new()),
        };
        updater.vms_from_rows();
        updater.missing_vms_create().await?;
        updater.groups_update().await
    }
}
