//! The `events` table behind `GET /events` (director-api §5.11): who did what to which object,
//! recorded by every task-creating action. A finished action records a second event whose
//! `parent_id` points at the first, carrying the error when it failed.

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{Db, DbError, now_secs};

/// What to record.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub parent_id: Option<i64>,
    pub user: String,
    pub action: String,
    pub object_type: String,
    pub object_name: Option<String>,
    pub task: Option<String>,
    pub deployment: Option<String>,
    pub instance: Option<String>,
    pub context: Map<String, Value>,
    pub error: Option<String>,
}

/// An event as the CLI reads it: `id`, `parent_id` and `task` are strings.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub timestamp: i64,
    pub user: String,
    pub action: String,
    pub object_type: String,
    pub object_name: Option<String>,
    pub task: Option<String>,
    pub deployment: Option<String>,
    pub instance: Option<String>,
    pub context: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Filters of `GET /events`; all optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub before_id: Option<i64>,
    pub before_time: Option<i64>,
    pub after_time: Option<i64>,
    pub deployment: Option<String>,
    pub task: Option<String>,
    pub instance: Option<String>,
    pub user: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_name: Option<String>,
}

const COLUMNS: &str = "id, parent_id, timestamp, username, action, object_type, object_name, \
                       task, deployment, instance, context, error";

fn event_from_row(row: &AnyRow) -> Result<EventView, sqlx::Error> {
    let context: String = row.try_get("context")?;
    Ok(EventView {
        id: row.try_get::<i64, _>("id")?.to_string(),
        parent_id: row
            .try_get::<Option<i64>, _>("parent_id")?
            .map(|p| p.to_string()),
        timestamp: row.try_get("timestamp")?,
        user: row.try_get("username")?,
        action: row.try_get("action")?,
        object_type: row.try_get("object_type")?,
        object_name: row.try_get("object_name")?,
        task: row.try_get("task")?,
        deployment: row.try_get("deployment")?,
        instance: row.try_get("instance")?,
        context: serde_json::from_str(&context).unwrap_or(Value::Object(Map::new())),
        error: row.try_get("error")?,
    })
}

pub async fn event_create(db: &Db, e: &NewEvent) -> Result<i64, DbError> {
    let row: (i64,) = sqlx::query_as(
        "INSERT INTO events (parent_id, timestamp, username, action, object_type, object_name, \
         task, deployment, instance, context, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(e.parent_id)
    .bind(now_secs())
    .bind(&e.user)
    .bind(&e.action)
    .bind(&e.object_type)
    .bind(&e.object_name)
    .bind(&e.task)
    .bind(&e.deployment)
    .bind(&e.instance)
    .bind(Value::Object(e.context.clone()).to_string())
    .bind(&e.error)
    .fetch_one(db.pool())
    .await?;
    Ok(row.0)
}

pub async fn event_fetch(db: &Db, id: i64) -> Result<Option<EventView>, DbError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM events WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(event_from_row).transpose()?)
}

/// Newest first, at most `limit`.
pub async fn event_list(
    db: &Db,
    filter: &EventFilter,
    limit: i64,
) -> Result<Vec<EventView>, DbError> {
    enum Arg {
        Int(i64),
        Text(String),
    }
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut push = |clause: &str, arg: Arg| {
        args.push(arg);
        clauses.push(format!("{clause} ${}", args.len()));
    };
    if let Some(v) = filter.before_id {
        push("id <", Arg::Int(v));
    }
    if let Some(v) = filter.before_time {
        push("timestamp <", Arg::Int(v));
    }
    if let Some(v) = filter.after_time {
        push("timestamp >", Arg::Int(v));
    }
    let texts = [
        ("deployment =", &filter.deployment),
        ("task =", &filter.task),
        ("instance =", &filter.instance),
        ("username =", &filter.user),
        ("action =", &filter.action),
        ("object_type =", &filter.object_type),
        ("object_name =", &filter.object_name),
    ];
    for (clause, value) in texts {
        if let Some(v) = value {
            push(clause, Arg::Text(v.clone()));
        }
    }
    let mut sql = format!("SELECT {COLUMNS} FROM events");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit.max(0)));
    let mut q = sqlx::query(&sql);
    for a in args {
        q = match a {
            Arg::Int(i) => q.bind(i),
            Arg::Text(t) => q.bind(t),
        };
    }
    let rows = q.fetch_all(db.pool()).await?;
    Ok(rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Records a task's begin event, runs the action, then records the end event (with the
/// error when it failed). `object_name` may be filled in by the action once it is known
/// (an upload learns the release name from its tarball).
pub async fn task_events_wrap<F>(
    ctx: &crate::tasks::runner::TaskContext,
    action: &str,
    object_type: &str,
    object_name: Option<String>,
    context: Map<String, Value>,
    run: F,
) -> Result<String, crate::tasks::runner::TaskError>
where
    F: std::future::Future<
            Output = Result<(String, Option<String>), crate::tasks::runner::TaskError>,
        >,
{
    let base = NewEvent {
        user: ctx.user.clone(),
        action: action.to_owned(),
        object_type: object_type.to_owned(),
        object_name: object_name.clone(),
        task: Some(ctx.id.to_string()),
        deployment: ctx.deployment.clone(),
        context,
        ..NewEvent::default()
    };
    let parent = event_create(ctx.db(), &base).await?;
    let outcome = run.await;
    let (name, error) = match &outcome {
        Ok((_, name)) => (name.clone().or(object_name.clone()), None),
        Err(err) => (object_name.clone(), Some(err.to_string())),
    };
    // A name learnt while running (a release's, from its tarball) names the begin event too.
    if object_name.is_none()
        && let Some(name) = &name
    {
        sqlx::query("UPDATE events SET object_name = $1 WHERE id = $2")
            .bind(name)
            .bind(parent)
            .execute(ctx.db().pool())
            .await
            .map_err(crate::db::DbError::from)?;
    }
    let end = NewEvent {
        parent_id: Some(parent),
        object_name: name,
        error,
        ..base
    };
    event_create(ctx.db(), &end).await?;
    outcome.map(|(result, _)| result)
}
