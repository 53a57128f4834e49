//! The `locks` table: named leases held by a task, with an expiry renewed while the task runs.
//! An expired lock can be taken over, so a crashed director cannot hold one forever.

use serde::Serialize;
use sqlx::Row;

use crate::db::{Db, DbError, now_millis};
use crate::tasks::TaskId;

/// A lock as `GET /locks` shows it: `timeout` is Unix seconds as a string holding a float,
/// `task_id` a string (director-api §5.11).
#[derive(Debug, Clone, Serialize)]
pub struct LockView {
    #[serde(rename = "type")]
    pub lock_type: String,
    pub resource: Vec<String>,
    pub timeout: String,
    pub task_id: String,
}

/// What a lock protects, e.g. `deployment` + `["dep1"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSpec {
    pub lock_type: String,
    pub resource: Vec<String>,
}

impl LockSpec {
    pub fn deployment(name: &str) -> LockSpec {
        LockSpec {
            lock_type: "deployment".to_owned(),
            resource: vec![name.to_owned()],
        }
    }

    /// The unique name, as Ruby spells it: `lock:deployment:dep1`.
    pub fn name(&self) -> String {
        format!("lock:{}:{}", self.lock_type, self.resource.join(":"))
    }
}

/// Takes the lock for `task` unless another task holds an unexpired one. Re-acquiring a lock
/// the same task holds succeeds (and renews it).
pub async fn lock_acquire(
    db: &Db,
    spec: &LockSpec,
    task: TaskId,
    ttl_ms: i64,
) -> Result<bool, DbError> {
    let now = now_millis();
    let resource = serde_json::to_string(&spec.resource).unwrap_or_else(|_| "[]".to_owned());
    let done = sqlx::query(
        "INSERT INTO locks (name, type, resource, task_id, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET task_id = excluded.task_id, expires_at_ms = excluded.expires_at_ms \
         WHERE locks.expires_at_ms < $6 OR locks.task_id = excluded.task_id",
    )
    .bind(spec.name())
    .bind(&spec.lock_type)
    .bind(resource)
    .bind(task.0)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Extends every lock `task` holds.
pub async fn lock_renew_for_task(db: &Db, task: TaskId, ttl_ms: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE locks SET expires_at_ms = $1 WHERE task_id = $2")
        .bind(now_millis() + ttl_ms)
        .bind(task.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn lock_release(db: &Db, spec: &LockSpec, task: TaskId) -> Result<(), DbError> {
    sqlx::query("DELETE FROM locks WHERE name = $1 AND task_id = $2")
        .bind(spec.name())
        .bind(task.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

pub async fn lock_release_for_task(db: &Db, task: TaskId) -> Result<(), DbError> {
    sqlx::query("DELETE FROM locks WHERE task_id = $1")
        .bind(task.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Unexpired locks, oldest name first.
pub async fn lock_list(db: &Db) -> Result<Vec<LockView>, DbError> {
    let rows = sqlx::query(
        "SELECT type, resource, task_id, expires_at_ms FROM locks WHERE expires_at_ms >= $1 ORDER BY name",
    )
    .bind(now_millis())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let resource: String = row.try_get("resource")?;
            let expires: i64 = row.try_get("expires_at_ms")?;
            let task: i64 = row.try_get("task_id")?;
            Ok(LockView {
                lock_type: row.try_get("type")?,
                resource: serde_json::from_str(&resource).unwrap_or_default(),
                timeout: format!(
                    "{}.{:03}",
                    expires.div_euclid(1000),
                    expires.rem_euclid(1000)
                ),
                task_id: task.to_string(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Whether `deployment` is locked right now (for `GET /deployments`' `locked`).
pub async fn lock_is_held(db: &Db, spec: &LockSpec) -> Result<bool, DbError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT task_id FROM locks WHERE name = $1 AND expires_at_ms >= $2")
            .bind(spec.name())
            .bind(now_millis())
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}
