//! `bosh deploy` (design.md §4): under the deployment lock, plan; stop there on plan errors
//! (nothing touched) or a dry run (plan + render, every template error reported); else
//! persist the manifest, instance rows and IP reservations, generate and interpolate
//! variables through the config server with a variable set for this deploy, compile, render
//! every instance in one batch, and update (see [`update`]). A failure before any VM exists
//! takes back the rows and IPs this deploy added.

pub mod apply_spec;
pub mod errand;
pub mod inputs;
pub mod persist;
pub mod render;
pub mod update;

use async_trait::async_trait;
use bosh_planner::{Change, PlanOptions, RandomIds, instance_change_with_config};
use bosh_types::ids::InstanceId;
use bosh_types::manifest::Count;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::compile::{self, CompileRequest, ReleasePackages};
use crate::config_server::{ConfigServer, GenerateOpts, VariableSetId, VariableSpec};
use crate::deployments;
use crate::error::error_chain;
use crate::locks::LockSpec;
use crate::metrics::DeployPhase;
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob};
use apply_spec::{ArchiveRef, CompiledPackages};
use inputs::{DeployContext, MANIFEST_INVALID};
use render::{JobInput, RENDER_FAILED};

/// The task type of `POST /deployments`.
pub const DEPLOY: &str = "update_deployment";
/// Ruby's `DeploymentInvalid…` code for a manifest the planner rejects.
pub const PLAN_FAILED: u32 = 190014;
const VARIABLES_FAILED: u32 = 540003;

/// The task payload, from the query parameters of `POST /deployments`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeployPayload {
    pub name: String,
    pub manifest: String,
    #[serde(default)]
    pub recreate: bool,
    #[serde(default)]
    pub recreate_persistent_disks: bool,
    #[serde(default)]
    pub fix: bool,
    #[serde(default)]
    pub skip_drain: bool,
    #[serde(default)]
    pub canaries: Option<String>,
    #[serde(default)]
    pub max_in_flight: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force_latest_variables: bool,
    #[serde(default)]
    pub context: Option<DeployContext>,
}

pub struct DeployJob {
    pub services: Services,
    pub director_name: String,
    /// `deploy.vm_create_concurrency` of the director config.
    pub vm_create_concurrency: usize,
}

fn count_parse(what: &str, v: &Option<String>) -> Result<Option<Count>, TaskError> {
    v.as_deref()
        .map(|s| {
            s.parse::<Count>()
                .map_err(|_| TaskError::failed(MANIFEST_INVALID, format!("Invalid {what} '{s}'")))
        })
        .transpose()
}

#[async_trait]
impl TaskJob for DeployJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let p: DeployPayload = serde_json::from_value(payload)
            .map_err(|e| TaskError::failed(MANIFEST_INVALID, format!("deploy payload: {e}")))?;
        let name = p.name.clone();
        let exists = deployments::deployment_fetch(ctx.db(), &name)
            .await?
            .is_some();
        let action = if exists { "update" } else { "create" };
        crate::events::task_events_wrap(
            ctx,
            action,
            "deployment",
            Some(name.clone()),
            Map::new(),
            async { Ok((self.deploy(ctx, &p).await?, None)) },
        )
        .await
    }
}

impl DeployJob {
    async fn deploy(&self, ctx: &TaskContext, p: &DeployPayload) -> Result<String, TaskError> {
        let db = ctx.db();
        ctx.lock(&LockSpec::deployment(&p.name)).await?;
        ctx.checkpoint().await?;

        let prep = ctx.events().stage("Preparing deployment", &[], Some(1));
        let t = prep.task("Preparing deployment");
        let options = PlanOptions {
            recreate: p.recreate,
            recreate_persistent_disks: p.recreate_persistent_disks,
            fix: p.fix,
            restart: false,
            canaries: count_parse("canaries", &p.canaries)?,
            max_in_flight: count_parse("max_in_flight", &p.max_in_flight)?,
        };
        let metrics = &self.services.metrics;
        let phase_started = Instant::now();
        let planned = async {
            let loaded = inputs::plan_input_load(
                db,
                &p.manifest,
                &p.context.clone().unwrap_or_default(),
                options,
            )
            .await?;
            if loaded.input.manifest.name != p.name {
                return Err(TaskError::failed(
                    MANIFEST_INVALID,
                    format!(
                        "Manifest name '{}' does not match the deployment '{}'",
                        loaded.input.manifest.name, p.name
                    ),
                ));
            }
            let plan = bosh_planner::plan(&loaded.input, &mut RandomIds).map_err(|e| {
                TaskError::failed(PLAN_FAILED, format!("Deployment manifest is invalid:\n{e}"))
            })?;
            Ok((loaded, plan))
        }
        .await;
        let (loaded, mut plan) = match planned {
            Ok(x) => {
                t.finished();
                metrics.deploy_phase_observe(DeployPhase::Plan, phase_started.elapsed());
                x
            }
            Err(e) => {
                t.failed(&e.to_string());
                return Err(e);
            }
        };
        let result = format!("/deployments/{}", p.name);
        let sources = render::job_sources_load(ctx, &self.services, &plan).await?;

        if p.dry_run {
            let mut inputs = HashMap::new();
            for (key, v) in render::job_inputs(&plan) {
                inputs.insert(key, job_input_decode(v)?);
            }
            render::instances_render(&plan, &sources, &inputs).await?;
            ctx.info("Dry run: planned and rendered; nothing changed");
            return Ok(result);
        }

        deployments::deployment_upsert(db, &p.name, &p.manifest).await?;
        let mut added = persist::Added::default();
        let config_server =
            ConfigServer::open(db.clone(), &self.services.data_dir, &self.director_name)
                .await
                .map_err(|e| TaskError::failed(VARIABLES_FAILED, error_chain(&e)))?;
        let mut variable_set: Option<VariableSetId> = None;
        let outcome = async {
            let ids = persist::instance_rows_insert(db, &plan, &loaded.rows, &mut added).await?;
            persist::ips_reserve(db, &plan, &ids, ctx.id.0, &mut added).await?;

            let set = config_server
                .variable_set_create(&p.name, true)
                .await
                .map_err(|e| TaskError::failed(VARIABLES_FAILED, error_chain(&e)))?;
            variable_set = Some(set.id);
            let inputs =
                variables_resolve(&config_server, &set, &plan, p.force_latest_variables).await?;

            let phase_started = Instant::now();
            let compiled = packages_compile(ctx, &self.services, &plan, &loaded.input).await?;
            metrics.deploy_phase_observe(DeployPhase::Compile, phase_started.elapsed());
            let rendered = render::instances_render(&plan, &sources, &inputs).await?;
            // Fold the rendered configuration in: a changed hash updates the instance.
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
                    i.change = instance_change_with_config(
                        i.change,
                        &mut i.reasons,
                        old.as_deref(),
                        &r.configuration_hash,
                    );
                }
            }
            let archives = archives_upload(ctx, &self.services, &plan, &ids, &rendered).await?;

            let updater = update::Updater {
                ctx,
                services: &self.services,
                plan: &plan,
                director_name: &self.director_name,
                ids: &ids,
                rows: &loaded.rows,
                sources: &sources,
                compiled: &compiled,
                rendered: &rendered,
                archives: &archives,
                skip_drain: p.skip_drain,
                recreate_persistent_disks: p.recreate_persistent_disks,
                variable_set: Some(set.id.0),
                vms: Mutex::new(HashMap::new()),
                fresh: Mutex::new(HashSet::new()),
            };
            updater.vms_from_rows();
            updater.obsolete_delete(&plan.instances_to_delete).await?;
            let phase_started = Instant::now();
            updater
                .missing_vms_create_with(self.vm_create_concurrency)
                .await?;
            metrics.deploy_phase_observe(DeployPhase::CreateVms, phase_started.elapsed());
            let phase_started = Instant::now();
            updater.groups_update().await?;
            metrics.deploy_phase_observe(DeployPhase::Update, phase_started.elapsed());
            persist::ips_release(db, &plan).await?;
            let changed = !plan.instances_to_delete.is_empty()
                || render::service_groups(&plan)
                    .flat_map(|g| &g.instances)
                    .any(|i| i.change != Change::None);
            if changed {
                updater.post_deploy().await?;
            }
            Ok::<(), TaskError>(())
        }
        .await;
        if let Some(id) = variable_set {
            let _ = config_server.variable_set_finish(id, outcome.is_ok()).await;
        }
        if let Err(e) = outcome {
            if let Err(undo) = persist::added_undo(db, &added).await {
                tracing::error!(error = %error_chain(&undo), "undoing a failed deploy's rows");
            }
            return Err(e);
        }
        Ok(result)
    }
}

pub(crate) fn job_input_decode(v: Value) -> Result<JobInput, TaskError> {
    serde_json::from_value(v)
        .map_err(|e| TaskError::failed(RENDER_FAILED, format!("job properties: {e}")))
}

/// Generates the plan's variables into the deploy's set and interpolates every group job's
/// properties and links with it.
pub(crate) async fn variables_resolve(
    cs: &ConfigServer,
    set: &crate::config_server::VariableSet,
    plan: &bosh_planner::DeploymentPlan,
    force_latest: bool,
) -> Result<HashMap<(String, String), JobInput>, TaskError> {
    let failed = |e: crate::config_server::ConfigServerError| {
        TaskError::failed(VARIABLES_FAILED, error_chain(&e))
    };
    let specs = plan
        .variables
        .iter()
        .map(VariableSpec::from_manifest)
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    cs.variables_generate(
        set,
        &specs,
        GenerateOpts {
            converge: false,
            stemcell_change: force_latest,
        },
    )
    .await
    .map_err(failed)?;
    let mut out = HashMap::new();
    for ((group, job), v) in render::job_inputs(plan) {
        let v = cs.variables_interpolate(set, &v).await.map_err(|e| {
            TaskError::failed(
                VARIABLES_FAILED,
                format!(
                    "Failed to interpolate variables of job '{job}' in instance group '{group}': {}",
                    error_chain(&e)
                ),
            )
        })?;
        if let Some((path, placeholder)) = render::placeholder_find(&v, "") {
            return Err(TaskError::failed(
                VARIABLES_FAILED,
                format!(
                    "Variable '{placeholder}' of job '{job}' in instance group '{group}' was not resolved (at '{path}')"
                ),
            ));
        }
        out.insert((group, job), job_input_decode(v)?);
    }
    Ok(out)
}

/// Compiles (or finds cached) the packages of every service group, per stemcell.
pub(crate) async fn packages_compile(
    ctx: &TaskContext,
    services: &Services,
    plan: &bosh_planner::DeploymentPlan,
    input: &bosh_planner::PlanInput,
) -> Result<CompiledPackages, TaskError> {
    // stemcell → release version → package names
    type PackagesByRelease = HashMap<(String, String), Vec<String>>;
    let mut wanted: HashMap<(String, String), PackagesByRelease> = HashMap::new();
    for g in render::service_groups(plan) {
        let per = wanted
            .entry((g.stemcell.name.clone(), g.stemcell.version.clone()))
            .or_default();
        for pkg in &g.packages {
            let version = plan
                .releases
                .iter()
                .find(|r| r.name == pkg.release)
                .map(|r| r.version.clone())
                .unwrap_or_default();
            per.entry((pkg.release.clone(), version))
                .or_default()
                .push(pkg.name.clone());
        }
    }
    let mut out = CompiledPackages::new();
    let mut stemcells: Vec<_> = wanted.into_iter().collect();
    stemcells.sort_by(|a, b| a.0.cmp(&b.0));
    for ((sc_name, sc_version), releases) in stemcells {
        let mut releases: Vec<ReleasePackages> = releases
            .into_iter()
            .map(|((release, version), mut packages)| {
                packages.sort();
                packages.dedup();
                ReleasePackages {
                    release,
                    version,
                    packages: Some(packages),
                }
            })
            .collect();
        releases.sort_by(|a, b| a.release.cmp(&b.release));
        if releases
            .iter()
            .all(|r| r.packages.as_ref().is_none_or(Vec::is_empty))
        {
            continue;
        }
        let req = CompileRequest {
            deployment: plan.name.clone(),
            releases,
            stemcell_name: sc_name.clone(),
            stemcell_version: sc_version.clone(),
            cloud_config: input.cloud_config.clone(),
        };
        for c in compile::compile_packages(ctx, services, &req).await? {
            out.insert(
                (
                    sc_name.clone(),
                    sc_version.clone(),
                    c.release.clone(),
                    c.name.clone(),
                ),
                c,
            );
        }
    }
    Ok(out)
}

/// Uploads the rendered archive of every instance that will be applied.
pub(crate) async fn archives_upload(
    ctx: &TaskContext,
    services: &Services,
    plan: &bosh_planner::DeploymentPlan,
    ids: &HashMap<InstanceId, i64>,
    rendered: &HashMap<InstanceId, render::InstanceRendered>,
) -> Result<HashMap<InstanceId, ArchiveRef>, TaskError> {
    let mut out = HashMap::new();
    for g in render::service_groups(plan) {
        for i in g.instances.iter().filter(|i| i.change != Change::None) {
            let (Some(r), Some(row)) = (rendered.get(&i.id), ids.get(&i.id)) else {
                continue;
            };
            let id = uuid::Uuid::new_v4().to_string();
            let reader: crate::blobstore::BlobReader =
                Box::pin(std::io::Cursor::new(r.archive.bytes.clone()));
            services.blobstore.put(&id, reader).await.map_err(|e| {
                TaskError::failed(
                    RENDER_FAILED,
                    format!("Uploading rendered templates: {}", error_chain(&e)),
                )
            })?;
            persist::archive_record(ctx.db(), *row, &id, &r.archive.sha1, &r.configuration_hash)
                .await?;
            out.insert(
                i.id,
                ArchiveRef {
                    blobstore_id: id,
                    sha1: r.archive.sha1.clone(),
                },
            );
        }
    }
    Ok(out)
}
