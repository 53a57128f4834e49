//! Errands API (director-api.md §5.10): `GET /deployments/{dep}/errands` and
//! `POST /deployments/{dep}/errands/{name}/runs` (a `run_errand` task).

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::deployments::deployment_not_found;
use super::{AppState, CurrentUser, context_id, task_start};
use crate::errands::{self, InstanceFilter, RUN_ERRAND, RunErrandPayload};
use crate::error::ApiError;
use crate::tasks::runner::TaskError;
use crate::tasks::store::NewTask;

/// Ruby's code for a request body that is not valid JSON.
const INVALID_REQUEST: u32 = 40001;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deployments/{name}/errands", get(errand_list))
        .route(
            "/deployments/{name}/errands/{errand}/runs",
            post(errand_run),
        )
}

async fn errand_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let Some(dep) = crate::deployments::deployment_fetch(&state.db, &name).await? else {
        return Err(deployment_not_found(&name));
    };
    let names = errands::deployment_errands(&state.db, &dep.manifest)
        .await
        .map_err(|e| match e {
            TaskError::Failed { code, message } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message)
            }
            TaskError::Db(e) => ApiError::from(e),
            other => ApiError::internal(other.to_string()),
        })?;
    let list: Vec<Value> = names.into_iter().map(|n| json!({"name": n})).collect();
    Ok(Json(list).into_response())
}

async fn errand_run(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path((name, errand)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if crate::deployments::deployment_fetch(&state.db, &name)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(&name));
    }
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(INVALID_REQUEST, format!("Request body is not JSON: {e}"))
        })?
    };
    let flag = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
    // Filters are objects `{group, id}`; anything else cannot name an instance.
    let instances: Vec<InstanceFilter> = body
        .get("instances")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    let payload = RunErrandPayload {
        deployment: name.clone(),
        errand: errand.clone(),
        keep_alive: flag("keep-alive"),
        when_changed: flag("when-changed"),
        instances,
    };
    task_start(
        &state,
        NewTask {
            task_type: RUN_ERRAND.to_owned(),
            description: format!("run errand {errand} from deployment {name}"),
            payload: serde_json::to_value(&payload).unwrap_or(Value::Null),
            user,
            deployment: Some(name),
            context_id: context_id(&headers)?,
        },
    )
    .await
}
