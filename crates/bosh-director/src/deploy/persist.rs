//! Deploy state in the database: instance rows, IP reservations, applied specs, disks.
//!
//! IPs are reserved before any VM is created. The UNIQUE (network, address) constraint of
//! `ip_addresses` decides between two deploys racing for one address: the loser's insert
//! does nothing and its deploy fails naming the address and its holder.

use bosh_planner::{DeploymentPlan, ExistingInstance};
use bosh_types::ids::InstanceId;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;

use super::inputs::{InstanceRow, STATE_KEY};
use super::render::service_groups;
use crate::db::{Db, DbError, now_secs};
use crate::tasks::runner::TaskError;

/// Ruby's `NetworkReservationAlreadyInUse`.
pub const IP_IN_USE: u32 = 130009;

/// What this deploy added, so a failure can take it back.
#[derive(Debug, Default)]
pub struct Added {
    /// `instances.id` of rows created by this deploy.
    pub instances: Vec<i64>,
    pub ips: Vec<(String, IpAddr)>,
}

fn spec_with_state(spec: &Value, state: &ExistingInstance) -> String {
    let mut spec = match spec {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    spec.insert(
        STATE_KEY.to_owned(),
        serde_json::to_value(state).unwrap_or(Value::Null),
    );
    Value::Object(spec).to_string()
}

/// Rows for the plan's new instances; returns every service instance's row id.
pub async fn instance_rows_insert(
    db: &Db,
    plan: &DeploymentPlan,
    rows: &HashMap<InstanceId, InstanceRow>,
    added: &mut Added,
) -> Result<HashMap<InstanceId, i64>, TaskError> {
    let mut ids: HashMap<InstanceId, i64> = rows.iter().map(|(k, r)| (*k, r.id)).collect();
    for g in service_groups(plan) {
        for i in &g.instances {
            if ids.contains_key(&i.id) {
                continue;
            }
            // Networks are recorded now so a redeploy after a failure keeps the same IPs.
            let state = super::apply_spec::existing_after_apply(g, i, None, None);
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO instances (deployment, instance_group, uuid, instance_index, az, \
                 bootstrap, state, spec_json, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING id",
            )
            .bind(&plan.name)
            .bind(&g.name)
            .bind(i.id.to_string())
            .bind(i64::from(i.index))
            .bind(i.az.clone())
            .bind(i64::from(i.bootstrap))
            .bind("started")
            .bind(spec_with_state(&Value::Null, &state))
            .bind(now_secs())
            .fetch_one(db.pool())
            .await
            .map_err(DbError::from)?;
            added.instances.push(id);
            ids.insert(i.id, id);
        }
    }
    Ok(ids)
}

/// Reserves the plan's new IPs for their instances.
pub async fn ips_reserve(
    db: &Db,
    plan: &DeploymentPlan,
    ids: &HashMap<InstanceId, i64>,
    task_id: i64,
    added: &mut Added,
) -> Result<(), TaskError> {
    for r in &plan.ip_reservations_new {
        let instance = r
            .instance
            .split_once('/')
            .and_then(|(_, id)| id.parse::<InstanceId>().ok())
            .and_then(|id| ids.get(&id).copied());
        let done = sqlx::query(
            "INSERT INTO ip_addresses (network_name, address, deployment, instance_id, static, \
             task_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (network_name, address) DO NOTHING",
        )
        .bind(&r.network)
        .bind(r.ip.to_string())
        .bind(&plan.name)
        .bind(instance)
        .bind(i64::from(r.is_static))
        .bind(task_id)
        .bind(now_secs())
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
        if done.rows_affected() == 1 {
            added.ips.push((r.network.clone(), r.ip));
            continue;
        }
        let holder: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT deployment, instance_id FROM ip_addresses WHERE network_name = $1 AND address = $2",
        )
        .bind(&r.network)
        .bind(r.ip.to_string())
        .fetch_optional(db.pool())
        .await
        .map_err(DbError::from)?;
        match holder {
            Some((d, inst)) if d == plan.name && (inst.is_none() || inst == instance) => {
                sqlx::query(
                    "UPDATE ip_addresses SET instance_id = $1 WHERE network_name = $2 AND address = $3",
                )
                .bind(instance)
                .bind(&r.network)
                .bind(r.ip.to_string())
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            }
            Some((d, _)) => {
                return Err(TaskError::failed(
                    IP_IN_USE,
                    format!(
                        "Failed to reserve IP '{}' for '{}' on network '{}': already in use by deployment '{d}'; deploy again to plan with it taken",
                        r.ip, r.instance, r.network
                    ),
                ));
            }
            None => {
                return Err(TaskError::failed(
                    IP_IN_USE,
                    format!(
                        "Failed to reserve IP '{}' on network '{}': it changed hands while reserving; deploy again",
                        r.ip, r.network
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Takes back what [`Added`] lists, for instances that never got a VM.
pub async fn added_undo(db: &Db, added: &Added) -> Result<(), DbError> {
    for id in &added.instances {
        let vms: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM vms WHERE instance_id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await?;
        let disks: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM persistent_disks WHERE instance_id = $1")
                .bind(id)
                .fetch_one(db.pool())
                .await?;
        if vms.0 == 0 && disks.0 == 0 {
            instance_row_delete(db, *id).await?;
        }
    }
    Ok(())
}

/// Deletes an instance row with its IP reservations and archive records.
pub async fn instance_row_delete(db: &Db, id: i64) -> Result<(), DbError> {
    for sql in [
        "DELETE FROM ip_addresses WHERE instance_id = $1",
        "DELETE FROM rendered_templates_archives WHERE instance_id = $1",
        "UPDATE vms SET instance_id = NULL WHERE instance_id = $1",
        "DELETE FROM instances WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(db.pool()).await?;
    }
    Ok(())
}

/// Records what an instance runs after a successful update.
pub async fn instance_applied_save(
    db: &Db,
    id: i64,
    apply_spec: &Value,
    state: &ExistingInstance,
    variable_set: Option<i64>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE instances SET spec_json = $1, update_completed = 1, bootstrap = $2, \
         variable_set_id = COALESCE($3, variable_set_id) WHERE id = $4",
    )
    .bind(spec_with_state(apply_spec, state))
    .bind(i64::from(state.bootstrap))
    .bind(variable_set)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Marks an instance as being updated (a failure leaves it dirty for the next plan).
pub async fn instance_dirty_mark(db: &Db, id: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE instances SET update_completed = 0 WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn archive_record(
    db: &Db,
    instance: i64,
    blobstore_id: &str,
    sha1: &str,
    content_sha1: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO rendered_templates_archives (instance_id, blobstore_id, sha1, content_sha1, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(instance)
    .bind(blobstore_id)
    .bind(sha1)
    .bind(content_sha1)
    .bind(now_secs())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Releases the IPs the plan no longer wants (their instance moved or went away).
pub async fn ips_release(db: &Db, plan: &DeploymentPlan) -> Result<(), DbError> {
    for r in &plan.ip_reservations_released {
        sqlx::query(
            "DELETE FROM ip_addresses WHERE network_name = $1 AND address = $2 AND deployment = $3",
        )
        .bind(&r.network)
        .bind(r.ip.to_string())
        .bind(&plan.name)
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

pub async fn disk_insert(
    db: &Db,
    instance: i64,
    cid: &str,
    size: u64,
    cloud_properties: &Value,
) -> Result<i64, DbError> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO persistent_disks (instance_id, cid, size, cloud_properties, active, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
    )
    .bind(instance)
    .bind(cid)
    .bind(i64::try_from(size).unwrap_or(i64::MAX))
    .bind(cloud_properties.to_string())
    .bind(now_secs())
    .fetch_one(db.pool())
    .await?;
    Ok(id)
}

/// Makes `id` the instance's only active disk, in one statement.
pub async fn disk_activate(db: &Db, instance: i64, id: i64) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE persistent_disks SET active = CASE WHEN id = $1 THEN 1 ELSE 0 END \
         WHERE instance_id = $2",
    )
    .bind(id)
    .bind(instance)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Moves an instance's disks to `orphan_disks` (removed disks are kept, not deleted).
pub async fn disks_orphan(
    db: &Db,
    instance: i64,
    deployment: &str,
    instance_name: &str,
    az: Option<&str>,
) -> Result<(), DbError> {
    disks_orphan_where(db, instance, None, deployment, instance_name, az).await
}

/// Moves one disk of an instance to `orphan_disks`.
pub async fn disk_orphan(
    db: &Db,
    instance: i64,
    cid: &str,
    deployment: &str,
    instance_name: &str,
    az: Option<&str>,
) -> Result<(), DbError> {
    disks_orphan_where(db, instance, Some(cid), deployment, instance_name, az).await
}

async fn disks_orphan_where(
    db: &Db,
    instance: i64,
    only: Option<&str>,
    deployment: &str,
    instance_name: &str,
    az: Option<&str>,
) -> Result<(), DbError> {
    let disks: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT cid, size, cloud_properties FROM persistent_disks WHERE instance_id = $1",
    )
    .bind(instance)
    .fetch_all(db.pool())
    .await?;
    for (cid, size, props) in disks {
        if only.is_some_and(|c| c != cid) {
            continue;
        }
        sqlx::query(
            "INSERT INTO orphan_disks (cid, size, availability_zone, deployment, instance_name, \
             cloud_properties, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (cid) DO NOTHING",
        )
        .bind(&cid)
        .bind(size)
        .bind(az)
        .bind(deployment)
        .bind(instance_name)
        .bind(props)
        .bind(now_secs())
        .execute(db.pool())
        .await?;
        sqlx::query("DELETE FROM persistent_disks WHERE instance_id = $1 AND cid = $2")
            .bind(instance)
            .bind(&cid)
            .execute(db.pool())
            .await?;
    }
    Ok(())
}
