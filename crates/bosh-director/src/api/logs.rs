//! Logs and ssh (director-api.md §5.8, §5.9):
//! `GET /deployments/{dep}/jobs/{group|*}/{index_or_id|*}/logs?type=…&filters=…` (a GET that
//! redirects to a `fetch_logs` task) and `POST /deployments/{dep}/ssh` (an `ssh` task).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::deployments::deployment_not_found;
use super::{AppState, CurrentUser, context_id, task_start};
use crate::error::{ApiError, codes};
use crate::logs::{FETCH_LOGS, FetchLogsPayload, LOG_TYPES};
use crate::ssh::{SSH, SshPayload};
use crate::tasks::store::NewTask;

/// Ruby's `InstanceNotFound`.
use crate::repair::INSTANCE_NOT_FOUND;
/// Ruby's `InstanceVmMissing`.
const VM_MISSING: u32 = 140014;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/deployments/{name}/jobs/{group}/{index_or_id}/logs",
            get(logs_fetch),
        )
        .route("/deployments/{name}/ssh", post(ssh_start))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    filters: Option<String>,
}

async fn logs_fetch(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path((name, group, index_or_id)): Path<(String, String, String)>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if crate::deployments::deployment_fetch(&state.db, &name)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(&name));
    }
    let log_types = match q.kind.as_deref().map(str::trim) {
        None | Some("") => "job".to_owned(),
        Some(t) => {
            for part in t.split(',') {
                if !LOG_TYPES.contains(&part.trim()) {
                    return Err(ApiError::bad_request(
                        codes::INVALID_REQUEST,
                        format!(
                            "Invalid log type '{}': expected job, agent or system",
                            part.trim()
                        ),
                    ));
                }
            }
            t.split(',').map(str::trim).collect::<Vec<_>>().join(",")
        }
    };
    let filters: Vec<String> = q
        .filters
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let group = (group != "*").then_some(group);
    let index_or_id = (index_or_id != "*").then_some(index_or_id);
    // A named instance must exist and have a VM, so the CLI fails before a task starts.
    if let (Some(g), Some(i)) = (&group, &index_or_id) {
        match crate::repair::instance_fetch(&state.db, &name, g, i).await? {
            None => {
                return Err(ApiError::not_found(
                    INSTANCE_NOT_FOUND,
                    format!("'{g}/{i}' doesn't exist"),
                ));
            }
            Some(inst) if inst.vm.is_none() => {
                return Err(ApiError::bad_request(
                    VM_MISSING,
                    format!("'{}' doesn't reference a VM", inst.display()),
                ));
            }
            Some(_) => {}
        }
    }
    task_start(
        &state,
        NewTask {
            task_type: FETCH_LOGS.to_owned(),
            description: "fetch logs".to_owned(),
            payload: serde_json::to_value(FetchLogsPayload {
                deployment: name.clone(),
                group,
                index_or_id,
                log_types,
                filters,
            })
            .map_err(|e| ApiError::internal(format!("Encoding the task payload: {e}")))?,
            user,
            deployment: Some(name),
            context_id: context_id(&headers)?,
        },
    )
    .await
}

async fn ssh_start(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if crate::deployments::deployment_fetch(&state.db, &name)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(&name));
    }
    let mut payload: SshPayload = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid ssh request: {e}"))
    })?;
    match payload.command.as_str() {
        "setup" => {
            for key in ["user", "public_key"] {
                if payload
                    .params
                    .get(key)
                    .and_then(|v| v.as_str())
                    .is_none_or(str::is_empty)
                {
                    return Err(ApiError::bad_request(
                        codes::MISSING_FIELD,
                        format!("ssh setup needs params.{key}"),
                    ));
                }
            }
        }
        "cleanup" => {
            if payload
                .params
                .get("user_regex")
                .and_then(|v| v.as_str())
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(
                    codes::MISSING_FIELD,
                    "ssh cleanup needs params.user_regex",
                ));
            }
        }
        other => {
            return Err(ApiError::bad_request(
                codes::INVALID_REQUEST,
                format!("Unknown ssh command '{other}': expected setup or cleanup"),
            ));
        }
    }
    payload.deployment = name.clone();
    let description = format!("ssh: {}:{}", payload.command, payload.target.describe());
    task_start(
        &state,
        NewTask {
            task_type: SSH.to_owned(),
            description,
            payload: serde_json::to_value(&payload)
                .map_err(|e| ApiError::internal(format!("Encoding the task payload: {e}")))?,
            user,
            deployment: Some(name),
            context_id: context_id(&headers)?,
        },
    )
    .await
}
