//! Events (director-api §5.11): newest first, at most 200, with the CLI's filters.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use crate::error::{ApiError, codes};
use crate::events::{self, EventFilter, EventView};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(event_list))
        .route("/events/{id}", get(event_fetch))
}

#[derive(Debug, Deserialize)]
struct EventQuery {
    before_id: Option<String>,
    before_time: Option<String>,
    after_time: Option<String>,
    deployment: Option<String>,
    task: Option<String>,
    instance: Option<String>,
    user: Option<String>,
    action: Option<String>,
    object_type: Option<String>,
    object_name: Option<String>,
}

fn int_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.trim().parse::<i64>().or_else(|_| {
                // Unix seconds, RFC 3339, or the CLI's `--before`/`--after` example form
                // `2016-05-08 17:26:32` (UTC, as Ruby's `Time.parse` on a UTC director).
                chrono::DateTime::parse_from_rfc3339(s.trim())
                    .map(|t| t.timestamp())
                    .or_else(|_| {
                        chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
                            .map(|t| t.and_utc().timestamp())
                    })
                    .map_err(|_| {
                        ApiError::bad_request(
                            codes::INVALID_REQUEST,
                            format!("invalid {name} '{s}'"),
                        )
                    })
            })
        })
        .transpose()
}

async fn event_list(
    State(state): State<AppState>,
    Query(q): Query<EventQuery>,
) -> Result<Json<Vec<EventView>>, ApiError> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let filter = EventFilter {
        before_id: int_param("before_id", q.before_id.as_deref())?,
        before_time: int_param("before_time", q.before_time.as_deref())?,
        after_time: int_param("after_time", q.after_time.as_deref())?,
        deployment: non_empty(q.deployment),
        task: non_empty(q.task),
        instance: non_empty(q.instance),
        user: non_empty(q.user),
        action: non_empty(q.action),
        object_type: non_empty(q.object_type),
        object_name: non_empty(q.object_name),
    };
    Ok(Json(events::event_list(&state.db, &filter, 200).await?))
}

async fn event_fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EventView>, ApiError> {
    let not_found = || ApiError::not_found(codes::INVALID_REQUEST, format!("Event {id} not found"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    events::event_fetch(&state.db, n)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}
