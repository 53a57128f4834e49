//! Task endpoints (director-api §3): list, fetch, outputs served by `Range`, cancel.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;
use crate::error::{ApiError, codes};
use crate::tasks::events::OutputType;
use crate::tasks::store::{self, CancelOutcome, TaskFilter, TaskView};
use crate::tasks::{TaskId, TaskState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(task_list))
        .route("/tasks/cancel", post(task_cancel_many))
        .route("/tasks/{id}", get(task_fetch).delete(task_cancel))
        .route("/tasks/{id}/output", get(task_output))
        // The CLI's `cancel-task` uses the singular path.
        .route("/task/{id}", delete(task_cancel))
}

/// The types `verbose=1` (the default) shows; `verbose=2` shows all.
const USER_FACING_TYPES: &[&str] = &[
    "attach_disk",
    "create_snapshot",
    "delete_deployment",
    "delete_release",
    "delete_snapshot",
    "delete_stemcell",
    "run_errand",
    "snapshot_deployment",
    "update_instance",
    "update_deployment",
    "update_release",
    "update_stemcell",
    "export_release",
];

fn task_not_found(id: &str) -> ApiError {
    ApiError::not_found(codes::TASK_NOT_FOUND, format!("Task {id} not found"))
}

fn parse_task_id(raw: &str) -> Result<TaskId, ApiError> {
    raw.parse().map_err(|_| task_not_found(raw))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    deployment: Option<String>,
    limit: Option<String>,
    verbose: Option<String>,
    context_id: Option<String>,
}

async fn task_list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let mut filter = TaskFilter::default();
    if let Some(states) = q.state.as_deref().filter(|s| !s.is_empty()) {
        for s in states.split(',') {
            let st = TaskState::parse(s.trim()).ok_or_else(|| {
                ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid task state '{s}'"))
            })?;
            filter.states.push(st);
        }
    }
    filter.deployment = q.deployment.filter(|d| !d.is_empty());
    filter.context_id = q.context_id.filter(|c| !c.is_empty());
    if let Some(limit) = q.limit.as_deref().filter(|l| !l.is_empty()) {
        let n: i64 = limit.parse().map_err(|_| {
            ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid limit '{limit}'"))
        })?;
        filter.limit = Some(n.max(1));
    }
    let verbose = q.verbose.as_deref().unwrap_or("1");
    if verbose != "2" {
        filter.types = Some(USER_FACING_TYPES.iter().map(|t| (*t).to_owned()).collect());
    }
    Ok(Json(store::task_view_list(&state.db, &filter).await?))
}

async fn task_fetch(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_task_id(&raw)?;
    let task = store::task_fetch(&state.db, id)
        .await?
        .ok_or_else(|| task_not_found(&raw))?;
    Ok(Json(task.view()))
}

#[derive(Debug, Deserialize)]
struct OutputQuery {
    #[serde(rename = "type")]
    output_type: Option<String>,
}

/// `bytes=N-` or `bytes=N-M` → (N, Some(M)).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start, end))
}

/// Serves an output stream. With `Range: bytes=N-`: 206 and the bytes from N to the current
/// end, or 416 when there is nothing past N (the CLI then keeps its offset). Without Range:
/// 200 and the whole stream (empty when nothing was written, never 404: the CLI fetches the
/// result output of every task it started).
async fn task_output(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<OutputQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_task_id(&raw)?;
    let type_name = q.output_type.unwrap_or_default();
    let output = OutputType::parse(&type_name).ok_or_else(|| {
        ApiError::bad_request(
            codes::INVALID_REQUEST,
            format!("Invalid output type '{type_name}' (expected event, debug, cpi or result)"),
        )
    })?;
    if store::task_fetch(&state.db, id).await?.is_none() {
        return Err(task_not_found(&raw));
    }
    let path = state.queue.outputs().path(id, output);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open task output");
            return Err(ApiError::internal("Cannot read task output"));
        }
    };
    let len = match &file {
        Some(f) => f
            .metadata()
            .await
            .map_err(|_| ApiError::internal("Cannot read task output"))?
            .len(),
        None => 0,
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);

    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len),
        Some((start, last)) => {
            if start >= len {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                )
                    .into_response());
            }
            let end = last.map_or(len, |l| (l + 1).min(len));
            if end <= start {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                )
                    .into_response());
            }
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
    };

    let body = match file {
        Some(mut f) if end > start => {
            f.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|_| ApiError::internal("Cannot read task output"))?;
            // Only the bytes present when we measured: a writer may be appending right now.
            let reader = f.take(end - start);
            Body::from_stream(tokio_util::io::ReaderStream::new(reader))
        }
        _ => Body::empty(),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_LENGTH, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", start, end - 1, len),
        );
    }
    resp.body(body)
        .map_err(|_| ApiError::internal("Cannot build the response"))
}

async fn task_cancel(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_task_id(&raw)?;
    match store::task_cancel(&state.db, id).await? {
        CancelOutcome::Cancelled | CancelOutcome::Cancelling => {
            tracing::info!(task = %id, "task cancel requested");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        CancelOutcome::NotCancellable(st) => Ok((
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("Cannot cancel task {id}: invalid state ({st})"),
        )
            .into_response()),
        CancelOutcome::NotFound => Err(task_not_found(&raw)),
    }
}

#[derive(Debug, Deserialize, Default)]
struct CancelManyBody {
    deployment: Option<String>,
    states: Option<Vec<String>>,
    types: Option<Vec<String>>,
}

/// `POST /tasks/cancel` (`bosh cancel-tasks`): queued and processing tasks only; without
/// `states`, queued ones (as the Ruby director and the official CLI's help say).
async fn task_cancel_many(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let req: CancelManyBody = if body.is_empty() {
        CancelManyBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid JSON body: {e}"))
        })?
    };
    let mut states = Vec::new();
    for s in req
        .states
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["queued".to_owned()])
    {
        match TaskState::parse(&s) {
            Some(st @ (TaskState::Queued | TaskState::Processing)) => states.push(st),
            _ => {
                return Err(ApiError::bad_request(
                    codes::INVALID_REQUEST,
                    format!(
                        "Invalid state '{s}': only queued and processing tasks can be cancelled"
                    ),
                ));
            }
        }
    }
    let filter = TaskFilter {
        states,
        deployment: req.deployment,
        context_id: None,
        types: req.types,
        limit: None,
    };
    for task in store::task_list(&state.db, &filter).await? {
        store::task_cancel(&state.db, task.id).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-"), Some((0, None)));
        assert_eq!(parse_range("bytes=10-19"), Some((10, Some(19))));
        assert_eq!(parse_range("bytes=-5"), None);
        assert_eq!(parse_range("items=0-"), None);
    }
}
