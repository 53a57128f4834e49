//! Loading a plan's inputs from the database: the manifest, the cloud and runtime configs (by
//! the ids of the deploy's `context`, else the current ones), the uploaded releases and
//! stemcells, the deployment's instances as last recorded, and other deployments' IPs.

use bosh_planner::{
    ExistingDisk, ExistingInstance, ExistingVm, InstanceState, IpReservation, PlanInput,
    PlanOptions, ReleaseInput, ReleaseJob, ReleasePackage, StemcellInput, StemcellVersion,
};
use bosh_types::cloud_config::CloudConfig;
use bosh_types::ids::{AgentId, DiskCid, InstanceId, StemcellCid, VmCid};
use bosh_types::manifest::Manifest;
use bosh_types::release::JobSpec;
use bosh_types::runtime_config::RuntimeConfig;
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;

use crate::configs::{self, Config};
use crate::db::{Db, DbError};
use crate::releases;
use crate::stemcells;
use crate::tasks::runner::TaskError;

/// Ruby's `DeploymentInvalid`-family codes.
pub const MANIFEST_INVALID: u32 = 140003;
pub const CLOUD_CONFIG_MISSING: u32 = 140016;

/// Key of `instances.spec_json` holding what the planner needs next time (the apply spec's
/// own keys stay at the top level, as the agent saw them).
pub const STATE_KEY: &str = "bosh_rs_state";

/// The `context` query parameter of `POST /deployments`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeployContext {
    #[serde(default)]
    pub cloud_config_ids: Option<Vec<i64>>,
    #[serde(default)]
    pub runtime_config_ids: Option<Vec<i64>>,
}

/// A VM row of an instance.
#[derive(Debug, Clone)]
pub struct VmRow {
    pub id: i64,
    pub cid: VmCid,
    pub agent_id: AgentId,
}

/// An `instances` row with its VM and active persistent disk.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub id: i64,
    pub uuid: InstanceId,
    pub group: String,
    pub index: u32,
    pub vm: Option<VmRow>,
    pub disk: Option<ExistingDisk>,
    pub spec: Value,
}

/// Everything loaded for one deploy.
pub struct Loaded {
    pub input: PlanInput,
    pub rows: HashMap<InstanceId, InstanceRow>,
}

fn invalid(message: impl Into<String>) -> TaskError {
    TaskError::failed(MANIFEST_INVALID, message)
}

async fn configs_for(
    db: &Db,
    config_type: &str,
    ids: Option<&[i64]>,
) -> Result<Vec<Config>, TaskError> {
    match ids {
        Some(ids) => {
            let mut out = Vec::new();
            for id in ids {
                let c = configs::config_fetch(db, *id).await?.ok_or_else(|| {
                    invalid(format!("{config_type} config with id '{id}' doesn't exist"))
                })?;
                out.push(c);
            }
            Ok(out)
        }
        None => Ok(
            configs::config_list(db, Some(config_type), None, true, None)
                .await?
                .into_iter()
                .map(|(c, _)| c)
                .rev()
                .collect(),
        ),
    }
}

/// Parses the manifest and loads every other input of the plan.
pub async fn plan_input_load(
    db: &Db,
    manifest_text: &str,
    context: &DeployContext,
    options: PlanOptions,
) -> Result<Loaded, TaskError> {
    let manifest = Manifest::parse(manifest_text)
        .map_err(|e| invalid(format!("Manifest is invalid:\n{e}")))?;

    let clouds = configs_for(db, "cloud", context.cloud_config_ids.as_deref()).await?;
    if clouds.is_empty() {
        return Err(TaskError::failed(
            CLOUD_CONFIG_MISSING,
            "No cloud config: upload one with 'bosh update-cloud-config'",
        ));
    }
    let mut parsed = Vec::new();
    for c in &clouds {
        parsed.push(
            CloudConfig::parse(&c.content)
                .map_err(|e| invalid(format!("Cloud config '{}' is invalid:\n{e}", c.name)))?,
        );
    }
    let cloud_config = CloudConfig::merge(parsed)
        .map_err(|e| invalid(format!("Cloud configs do not merge:\n{e}")))?;

    let mut runtime_configs = Vec::new();
    for c in configs_for(db, "runtime", context.runtime_config_ids.as_deref()).await? {
        runtime_configs.push(
            RuntimeConfig::parse(&c.content)
                .map_err(|e| invalid(format!("Runtime config '{}' is invalid:\n{e}", c.name)))?,
        );
    }

    let mut names: Vec<String> = manifest.releases.iter().map(|r| r.name.clone()).collect();
    for rc in &runtime_configs {
        names.extend(rc.releases.iter().map(|r| r.name.clone()));
    }
    names.sort();
    names.dedup();
    let mut release_inputs = Vec::new();
    for name in &names {
        let Some(rid) = releases::release_id_fetch(db, name).await? else {
            continue;
        };
        for rv in releases::release_version_list(db, rid).await? {
            release_inputs.push(release_input_load(db, name, &rv).await?);
        }
    }

    let stemcell_inputs = stemcells::stemcell_list(db)
        .await?
        .into_iter()
        .filter_map(|s| {
            Some(StemcellInput {
                cid: StemcellCid::new(s.cid.clone()).ok()?,
                name: s.name,
                operating_system: s.operating_system,
                version: s.version,
                api_version: s.api_version,
            })
        })
        .collect();

    let rows = instance_rows_load(db, &manifest.name).await?;
    let current = rows.values().map(existing_instance).collect();

    let others: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT deployment, network_name, address FROM ip_addresses WHERE deployment <> $1",
    )
    .bind(&manifest.name)
    .fetch_all(db.pool())
    .await
    .map_err(DbError::from)?;
    let other_reservations = others
        .into_iter()
        .filter_map(|(deployment, network, ip)| {
            Some(IpReservation {
                deployment,
                network,
                ip: ip.parse().ok()?,
            })
        })
        .collect();

    Ok(Loaded {
        input: PlanInput {
            manifest,
            cloud_config,
            runtime_configs,
            releases: release_inputs,
            stemcells: stemcell_inputs,
            current,
            other_reservations,
            options,
        },
        rows,
    })
}

async fn release_input_load(
    db: &Db,
    name: &str,
    rv: &releases::ReleaseVersion,
) -> Result<ReleaseInput, TaskError> {
    let mut jobs = Vec::new();
    for t in releases::release_version_templates(db, rv.id).await? {
        let spec: JobSpec = serde_json::from_value(t.spec.clone()).map_err(|e| {
            invalid(format!(
                "Job '{}' of release '{name}/{}' has an unreadable spec: {e}",
                t.name, rv.version
            ))
        })?;
        jobs.push(ReleaseJob {
            name: t.name,
            version: t.version,
            sha1: Some(t.sha1),
            spec,
        });
    }
    let packages = releases::release_version_packages(db, rv.id)
        .await?
        .into_iter()
        .map(|p| ReleasePackage {
            name: p.name,
            version: p.version,
            fingerprint: p.fingerprint,
            dependencies: p.dependencies,
        })
        .collect();
    Ok(ReleaseInput {
        name: name.to_owned(),
        version: rv.version.clone(),
        jobs,
        packages,
    })
}

/// The deployment's instance rows, with their newest VM and active disk.
pub async fn instance_rows_load(
    db: &Db,
    deployment: &str,
) -> Result<HashMap<InstanceId, InstanceRow>, TaskError> {
    let rows = sqlx::query(
        "SELECT id, instance_group, uuid, instance_index, spec_json FROM instances \
         WHERE deployment = $1 ORDER BY id",
    )
    .bind(deployment)
    .fetch_all(db.pool())
    .await
    .map_err(DbError::from)?;
    let mut out = HashMap::new();
    for row in rows {
        let id: i64 = row.try_get("id").map_err(DbError::from)?;
        let uuid: String = row.try_get("uuid").map_err(DbError::from)?;
        let Ok(uuid) = uuid.parse::<InstanceId>() else {
            continue;
        };
        let index: i64 = row.try_get("instance_index").map_err(DbError::from)?;
        let spec: Option<String> = row.try_get("spec_json").map_err(DbError::from)?;
        let spec = spec
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(Value::Null);
        let vm: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, cid, agent_id FROM vms WHERE instance_id = $1 AND cid IS NOT NULL \
             AND compilation = 0 ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
        let vm = vm.and_then(|(vid, cid, agent)| {
            Some(VmRow {
                id: vid,
                cid: VmCid::new(cid).ok()?,
                agent_id: agent.parse().ok()?,
            })
        });
        let disk: Option<(String, i64, String)> = sqlx::query_as(
            "SELECT cid, size, cloud_properties FROM persistent_disks \
             WHERE instance_id = $1 AND active = 1 ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
        let disk = disk.and_then(|(cid, size, props)| {
            Some(ExistingDisk {
                cid: DiskCid::new(cid).ok()?,
                size: u64::try_from(size).ok()?,
                cloud_properties: serde_json::from_str(&props).unwrap_or(bosh_yaml::Value::Null),
            })
        });
        out.insert(
            uuid,
            InstanceRow {
                id,
                uuid,
                group: row.try_get("instance_group").map_err(DbError::from)?,
                index: u32::try_from(index).unwrap_or(0),
                vm,
                disk,
                spec,
            },
        );
    }
    Ok(out)
}

/// What the planner sees of a row: the recorded state with the VM and disk the database
/// holds now (a VM deleted since is missing, so the planner recreates it).
fn existing_instance(row: &InstanceRow) -> ExistingInstance {
    let recorded: Option<ExistingInstance> = row
        .spec
        .get(STATE_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let mut e = recorded.unwrap_or(ExistingInstance {
        group: row.group.clone(),
        id: row.uuid,
        index: row.index,
        az: None,
        bootstrap: false,
        state: InstanceState::Started,
        dirty: false,
        vm: None,
        networks: Default::default(),
        persistent_disk: None,
        applied: None,
    });
    e.vm = match (&row.vm, e.vm.take()) {
        (Some(v), Some(mut recorded)) => {
            recorded.cid = v.cid.clone();
            Some(recorded)
        }
        (Some(v), None) => Some(ExistingVm {
            cid: v.cid.clone(),
            stemcell: StemcellVersion {
                name: String::new(),
                version: String::new(),
            },
            cloud_properties: bosh_yaml::Value::Null,
            env: bosh_yaml::Value::Null,
        }),
        (None, _) => None,
    };
    e.persistent_disk = row.disk.clone();
    e
}
