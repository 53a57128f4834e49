//! The `tasks` table.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{TaskId, TaskState};
use crate::db::{Db, DbError, DbKind, now_secs};

/// A task row.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: TaskId,
    pub task_type: String,
    pub state: TaskState,
    pub description: String,
    pub payload: serde_json::Value,
    pub user: String,
    pub deployment: Option<String>,
    pub context_id: String,
    pub result: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// The task object of `GET /tasks/{id}` (director-api §3.3): ints for id and times.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub state: String,
    pub description: String,
    pub timestamp: Option<i64>,
    pub started_at: Option<i64>,
    pub result: Option<String>,
    pub user: String,
    pub deployment: Option<String>,
    pub context_id: String,
}

impl Task {
    pub fn view(&self) -> TaskView {
        TaskView {
            id: self.id.0,
            state: self.state.as_str().to_owned(),
            description: self.description.clone(),
            timestamp: self.finished_at,
            started_at: self.started_at,
            result: self.result.clone(),
            user: self.user.clone(),
            deployment: self.deployment.clone(),
            context_id: self.context_id.clone(),
        }
    }
}

/// What an endpoint needs to queue a task.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The registered [`super::runner::TaskJob`] name, e.g. `delete_deployment`.
    pub task_type: String,
    pub description: String,
    pub payload: serde_json::Value,
    pub user: String,
    pub deployment: Option<String>,
    pub context_id: String,
}

/// Filters of `GET /tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub states: Vec<TaskState>,
    pub deployment: Option<String>,
    pub context_id: Option<String>,
    /// Only these types; `None` for all.
    pub types: Option<Vec<String>>,
    pub limit: Option<i64>,
}

const COLUMNS: &str = "id, type, state, description, payload, username, deployment, context_id, \
                       result, created_at, started_at, finished_at";

fn task_from_row(row: &AnyRow) -> Result<Task, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let payload: String = row.try_get("payload")?;
    Ok(Task {
        id: TaskId(row.try_get("id")?),
        task_type: row.try_get("type")?,
        state: TaskState::parse(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".to_owned(),
            source: format!("unknown task state '{state}'").into(),
        })?,
        description: row.try_get("description")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        user: row.try_get("username")?,
        deployment: row.try_get("deployment")?,
        context_id: row.try_get("context_id")?,
        result: row.try_get("result")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Ruby trims the stored summary; the CLI shows it in `bosh tasks`.
fn result_summary(result: &str) -> String {
    const MAX: usize = 1024;
    if result.len() <= MAX {
        return result.to_owned();
    }
    let mut end = MAX;
    while !result.is_char_boundary(end) {
        end -= 1;
    }
    result[..end].to_owned()
}

pub async fn task_create(db: &Db, new: &NewTask) -> Result<Task, DbError> {
    let row = sqlx::query(&format!(
        "INSERT INTO tasks (type, state, description, payload, username, deployment, context_id, created_at) \
         VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(&new.task_type)
    .bind(&new.description)
    .bind(new.payload.to_string())
    .bind(&new.user)
    .bind(new.deployment.as_deref())
    .bind(&new.context_id)
    .bind(now_secs())
    .fetch_one(db.pool())
    .await?;
    Ok(task_from_row(&row)?)
}

pub async fn task_fetch(db: &Db, id: TaskId) -> Result<Option<Task>, DbError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tasks WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(task_from_row).transpose()?)
}

/// The SELECT of a task list, newest first, with its binds; `None` when nothing can match.
fn task_list_query(filter: &TaskFilter, columns: &str) -> Option<(String, Vec<String>)> {
    let mut sql = format!("SELECT {columns} FROM tasks WHERE 1 = 1");
    let mut binds: Vec<String> = Vec::new();
    let placeholder = |value: String, binds: &mut Vec<String>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    if !filter.states.is_empty() {
        let ps: Vec<String> = filter
            .states
            .iter()
            .map(|s| placeholder(s.as_str().to_owned(), &mut binds))
            .collect();
        sql.push_str(&format!(" AND state IN ({})", ps.join(", ")));
    }
    if let Some(types) = &filter.types {
        if types.is_empty() {
            return None;
        }
        let ps: Vec<String> = types
            .iter()
            .map(|t| placeholder(t.clone(), &mut binds))
            .collect();
        sql.push_str(&format!(" AND type IN ({})", ps.join(", ")));
    }
    if let Some(dep) = &filter.deployment {
        let p = placeholder(dep.clone(), &mut binds);
        sql.push_str(&format!(" AND deployment = {p}"));
    }
    if let Some(ctx) = &filter.context_id {
        let p = placeholder(ctx.clone(), &mut binds);
        sql.push_str(&format!(" AND context_id = {p}"));
    }
    sql.push_str(" ORDER BY id DESC");
    if let Some(limit) = filter.limit {
        sql.push_str(&format!(" LIMIT {}", limit.max(0)));
    }
    Some((sql, binds))
}

/// Newest first.
pub async fn task_list(db: &Db, filter: &TaskFilter) -> Result<Vec<Task>, DbError> {
    let Some((sql, binds)) = task_list_query(filter, COLUMNS) else {
        return Ok(Vec::new());
    };
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b.as_str());
    }
    let rows = query.fetch_all(db.pool()).await?;
    Ok(rows
        .iter()
        .map(task_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// `GET /tasks`: only the columns the view shows. The payload (which can hold a whole
/// manifest) and the rest cost most of a 10,000-task listing when fetched and decoded.
pub async fn task_view_list(db: &Db, filter: &TaskFilter) -> Result<Vec<TaskView>, DbError> {
    const VIEW_COLUMNS: &str = "id, state, description, username, deployment, context_id, \
                                result, started_at, finished_at";
    let Some((sql, binds)) = task_list_query(filter, VIEW_COLUMNS) else {
        return Ok(Vec::new());
    };
    let mut query = sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b.as_str());
    }
    let rows = query.fetch_all(db.pool()).await?;
    let view = |row: &AnyRow| -> Result<TaskView, sqlx::Error> {
        Ok(TaskView {
            id: row.try_get("id")?,
            state: row.try_get("state")?,
            description: row.try_get("description")?,
            timestamp: row.try_get("finished_at")?,
            started_at: row.try_get("started_at")?,
            result: row.try_get("result")?,
            user: row.try_get("username")?,
            deployment: row.try_get("deployment")?,
            context_id: row.try_get("context_id")?,
        })
    };
    Ok(rows.iter().map(view).collect::<Result<Vec<_>, _>>()?)
}

/// Atomically moves the oldest queued task to `processing` for `owner`.
pub async fn task_claim(db: &Db, owner: &str) -> Result<Option<Task>, DbError> {
    // One statement either way; PostgreSQL additionally skips rows another director process
    // has locked, so concurrent claimers never block on or double-claim a row.
    let pick = match db.kind() {
        DbKind::Sqlite => "SELECT id FROM tasks WHERE state = 'queued' ORDER BY id LIMIT 1",
        DbKind::Postgres => {
            "SELECT id FROM tasks WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
        }
    };
    let now = now_secs();
    let row = sqlx::query(&format!(
        "UPDATE tasks SET state = 'processing', started_at = $1, checkpoint_at = $1, owner = $2 \
         WHERE id = ({pick}) AND state = 'queued' RETURNING {COLUMNS}"
    ))
    .bind(now)
    .bind(owner)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.as_ref().map(task_from_row).transpose()?)
}

/// Ends a task run by `owner`. Returns false when the task was no longer ours (e.g. start-up
/// recovery of another director already ended it).
pub async fn task_finish(
    db: &Db,
    id: TaskId,
    owner: &str,
    state: TaskState,
    result: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE tasks SET state = $1, result = $2, finished_at = $3 \
         WHERE id = $4 AND owner = $5 AND state IN ('processing', 'cancelling')",
    )
    .bind(state.as_str())
    .bind(result_summary(result))
    .bind(now_secs())
    .bind(id.0)
    .bind(owner)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records liveness and returns the current state (to notice `cancelling`).
pub async fn task_checkpoint(db: &Db, id: TaskId) -> Result<Option<TaskState>, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("UPDATE tasks SET checkpoint_at = $1 WHERE id = $2 RETURNING state")
            .bind(now_secs())
            .bind(id.0)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.and_then(|(s,)| TaskState::parse(&s)))
}

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// A queued task is now `cancelled`.
    Cancelled,
    /// A running task is now `cancelling`; its job stops at the next checkpoint.
    Cancelling,
    /// Already finished or already cancelling.
    NotCancellable(TaskState),
    NotFound,
}

pub async fn task_cancel(db: &Db, id: TaskId) -> Result<CancelOutcome, DbError> {
    let queued = sqlx::query(
        "UPDATE tasks SET state = 'cancelled', finished_at = $1 WHERE id = $2 AND state = 'queued'",
    )
    .bind(now_secs())
    .bind(id.0)
    .execute(db.pool())
    .await?;
    if queued.rows_affected() == 1 {
        return Ok(CancelOutcome::Cancelled);
    }
    let running =
        sqlx::query("UPDATE tasks SET state = 'cancelling' WHERE id = $1 AND state = 'processing'")
            .bind(id.0)
            .execute(db.pool())
            .await?;
    if running.rows_affected() == 1 {
        return Ok(CancelOutcome::Cancelling);
    }
    Ok(match task_fetch(db, id).await? {
        Some(task) => CancelOutcome::NotCancellable(task.state),
        None => CancelOutcome::NotFound,
    })
}

/// Running tasks whose director is gone: on SQLite (one process) every `processing` or
/// `cancelling` task at start-up; on PostgreSQL those whose last checkpoint is older than
/// `stale_before`.
pub async fn task_list_orphaned(db: &Db, stale_before: Option<i64>) -> Result<Vec<Task>, DbError> {
    let rows = match stale_before {
        None => sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE state IN ('processing', 'cancelling') ORDER BY id"
        ))
        .fetch_all(db.pool())
        .await?,
        Some(t) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE state IN ('processing', 'cancelling') \
                 AND (checkpoint_at IS NULL OR checkpoint_at < $1) ORDER BY id"
            ))
            .bind(t)
            .fetch_all(db.pool())
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(task_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Ends an orphaned task (any owner) if it is still running; returns whether it did.
pub async fn task_end_orphan(
    db: &Db,
    id: TaskId,
    state: TaskState,
    result: &str,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE tasks SET state = $1, result = $2, finished_at = $3 \
         WHERE id = $4 AND state IN ('processing', 'cancelling')",
    )
    .bind(state.as_str())
    .bind(result_summary(result))
    .bind(now_secs())
    .bind(id.0)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts an orphaned task back in the queue (for task types that can resume).
pub async fn task_requeue(db: &Db, id: TaskId) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE tasks SET state = 'queued', owner = NULL WHERE id = $1 AND state = 'processing'",
    )
    .bind(id.0)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
