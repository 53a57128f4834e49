//! Instance operations (director-api.md §5.4, §5.11): state changes (`start`, `stop`,
//! `restart`, `recreate`, converging or not), `ignore`/`unignore` and `delete-vm`.
//!
//! A converging change with a manifest body is not supported: the body is ignored and the
//! instances converge to their last applied state (the CLI always sends an empty body).

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::deployments::deployment_not_found;
use super::{AppState, CurrentUser, context_id, task_start};
use crate::error::{ApiError, codes};
use crate::instance_ops::{
    self, Action, DELETE_VM, StatePayload, TargetState, UPDATE_INSTANCE, converge_payload,
};
use crate::tasks::store::NewTask;

/// Ruby's `InstanceNotFound` and `InstanceInvalidIndex`.
use crate::repair::INSTANCE_NOT_FOUND;
const INVALID_INDEX: u32 = 70002;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deployments/{name}/jobs/{group}", put(group_state_change))
        .route(
            "/deployments/{name}/jobs/{group}/{index_or_id}",
            put(instance_state_change),
        )
        .route(
            "/deployments/{name}/instance_groups/{group}/{index_or_id}/actions/{action}",
            post(instance_action),
        )
        .route(
            "/deployments/{name}/instance_groups/{group}/{index_or_id}/ignore",
            put(instance_ignore),
        )
        .route("/vms/{cid}", delete(vm_delete))
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    state: Option<String>,
    skip_drain: Option<String>,
    fix: Option<String>,
    dry_run: Option<String>,
    canaries: Option<String>,
    max_in_flight: Option<String>,
}

async fn deployment_require(state: &AppState, name: &str) -> Result<(), ApiError> {
    match crate::deployments::deployment_fetch(&state.db, name).await? {
        Some(_) => Ok(()),
        None => Err(deployment_not_found(name)),
    }
}

/// An index (`0`) or a UUID, as Ruby's `validate_instance_index_or_id`.
fn index_or_id_validate(s: &str) -> Result<(), ApiError> {
    let is_index = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_uuid = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 8 {
                b == b'-'
            } else {
                b.is_ascii_hexdigit() || b == b'-'
            }
        });
    if is_index || is_uuid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            INVALID_INDEX,
            format!("Invalid instance index or id '{s}'"),
        ))
    }
}

async fn instance_require(
    state: &AppState,
    dep: &str,
    group: &str,
    index_or_id: &str,
) -> Result<crate::repair::Instance, ApiError> {
    crate::repair::instance_fetch(&state.db, dep, group, index_or_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                INSTANCE_NOT_FOUND,
                format!("'{dep}/{group}/{index_or_id}' doesn't exist"),
            )
        })
}

async fn group_state_change(
    State(state): State<AppState>,
    user: Extension<CurrentUser>,
    Path((name, group)): Path<(String, String)>,
    q: Query<StateQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    deployment_require(&state, &name).await?;
    let group = (group != "*").then_some(group);
    state_change(&state, user, &name, group, None, q, &headers).await
}

async fn instance_state_change(
    State(state): State<AppState>,
    user: Extension<CurrentUser>,
    Path((name, group, index_or_id)): Path<(String, String, String)>,
    q: Query<StateQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    deployment_require(&state, &name).await?;
    index_or_id_validate(&index_or_id)?;
    instance_require(&state, &name, &group, &index_or_id).await?;
    state_change(
        &state,
        user,
        &name,
        Some(group),
        Some(index_or_id),
        q,
        &headers,
    )
    .await
}

async fn state_change(
    state: &AppState,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    dep: &str,
    group: Option<String>,
    index_or_id: Option<String>,
    Query(q): Query<StateQuery>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let raw = q.state.as_deref().unwrap_or_default();
    let target = TargetState::parse(raw).ok_or_else(|| {
        ApiError::bad_request(
            codes::INVALID_REQUEST,
            format!(
                "Invalid state '{raw}': expected one of started, stopped, detached, restart, recreate"
            ),
        )
    })?;
    let yes = |v: &Option<String>| v.as_deref() == Some("true");
    let dry_run = yes(&q.dry_run);
    let payload = converge_payload(
        dep,
        group.as_deref(),
        index_or_id.as_deref(),
        target,
        yes(&q.skip_drain),
        yes(&q.fix),
        dry_run,
        q.canaries.clone(),
        q.max_in_flight.clone(),
    );
    task_start(
        state,
        NewTask {
            task_type: UPDATE_INSTANCE.to_owned(),
            // Ruby runs these as deploys and describes them so.
            description: if dry_run {
                "create deployment (dry run)".to_owned()
            } else {
                "create deployment".to_owned()
            },
            payload,
            user,
            deployment: Some(dep.to_owned()),
            context_id: context_id(headers)?,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct ActionQuery {
    skip_drain: Option<String>,
    hard: Option<String>,
    ignore_unresponsive_agent: Option<String>,
}

async fn instance_action(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path((name, group, index_or_id, action)): Path<(String, String, String, String)>,
    Query(q): Query<ActionQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    deployment_require(&state, &name).await?;
    let action = Action::parse(&action).ok_or_else(|| {
        ApiError::not_found(
            codes::INVALID_REQUEST,
            format!("Unknown instance action '{action}'"),
        )
    })?;
    instance_require(&state, &name, &group, &index_or_id).await?;
    let yes = |v: &Option<String>| v.as_deref() == Some("true");
    let payload = StatePayload::Action {
        deployment: name.clone(),
        group,
        index_or_id,
        action,
        skip_drain: yes(&q.skip_drain),
        hard: yes(&q.hard),
        ignore_unresponsive_agent: yes(&q.ignore_unresponsive_agent),
    };
    task_start(
        &state,
        NewTask {
            task_type: UPDATE_INSTANCE.to_owned(),
            description: format!("{} instance", action.as_str()),
            payload: json!(payload),
            user,
            deployment: Some(name),
            context_id: context_id(&headers)?,
        },
    )
    .await
}

async fn instance_ignore(
    State(state): State<AppState>,
    Path((name, group, index_or_id)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    deployment_require(&state, &name).await?;
    let ignore = body.get("ignore").and_then(Value::as_bool).ok_or_else(|| {
        ApiError::bad_request(codes::MISSING_FIELD, "Expected 'ignore' to be a boolean")
    })?;
    if !instance_ops::instance_ignore_set(&state.db, &name, &group, &index_or_id, ignore).await? {
        return Err(ApiError::not_found(
            INSTANCE_NOT_FOUND,
            format!("'{name}/{group}/{index_or_id}' doesn't exist"),
        ));
    }
    // The health monitor caches the VM rows, `ignored` among them.
    if let Some(hm) = &state.hm {
        hm.refresh_request();
    }
    Ok(StatusCode::OK.into_response())
}

async fn vm_delete(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let deployment: Option<(String,)> = sqlx::query_as("SELECT deployment FROM vms WHERE cid = $1")
        .bind(&cid)
        .fetch_optional(state.db.pool())
        .await
        .map_err(crate::db::DbError::from)?;
    task_start(
        &state,
        NewTask {
            task_type: DELETE_VM.to_owned(),
            description: format!("delete vm {cid}"),
            payload: json!({"cid": cid}),
            user,
            deployment: deployment.map(|d| d.0),
            context_id: context_id(&headers)?,
        },
    )
    .await
}
