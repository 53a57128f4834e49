//! The cloud-check task types: `cck_scan` ("scan cloud"), `cck_apply` ("apply resolutions")
//! and `cck_scan_and_fix` ("scan and fix", the resurrector's).

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use super::ScanAndFixPayload;
use super::problems::{self, ProblemRecord, ProblemType, Resolution};
use super::resolutions::{self, ResolveError};
use super::scan;
use crate::locks::LockSpec;
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob};

pub const SCAN: &str = "cck_scan";
pub const APPLY: &str = "cck_apply";
/// Instances repaired at once.
pub const PARALLEL_REPAIRS: usize = 10;
/// Ruby's `ProblemHandlerError` surfaces as a plain task error.
const RESOLUTION_FAILED: u32 = 100;
/// Ruby's `DeploymentNotFound`.
const DEPLOYMENT_NOT_FOUND: u32 = 70000;

async fn deployment_require(ctx: &TaskContext, name: &str) -> Result<(), TaskError> {
    if crate::deployments::deployment_fetch(ctx.db(), name)
        .await?
        .is_none()
    {
        return Err(TaskError::failed(
            DEPLOYMENT_NOT_FOUND,
            format!("Deployment '{name}' doesn't exist"),
        ));
    }
    Ok(())
}

fn deployment_of(payload: &Value) -> Result<String, TaskError> {
    payload["deployment"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TaskError::failed(40001, "The task names no deployment"))
}

/// `cck_scan`: every instance and persistent disk of a deployment.
pub struct ScanJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for ScanJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let dep = deployment_of(&payload)?;
        ctx.lock(&LockSpec::deployment(&dep)).await?;
        deployment_require(ctx, &dep).await?;
        let found = scan::deployment_scan(ctx, &self.services, &dep, None, true).await?;
        problems::problems_register(ctx.db(), &dep, &found, None).await?;
        Ok("scan complete".to_owned())
    }

    fn resumable(&self) -> bool {
        true
    }
}

#[derive(Debug, Deserialize)]
struct ApplyPayload {
    deployment: String,
    #[serde(default)]
    resolutions: BTreeMap<String, Option<String>>,
    #[serde(default)]
    max_in_flight_overrides: BTreeMap<String, Value>,
}

/// `cck_apply`: the resolutions the user chose (`null`: the problem type's automatic one).
pub struct ApplyJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for ApplyJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let p: ApplyPayload = serde_json::from_value(payload).map_err(|e| {
            TaskError::failed(
                40001,
                format!("Invalid format for resolutions, Hash expected: {e}"),
            )
        })?;
        ctx.lock(&LockSpec::deployment(&p.deployment)).await?;
        deployment_require(ctx, &p.deployment).await?;
        let parallel = max_in_flight(&p.max_in_flight_overrides);
        let (count, errors) = resolutions_apply(
            ctx,
            &self.services,
            &p.deployment,
            &p.resolutions,
            parallel,
            true,
        )
        .await?;
        if let Some(message) = errors {
            return Err(TaskError::failed(RESOLUTION_FAILED, message));
        }
        Ok(format!("{count} resolved"))
    }
}

/// The largest numeric `max_in_flight_overrides` value bounds the parallelism (the overrides
/// are per instance group; the repairs here share one pool).
fn max_in_flight(overrides: &BTreeMap<String, Value>) -> usize {
    overrides
        .values()
        .filter_map(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .max()
        .map(|n| (n as usize).max(1))
        .unwrap_or(PARALLEL_REPAIRS)
}

/// Repairs at once in a scan-and-fix: the largest `max_in_flight` of the named groups' update
/// policies (resolved against each group's size, as a deploy does), never below
/// [`PARALLEL_REPAIRS`]: a storm of losses in a group deployed 100 at a time is repaired as
/// fast, one lost VM costs no more than before. A manifest that does not parse gives the floor.
fn repair_parallelism<'a>(manifest: &str, groups: impl Iterator<Item = (&'a str, u32)>) -> usize {
    let Ok(m) = bosh_types::manifest::Manifest::parse(manifest) else {
        return PARALLEL_REPAIRS;
    };
    groups
        .filter_map(|(name, size)| {
            let g = m.instance_groups.iter().find(|g| g.name == name)?;
            let update = g
                .update
                .as_ref()
                .map(|u| u.with_defaults(&m.update))
                .unwrap_or_else(|| m.update.clone());
            Some(update.max_in_flight?.resolve(size) as usize)
        })
        .max()
        .unwrap_or(0)
        .max(PARALLEL_REPAIRS)
}

/// `cck_scan_and_fix`: the named instances' VMs are scanned and lost ones recreated.
pub struct ScanAndFixJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for ScanAndFixJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let p: ScanAndFixPayload = serde_json::from_value(payload)
            .map_err(|e| TaskError::failed(40001, format!("Invalid scan and fix request: {e}")))?;
        let dep = p.deployment.clone();
        ctx.lock(&LockSpec::deployment(&dep)).await?;
        deployment_require(ctx, &dep).await?;

        let all = crate::repair::instance_list(ctx.db(), &dep).await?;
        let mut ids = BTreeSet::new();
        for (group, wanted) in &p.jobs {
            for w in wanted {
                let inst = all.iter().find(|i| {
                    &i.record.group == group
                        && (&i.record.uuid == w || &i.record.index.to_string() == w)
                });
                match inst {
                    Some(i) if i.record.ignored => {
                        ctx.info(&format!("Skipping ignored instance {}", i.display()))
                    }
                    Some(i) => {
                        ids.insert(i.record.id);
                    }
                    None => ctx.info(&format!("No instance '{group}/{w}' in '{dep}'")),
                }
            }
        }
        let found = scan::deployment_scan(ctx, &self.services, &dep, Some(&ids), false).await?;
        problems::problems_register(ctx.db(), &dep, &found, Some(&ids)).await?;

        let recreate: BTreeMap<String, Option<String>> =
            problems::problem_list_open(ctx.db(), &dep)
                .await?
                .into_iter()
                .filter(|pr| pr.instance_id.is_some_and(|i| ids.contains(&i)))
                .filter(|pr| {
                    matches!(
                        ProblemType::parse(&pr.kind),
                        Some(ProblemType::MissingVm | ProblemType::UnresponsiveAgent)
                    )
                })
                .map(|pr| {
                    (
                        pr.id.to_string(),
                        Some(Resolution::RecreateVm.as_str().to_owned()),
                    )
                })
                .collect();
        let manifest = crate::deployments::deployment_fetch(ctx.db(), &dep)
            .await?
            .map(|d| d.manifest)
            .unwrap_or_default();
        let parallel = repair_parallelism(
            &manifest,
            p.jobs.keys().map(|group| {
                let size = all.iter().filter(|i| &i.record.group == group).count();
                (group.as_str(), u32::try_from(size).unwrap_or(u32::MAX))
            }),
        );
        // The scan just saw these agents fail to answer: no second ping before repairing.
        let (_, errors) =
            resolutions_apply(ctx, &self.services, &dep, &recreate, parallel, false).await?;
        if let Some(message) = errors {
            return Err(TaskError::failed(RESOLUTION_FAILED, message));
        }
        Ok("scan and fix complete".to_owned())
    }
}

/// One problem's outcome.
enum Outcome {
    Resolved,
    /// Resolved, with an error to report (Ruby's handler errors).
    ResolvedWithError(String),
    Failed(String),
    Skipped,
}

/// Applies resolutions by problem id, instances in parallel (one instance's problems one
/// after the other). Returns how many problems were resolved and the errors, one per line.
pub async fn resolutions_apply(
    ctx: &TaskContext,
    services: &Services,
    deployment: &str,
    resolutions: &BTreeMap<String, Option<String>>,
    parallel: usize,
    validate: bool,
) -> Result<(usize, Option<String>), TaskError> {
    let mut records: Vec<ProblemRecord> = Vec::new();
    for id in resolutions.keys() {
        if let Ok(n) = id.parse::<i64>()
            && let Some(p) = problems::problem_fetch(ctx.db(), n).await?
        {
            records.push(p);
        }
    }
    let stage = ctx.events().stage(
        "Applying problem resolutions",
        &[],
        Some(records.len() as u32),
    );
    let descriptions: BTreeMap<i64, String> = scan::problem_view_list(ctx.db(), deployment)
        .await?
        .into_iter()
        .map(|v| (v.id, v.description))
        .collect();
    let mut by_instance: BTreeMap<Option<i64>, Vec<ProblemRecord>> = BTreeMap::new();
    for r in records {
        by_instance.entry(r.instance_id).or_default().push(r);
    }
    let stage = &stage;
    let descriptions = &descriptions;
    let outcomes: Vec<Vec<(i64, Outcome)>> = futures::stream::iter(by_instance.into_values())
        .map(|list| async move {
            let mut out = Vec::new();
            for p in list {
                let name = resolutions.get(&p.id.to_string()).cloned().flatten();
                let o = problem_resolve(
                    ctx,
                    services,
                    stage,
                    deployment,
                    &p,
                    name.as_deref(),
                    descriptions.get(&p.id).map(String::as_str),
                    validate,
                )
                .await;
                out.push((p.id, o));
            }
            out
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let mut outcomes: Vec<(i64, Outcome)> = outcomes.into_iter().flatten().collect();
    outcomes.sort_by_key(|(id, _)| *id);
    let mut count = 0;
    let mut errors = Vec::new();
    for (id, o) in outcomes {
        match o {
            Outcome::Resolved => count += 1,
            Outcome::ResolvedWithError(e) => {
                count += 1;
                errors.push(format!("Error resolving problem '{id}': {e}"));
            }
            Outcome::Failed(e) => errors.push(format!("Error resolving problem '{id}': {e}")),
            Outcome::Skipped => {}
        }
    }
    Ok((count, (!errors.is_empty()).then(|| errors.join("\n"))))
}

#[allow(clippy::too_many_arguments)]
async fn problem_resolve(
    ctx: &TaskContext,
    services: &Services,
    stage: &crate::tasks::events::Stage,
    deployment: &str,
    p: &ProblemRecord,
    name: Option<&str>,
    description: Option<&str>,
    validate: bool,
) -> Outcome {
    if p.state != "open" {
        stage
            .task(&format!(
                "Ignoring problem {} (state is '{}')",
                p.id, p.state
            ))
            .finished();
        return Outcome::Skipped;
    }
    if p.deployment != deployment {
        stage
            .task(&format!(
                "Ignoring problem {} (not a part of this deployment)",
                p.id
            ))
            .finished();
        return Outcome::Skipped;
    }
    let Some(kind) = ProblemType::parse(&p.kind) else {
        return Outcome::Failed(format!("Cannot find handler for '{}' problem", p.kind));
    };
    let chosen = match name {
        None => {
            let auto = kind.auto_resolution();
            kind.resolution(auto.as_str())
        }
        Some(n) => kind.resolution(n),
    };
    let summary = format!(
        "{} ({} {})",
        description.unwrap_or(&p.kind),
        p.kind,
        p.resource_id
    );
    let plan = chosen.map(|(_, plan)| plan).unwrap_or("no resolution");
    let t = stage.task(&format!("{summary}: {plan}"));
    let result = match chosen {
        None => Err(ResolveError::Handler(format!(
            "Cannot find '{}' resolution for '{}'",
            name.unwrap_or_default(),
            p.kind
        ))),
        Some((resolution, _)) => {
            let r =
                resolutions::resolution_apply(ctx, services, p, kind, resolution, validate).await;
            let inst_name = resolutions::problem_instance(ctx, p)
                .await
                .map(|i| i.name())
                .unwrap_or_else(|_| p.resource_id.clone());
            let err = r.as_ref().err().map(ToString::to_string);
            resolutions::resolution_event_create(ctx, p, &inst_name, resolution, err).await;
            r.map(|()| resolution)
        }
    };
    match result {
        Ok(resolution) => {
            t.finished();
            match problems::problem_state_save(
                ctx.db(),
                p.id,
                "resolved",
                Some(resolution.as_str()),
            )
            .await
            {
                Ok(()) => Outcome::Resolved,
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        Err(ResolveError::Handler(msg)) => {
            t.failed(&msg);
            match problems::problem_state_save(ctx.db(), p.id, "resolved", None).await {
                Ok(()) => Outcome::ResolvedWithError(msg),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        Err(ResolveError::Failed(e)) => {
            let msg = e.to_string();
            t.failed(&msg);
            Outcome::Failed(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "\
name: dep
releases: [{name: r, version: '1'}]
stemcells: [{alias: default, os: ubuntu, version: '1'}]
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: web
  instances: 200
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: []
  update: {max_in_flight: 50%}
- name: db
  instances: 3
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: []
";

    #[test]
    fn repairs_run_as_wide_as_the_widest_named_group_allows() {
        assert_eq!(
            repair_parallelism(MANIFEST, [("web", 200)].into_iter()),
            100
        );
        // A narrow group keeps today's floor.
        assert_eq!(
            repair_parallelism(MANIFEST, [("db", 3)].into_iter()),
            PARALLEL_REPAIRS
        );
        assert_eq!(
            repair_parallelism(MANIFEST, [("db", 3), ("web", 40)].into_iter()),
            20
        );
        assert_eq!(
            repair_parallelism("not: [a manifest", [("web", 200)].into_iter()),
            PARALLEL_REPAIRS
        );
    }
}
