//! Problem types, their resolutions (names, plans, automatic choice, as the Ruby director's
//! problem handlers) and the `problems` table.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::db::{Db, DbError, now_secs};

/// What a scan can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemType {
    MissingVm,
    UnresponsiveAgent,
    MissingDisk,
    InactiveDisk,
    MountInfoMismatch,
}

/// Every resolution a problem may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Ignore,
    RebootVm,
    RecreateVmWithoutWait,
    RecreateVm,
    DeleteVm,
    DeleteVmReference,
    DeleteDiskReference,
    DeleteDisk,
    ActivateDisk,
    ReattachDisk,
    ReattachDiskAndReboot,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Ignore => "ignore",
            Resolution::RebootVm => "reboot_vm",
            Resolution::RecreateVmWithoutWait => "recreate_vm_without_wait",
            Resolution::RecreateVm => "recreate_vm",
            Resolution::DeleteVm => "delete_vm",
            Resolution::DeleteVmReference => "delete_vm_reference",
            Resolution::DeleteDiskReference => "delete_disk_reference",
            Resolution::DeleteDisk => "delete_disk",
            Resolution::ActivateDisk => "activate_disk",
            Resolution::ReattachDisk => "reattach_disk",
            Resolution::ReattachDiskAndReboot => "reattach_disk_and_reboot",
        }
    }
}

/// A resolution as `GET /problems` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolutionView {
    pub name: String,
    pub plan: String,
}

impl ProblemType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemType::MissingVm => "missing_vm",
            ProblemType::UnresponsiveAgent => "unresponsive_agent",
            ProblemType::MissingDisk => "missing_disk",
            ProblemType::InactiveDisk => "inactive_disk",
            ProblemType::MountInfoMismatch => "mount_info_mismatch",
        }
    }

    pub fn parse(s: &str) -> Option<ProblemType> {
        [
            ProblemType::MissingVm,
            ProblemType::UnresponsiveAgent,
            ProblemType::MissingDisk,
            ProblemType::InactiveDisk,
            ProblemType::MountInfoMismatch,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Resolutions in the order offered (the first is the default) with their plans.
    pub fn resolutions(self) -> &'static [(Resolution, &'static str)] {
        use Resolution::*;
        const SKIP: &str = "Skip for now";
        const RECREATE_NO_WAIT: &str = "Recreate VM without waiting for processes to start";
        const RECREATE: &str = "Recreate VM and wait for processes to start";
        match self {
            ProblemType::MissingVm => &[
                (Ignore, SKIP),
                (RecreateVmWithoutWait, RECREATE_NO_WAIT),
                (RecreateVm, RECREATE),
                (DeleteVmReference, "Delete VM reference"),
            ],
            ProblemType::UnresponsiveAgent => &[
                (Ignore, SKIP),
                (RebootVm, "Reboot VM"),
                (RecreateVmWithoutWait, RECREATE_NO_WAIT),
                (RecreateVm, RECREATE),
                (DeleteVm, "Delete VM"),
                (
                    DeleteVmReference,
                    "Delete VM reference (forceful; may need to manually delete VM from the \
                     Cloud to avoid IP conflicts)",
                ),
            ],
            ProblemType::MissingDisk => &[
                (Ignore, SKIP),
                (DeleteDiskReference, "Delete disk reference (DANGEROUS!)"),
            ],
            ProblemType::InactiveDisk => &[
                (Ignore, SKIP),
                (DeleteDisk, "Delete disk"),
                (ActivateDisk, "Activate disk"),
            ],
            ProblemType::MountInfoMismatch => &[
                (Ignore, "Ignore"),
                (ReattachDisk, "Reattach disk to instance"),
                (ReattachDiskAndReboot, "Reattach disk and reboot instance"),
            ],
        }
    }

    /// What `null` in `PUT /problems` means (Ruby's `auto_resolution`).
    pub fn auto_resolution(self) -> Resolution {
        match self {
            ProblemType::MissingVm => Resolution::RecreateVmWithoutWait,
            _ => Resolution::Ignore,
        }
    }

    /// A resolution of this type by name.
    pub fn resolution(self, name: &str) -> Option<(Resolution, &'static str)> {
        self.resolutions()
            .iter()
            .copied()
            .find(|(r, _)| r.as_str() == name)
    }

    pub fn resolution_views(self) -> Vec<ResolutionView> {
        self.resolutions()
            .iter()
            .map(|(r, plan)| ResolutionView {
                name: r.as_str().to_owned(),
                plan: (*plan).to_owned(),
            })
            .collect()
    }

    pub fn is_disk_problem(self) -> bool {
        matches!(
            self,
            ProblemType::MissingDisk | ProblemType::InactiveDisk | ProblemType::MountInfoMismatch
        )
    }
}

/// What a scan found: a problem type on a resource (an instance uuid or a disk cid).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub kind: ProblemType,
    pub resource_id: String,
    pub instance_id: i64,
    pub data: Value,
}

/// A `problems` row.
#[derive(Debug, Clone)]
pub struct ProblemRecord {
    pub id: i64,
    pub deployment: String,
    pub kind: String,
    pub resource_id: String,
    pub instance_id: Option<i64>,
    pub data: Value,
    pub state: String,
    pub counter: i64,
}

type Row = (
    i64,
    String,
    String,
    String,
    Option<i64>,
    String,
    String,
    i64,
);

fn record(r: Row) -> ProblemRecord {
    ProblemRecord {
        id: r.0,
        deployment: r.1,
        kind: r.2,
        resource_id: r.3,
        instance_id: r.4,
        data: serde_json::from_str(&r.5).unwrap_or(Value::Null),
        state: r.6,
        counter: r.7,
    }
}

const COLUMNS: &str = "id, deployment, type, resource_id, instance_id, data, state, counter";

/// Open problems of a deployment, oldest first.
pub async fn problem_list_open(db: &Db, deployment: &str) -> Result<Vec<ProblemRecord>, DbError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM problems WHERE deployment = $1 AND state = 'open' ORDER BY id"
    ))
    .bind(deployment)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(record).collect())
}

pub async fn problem_fetch(db: &Db, id: i64) -> Result<Option<ProblemRecord>, DbError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM problems WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(record))
}

/// Records what a scan found. A problem still open from an earlier scan is seen again
/// (`counter` + 1), not duplicated; open problems of the scanned instances (all of the
/// deployment's when `scanned` is `None`) that were not found again are closed.
pub async fn problems_register(
    db: &Db,
    deployment: &str,
    found: &[Found],
    scanned: Option<&BTreeSet<i64>>,
) -> Result<(), DbError> {
    let now = now_secs();
    let open = problem_list_open(db, deployment).await?;
    let mut kept = BTreeSet::new();
    for f in found {
        let existing = open
            .iter()
            .find(|p| p.kind == f.kind.as_str() && p.resource_id == f.resource_id);
        match existing {
            Some(p) => {
                sqlx::query(
                    "UPDATE problems SET counter = counter + 1, last_seen_at = $1, data = $2 \
                     WHERE id = $3",
                )
                .bind(now)
                .bind(f.data.to_string())
                .bind(p.id)
                .execute(db.pool())
                .await?;
                kept.insert(p.id);
            }
            None => {
                sqlx::query(
                    "INSERT INTO problems (deployment, type, resource_id, instance_id, data, \
                     state, counter, created_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, 'open', 1, $6, $6)",
                )
                .bind(deployment)
                .bind(f.kind.as_str())
                .bind(&f.resource_id)
                .bind(f.instance_id)
                .bind(f.data.to_string())
                .bind(now)
                .execute(db.pool())
                .await?;
            }
        }
    }
    for p in open {
        let in_scope = scanned.is_none_or(|s| p.instance_id.is_some_and(|i| s.contains(&i)));
        if in_scope && !kept.contains(&p.id) {
            problem_state_save(db, p.id, "closed", None).await?;
        }
    }
    Ok(())
}

/// `state`: open | resolved | closed; `resolution` is the name applied.
pub async fn problem_state_save(
    db: &Db,
    id: i64,
    state: &str,
    resolution: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE problems SET state = $1, resolution = COALESCE($2, resolution) WHERE id = $3",
    )
    .bind(state)
    .bind(resolution)
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}
