//! Cloud check (director-api.md §5.7): `POST …/scans`, `GET`/`PUT …/problems`, and the
//! resurrector's `PUT …/scan_and_fix`.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::deployments::deployment_not_found;
use super::{AppState, CurrentUser, context_id, task_start};
use crate::cck::{self, ScanAndFixPayload, scan::ProblemView};
use crate::error::ApiError;
use crate::tasks::store::NewTask;

/// Ruby's `CloudcheckInvalidResolutionFormat`.
const INVALID_RESOLUTION_FORMAT: u32 = 130001;
/// Ruby's `ValidationInvalidType` for a malformed body.
const INVALID_BODY: u32 = 40000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deployments/{name}/scans", post(scan_start))
        .route(
            "/deployments/{name}/problems",
            axum::routing::get(problem_list).put(resolutions_apply),
        )
        .route("/deployments/{name}/scan_and_fix", put(scan_and_fix))
}

async fn deployment_check(state: &AppState, name: &str) -> Result<(), ApiError> {
    if crate::deployments::deployment_fetch(&state.db, name)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(name));
    }
    Ok(())
}

async fn scan_start(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    deployment_check(&state, &name).await?;
    task_start(
        &state,
        NewTask {
            task_type: cck::SCAN.to_owned(),
            description: "scan cloud".to_owned(),
            payload: json!({"deployment": name}),
            user,
            deployment: Some(name.clone()),
            context_id: context_id(&headers)?,
        },
    )
    .await
}

async fn problem_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<ProblemView>>, ApiError> {
    deployment_check(&state, &name).await?;
    Ok(Json(cck::scan::problem_view_list(&state.db, &name).await?))
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            INVALID_BODY,
            "Request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(
            INVALID_BODY,
            format!("Request body is not JSON: {e}"),
        )),
    }
}

async fn resolutions_apply(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    deployment_check(&state, &name).await?;
    let body = body_object(&body)?;
    let resolutions = match body.get("resolutions") {
        Some(Value::Object(m)) => m,
        other => {
            let given = match other {
                None | Some(Value::Null) => "NilClass",
                Some(Value::Array(_)) => "Array",
                Some(Value::String(_)) => "String",
                Some(Value::Number(_)) => "Integer",
                Some(Value::Bool(_)) => "Boolean",
                Some(Value::Object(_)) => "Hash",
            };
            return Err(ApiError::bad_request(
                INVALID_RESOLUTION_FORMAT,
                format!("Invalid format for resolutions, Hash expected, {given} is given"),
            ));
        }
    };
    let mut normalized = Map::new();
    for (id, v) in resolutions {
        let v = match v {
            Value::Null => Value::Null,
            Value::String(s) => Value::String(s.clone()),
            other => {
                return Err(ApiError::bad_request(
                    INVALID_RESOLUTION_FORMAT,
                    format!("Invalid resolution for problem '{id}': {other}"),
                ));
            }
        };
        normalized.insert(id.clone(), v);
    }
    let overrides = body
        .get("max_in_flight_overrides")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    task_start(
        &state,
        NewTask {
            task_type: cck::APPLY.to_owned(),
            description: "apply resolutions".to_owned(),
            payload: json!({
                "deployment": name,
                "resolutions": normalized,
                "max_in_flight_overrides": overrides,
            }),
            user,
            deployment: Some(name.clone()),
            context_id: context_id(&headers)?,
        },
    )
    .await
}

async fn scan_and_fix(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    deployment_check(&state, &name).await?;
    let body = body_object(&body)?;
    let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(Value::Object(m)) = body.get("jobs") {
        for (group, ids) in m {
            let ids = ids.as_array().cloned().unwrap_or_default();
            let list = jobs.entry(group.clone()).or_default();
            for id in ids {
                match id {
                    Value::String(s) => list.push(s),
                    Value::Number(n) => list.push(n.to_string()),
                    _ => {}
                }
            }
        }
    } else {
        return Err(ApiError::bad_request(
            INVALID_BODY,
            "Expected 'jobs' to be a Hash of instance group to instances",
        ));
    }
    let payload = ScanAndFixPayload {
        deployment: name.clone(),
        jobs,
    };
    task_start(
        &state,
        NewTask {
            task_type: cck::SCAN_AND_FIX.to_owned(),
            description: "scan and fix".to_owned(),
            payload: serde_json::to_value(&payload)
                .map_err(|e| ApiError::internal(e.to_string()))?,
            user,
            deployment: Some(name.clone()),
            context_id: context_id(&headers)?,
        },
    )
    .await
}
