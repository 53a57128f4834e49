//! Day-2: persistent and orphaned disks (director-api.md §5.11).
//!
//! A persistent disk leaves its instance as an *orphan* (a row in `orphan_disks`) when the
//! deployment is deleted, the manifest drops or replaces it, or `bosh orphan-disk` says so.
//! Orphans keep their data until `bosh delete-disk` or `bosh clean-up --all` deletes them
//! through the CPI, or `bosh attach-disk` makes one an instance's disk again.
//!
//! Task types, as the Ruby director names them: `delete_orphan_disks`, `orphan_disk`,
//! `attach_disk` (and `delete_artifacts` for clean-up, in [`crate::cleanup`]).

use async_trait::async_trait;
use bosh_cpi::protocol::CpiErrorKind;
use bosh_types::ids::DiskCid;
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::db::{Db, DbError, now_secs};
use crate::error::error_chain;
use crate::events::{NewEvent, event_create};
use crate::locks::LockSpec;
use crate::repair;
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob, TaskRegistry};

pub const DELETE_ORPHAN_DISKS: &str = "delete_orphan_disks";
pub const ORPHAN_DISK: &str = "orphan_disk";
pub const ATTACH_DISK: &str = "attach_disk";

/// Ruby's `DeletingPersistentDiskError`.
pub const DELETING_PERSISTENT_DISK: u32 = 520000;
/// Ruby's `AttachDiskErrorUnknownInstance`.
pub const ATTACH_UNKNOWN_INSTANCE: u32 = 520001;
/// Ruby's `AttachDiskInvalidInstanceState`.
pub const ATTACH_INVALID_STATE: u32 = 520003;

/// Registers this component's task types (and clean-up's).
pub fn tasks_register(registry: &mut TaskRegistry, services: &Services, _director_name: &str) {
    let services = services.clone();
    registry.register(
        DELETE_ORPHAN_DISKS,
        Arc::new(DeleteOrphanDisksJob {
            services: services.clone(),
        }),
    );
    registry.register(
        ORPHAN_DISK,
        Arc::new(OrphanDiskJob {
            services: services.clone(),
        }),
    );
    registry.register(
        ATTACH_DISK,
        Arc::new(AttachDiskJob {
            services: services.clone(),
        }),
    );
    crate::cleanup::tasks_register(registry, &services);
}

/// An element of `GET /disks`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrphanDiskView {
    pub disk_cid: String,
    pub size: u64,
    pub az: Option<String>,
    pub deployment_name: String,
    pub instance_name: String,
    pub cloud_properties: Value,
    /// Ruby's `Time#to_s` in UTC: `2016-01-09 06:23:25 +0000`.
    pub orphaned_at: String,
}

/// Ruby's `Time#to_s` of a UTC time.
pub fn ruby_time_text(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S +0000")
        .to_string()
}

type OrphanRow = (
    String,
    i64,
    Option<String>,
    String,
    String,
    String,
    String,
    i64,
);

const ORPHAN_COLUMNS: &str = "cid, size, availability_zone, deployment, instance_name, \
                              cloud_properties, cpi, created_at";

fn orphan_view(r: OrphanRow) -> OrphanDiskView {
    OrphanDiskView {
        disk_cid: r.0,
        size: u64::try_from(r.1).unwrap_or(0),
        az: r.2.filter(|a| !a.is_empty()),
        deployment_name: r.3,
        instance_name: r.4,
        cloud_properties: serde_json::from_str(&r.5).unwrap_or_else(|_| json!({})),
        orphaned_at: ruby_time_text(r.7),
    }
}

/// Every orphaned disk, oldest first.
pub async fn orphan_disk_list(db: &Db) -> Result<Vec<OrphanDiskView>, DbError> {
    let rows: Vec<OrphanRow> = sqlx::query_as(&format!(
        "SELECT {ORPHAN_COLUMNS} FROM orphan_disks ORDER BY created_at, id"
    ))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(orphan_view).collect())
}

pub async fn orphan_disk_fetch(db: &Db, cid: &str) -> Result<Option<OrphanDiskView>, DbError> {
    let row: Option<OrphanRow> = sqlx::query_as(&format!(
        "SELECT {ORPHAN_COLUMNS} FROM orphan_disks WHERE cid = $1"
    ))
    .bind(cid)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(orphan_view))
}

/// An orphaned disk to record.
#[derive(Debug, Clone)]
pub struct NewOrphanDisk<'a> {
    pub cid: &'a str,
    /// MiB.
    pub size: i64,
    pub az: Option<&'a str>,
    pub deployment: &'a str,
    /// `group/uuid`
    pub instance_name: &'a str,
    /// JSON object text.
    pub cloud_properties: &'a str,
    /// Unix seconds.
    pub orphaned_at: i64,
}

/// Records an orphaned disk (a cid already recorded stays as it is).
pub async fn orphan_disk_insert<'e, E>(ex: E, d: &NewOrphanDisk<'_>) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO orphan_disks (cid, size, availability_zone, deployment, instance_name, \
         cloud_properties, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (cid) DO NOTHING",
    )
    .bind(d.cid)
    .bind(d.size)
    .bind(d.az)
    .bind(d.deployment)
    .bind(d.instance_name)
    .bind(d.cloud_properties)
    .bind(d.orphaned_at)
    .execute(ex)
    .await?;
    Ok(())
}

/// Whether `cid` is some instance's persistent disk.
pub async fn persistent_disk_exists(db: &Db, cid: &str) -> Result<bool, DbError> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM persistent_disks WHERE cid = $1")
        .bind(cid)
        .fetch_one(db.pool())
        .await?;
    Ok(n > 0)
}

/// Deletes an orphaned disk through the CPI, then its row. A disk the CPI no longer knows
/// counts as deleted; an unknown cid is nothing to do (as Ruby). Returns whether a row went.
pub async fn orphan_disk_delete(
    ctx: &TaskContext,
    services: &Services,
    cid: &str,
) -> Result<bool, TaskError> {
    if orphan_disk_fetch(ctx.db(), cid).await?.is_none() {
        ctx.info(&format!("Disk not found: {cid}"));
        return Ok(false);
    }
    ctx.info(&format!("Deleting orphan disk: {cid}"));
    if let Ok(disk) = DiskCid::new(cid.to_owned()) {
        let cpi = services.task_cpi(ctx)?;
        match cpi.delete_disk(&disk).await {
            Ok(()) => {}
            Err(e) if e.is(CpiErrorKind::DiskNotFound) => {
                ctx.info(&format!("Disk not found in IaaS: {cid}"));
            }
            Err(e) => {
                return Err(TaskError::failed(
                    100,
                    format!("Deleting disk '{cid}': {}", error_chain(&e)),
                ));
            }
        }
    }
    sqlx::query("DELETE FROM orphan_disks WHERE cid = $1")
        .bind(cid)
        .execute(ctx.db().pool())
        .await
        .map_err(DbError::from)?;
    Ok(true)
}

/// A persistent disk row with what orphaning it needs of its instance.
struct DiskOwner {
    disk_id: i64,
    size: i64,
    cloud_properties: String,
    deployment: String,
    instance_id: i64,
    instance_name: String,
    az: Option<String>,
}

/// disk id, size, cloud properties, deployment, instance id, group, uuid, az
type OwnerRow = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
);

async fn disk_owner_fetch(db: &Db, cid: &str) -> Result<Option<DiskOwner>, DbError> {
    let row: Option<OwnerRow> = sqlx::query_as(
        "SELECT d.id, d.size, d.cloud_properties, i.deployment, i.id, i.instance_group, \
             i.uuid, i.az FROM persistent_disks d JOIN instances i ON i.id = d.instance_id \
             WHERE d.cid = $1",
    )
    .bind(cid)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(
        |(disk_id, size, cloud_properties, deployment, instance_id, group, uuid, az)| DiskOwner {
            disk_id,
            size,
            cloud_properties,
            deployment,
            instance_id,
            instance_name: format!("{group}/{uuid}"),
            az,
        },
    ))
}

/// Moves a persistent disk's row to `orphan_disks` in one transaction, with Ruby's
/// `delete disk` event pair. The caller has detached it.
async fn disk_row_orphan(ctx: &TaskContext, cid: &str, owner: &DiskOwner) -> Result<(), TaskError> {
    let db = ctx.db();
    let base = NewEvent {
        user: ctx.user.clone(),
        action: "delete".into(),
        object_type: "disk".into(),
        object_name: Some(cid.to_owned()),
        task: Some(ctx.id.to_string()),
        deployment: Some(owner.deployment.clone()),
        instance: Some(owner.instance_name.clone()),
        ..NewEvent::default()
    };
    let parent = event_create(db, &base).await?;
    let outcome: Result<(), DbError> = async {
        let mut tx = db.pool().begin().await?;
        let orphan = NewOrphanDisk {
            cid,
            size: owner.size,
            az: owner.az.as_deref(),
            deployment: &owner.deployment,
            instance_name: &owner.instance_name,
            cloud_properties: &owner.cloud_properties,
            orphaned_at: now_secs(),
        };
        orphan_disk_insert(&mut *tx, &orphan).await?;
        sqlx::query("DELETE FROM persistent_disks WHERE id = $1")
            .bind(owner.disk_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    let end = NewEvent {
        parent_id: Some(parent),
        error: outcome.as_ref().err().map(|e| error_chain(e)),
        ..base
    };
    event_create(db, &end).await?;
    outcome?;
    ctx.info(&format!("Orphaning disk: '{cid}'"));
    Ok(())
}

/// Unmounts (when the agent answers) and detaches `cid` from the instance's VM, if it has one.
async fn disk_detach_from_instance(
    services: &Services,
    inst: Option<&repair::Instance>,
    cid: &str,
) {
    let (Some(inst), Ok(disk)) = (inst, DiskCid::new(cid.to_owned())) else {
        return;
    };
    let Some(vm) = &inst.vm else {
        return;
    };
    let agent = vm.agent_id.to_string();
    let alive = repair::agent_responsive(services, &agent).await;
    repair::disk_unmount_detach(services, vm, alive.then_some(agent.as_str()), &disk).await;
}

// ---------------------------------------------------------------------------------------
// delete_orphan_disks

/// `delete_orphan_disks`: payload `{"orphan_disk_cids": [...]}` (`bosh delete-disk`).
pub struct DeleteOrphanDisksJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for DeleteOrphanDisksJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let cids: Vec<String> = payload["orphan_disk_cids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let stage = ctx
            .events()
            .stage("Deleting orphaned disks", &[], Some(cids.len() as u32));
        for cid in &cids {
            ctx.checkpoint().await?;
            let t = stage.task(&format!("Deleting orphaned disk {cid}"));
            match orphan_disk_delete(ctx, &self.services, cid).await {
                Ok(_) => t.finished(),
                Err(e) => {
                    t.failed(&e.to_string());
                    return Err(e);
                }
            }
        }
        Ok(format!("orphaned disk(s) {} deleted", cids.join(", ")))
    }
}

// ---------------------------------------------------------------------------------------
// orphan_disk

/// `orphan_disk`: payload `{"disk_cid"}` (`bosh orphan-disk`). Under the deployment's lock
/// the disk is unmounted (when the agent answers) and detached from the instance's VM, then
/// becomes an orphan; the instance is left without a persistent disk.
pub struct OrphanDiskJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for OrphanDiskJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let cid = payload["disk_cid"].as_str().unwrap_or_default().to_owned();
        let Some(owner) = disk_owner_fetch(ctx.db(), &cid).await? else {
            ctx.info(&format!("disk {cid} does not exist"));
            return Ok(format!("disk {cid} orphaned"));
        };
        ctx.lock(&LockSpec::deployment(&owner.deployment)).await?;
        ctx.checkpoint().await?;
        // Read again under the lock: a deploy may have moved it meanwhile.
        let Some(owner) = disk_owner_fetch(ctx.db(), &cid).await? else {
            return Ok(format!("disk {cid} orphaned"));
        };
        let inst = repair::instance_list(ctx.db(), &owner.deployment)
            .await?
            .into_iter()
            .find(|i| i.record.id == owner.instance_id);
        disk_detach_from_instance(&self.services, inst.as_ref(), &cid).await;
        disk_row_orphan(ctx, &cid, &owner).await?;
        Ok(format!("disk {cid} orphaned"))
    }
}

// ---------------------------------------------------------------------------------------
// attach_disk

/// `attach_disk`: payload `{"deployment", "job", "instance_id", "disk_cid",
/// "disk_properties"?}` (`bosh attach-disk`).
///
/// As Ruby's AttachDisk: the instance must exist, not be ignored, and be stopped or
/// detached. Its current disk (if any) is detached and orphaned; the new disk (an orphan,
/// or a cid only the CPI knows, recorded with size 1 or with the old disk's size and cloud
/// properties under `disk_properties: copy`) becomes its active persistent disk, and a
/// stopped instance's VM gets it attached and mounted.
pub struct AttachDiskJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for AttachDiskJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let text = |k: &str| payload[k].as_str().unwrap_or_default().to_owned();
        let (deployment, group, id, cid) = (
            text("deployment"),
            text("job"),
            text("instance_id"),
            text("disk_cid"),
        );
        let copy = payload["disk_properties"].as_str() == Some("copy");
        ctx.lock(&LockSpec::deployment(&deployment)).await?;
        ctx.checkpoint().await?;
        let unknown = || {
            TaskError::failed(
                ATTACH_UNKNOWN_INSTANCE,
                format!("Instance '{group}/{id}' in deployment '{deployment}' was not found"),
            )
        };
        let inst = repair::instance_fetch(ctx.db(), &deployment, &group, &id)
            .await?
            .ok_or_else(unknown)?;
        if inst.record.ignored {
            return Err(TaskError::failed(
                ATTACH_INVALID_STATE,
                format!(
                    "Instance '{group}/{id}' in deployment '{deployment}' is in 'ignore' state. \
                     Attaching disks to ignored instances is not allowed."
                ),
            ));
        }
        let stopped = inst.record.state == "stopped";
        if !stopped && inst.record.state != "detached" {
            return Err(TaskError::failed(
                ATTACH_INVALID_STATE,
                format!(
                    "Instance '{group}/{id}' in deployment '{deployment}' must be in \
                     'bosh stopped' state"
                ),
            ));
        }
        let target = DiskCid::new(cid.clone()).map_err(|e| {
            TaskError::failed(ATTACH_UNKNOWN_INSTANCE, format!("Disk CID '{cid}': {e}"))
        })?;

        let mut size = 1_i64;
        let mut cloud_properties = "{}".to_owned();
        if let Some(previous) = &inst.disk
            && previous.as_str() != cid
            && let Some(owner) = disk_owner_fetch(ctx.db(), previous.as_str()).await?
        {
            if copy {
                size = owner.size;
                cloud_properties = owner.cloud_properties.clone();
            }
            if stopped {
                disk_detach_from_instance(&self.services, Some(&inst), previous.as_str()).await;
            }
            disk_row_orphan(ctx, previous.as_str(), &owner).await?;
        }

        let db = ctx.db();
        match orphan_disk_fetch(db, &cid).await? {
            Some(orphan) => {
                let mut tx = db.pool().begin().await.map_err(DbError::from)?;
                sqlx::query(
                    "INSERT INTO persistent_disks (instance_id, cid, size, cloud_properties, \
                     active, created_at) VALUES ($1, $2, $3, $4, 1, $5)",
                )
                .bind(inst.record.id)
                .bind(&cid)
                .bind(i64::try_from(orphan.size).unwrap_or(i64::MAX))
                .bind(orphan.cloud_properties.to_string())
                .bind(now_secs())
                .execute(&mut *tx)
                .await
                .map_err(DbError::from)?;
                sqlx::query("DELETE FROM orphan_disks WHERE cid = $1")
                    .bind(&cid)
                    .execute(&mut *tx)
                    .await
                    .map_err(DbError::from)?;
                tx.commit().await.map_err(DbError::from)?;
            }
            None if persistent_disk_exists(db, &cid).await? => {
                if inst.disk.as_ref().map(DiskCid::as_str) != Some(cid.as_str()) {
                    return Err(TaskError::failed(
                        DELETING_PERSISTENT_DISK,
                        format!("Disk '{cid}' is the persistent disk of another instance"),
                    ));
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO persistent_disks (instance_id, cid, size, cloud_properties, \
                     active, created_at) VALUES ($1, $2, $3, $4, 1, $5)",
                )
                .bind(inst.record.id)
                .bind(&cid)
                .bind(size)
                .bind(&cloud_properties)
                .bind(now_secs())
                .execute(db.pool())
                .await
                .map_err(DbError::from)?;
            }
        }

        if stopped && let Some(vm) = &inst.vm {
            let agent = vm.agent_id.to_string();
            repair::disk_attach(&self.services, vm, &agent, &target).await?;
        }
        Ok(format!(
            "attached disk '{cid}' to '{group}/{id}' in deployment '{deployment}'"
        ))
    }
}
