//! Deployments (director-api §5.3): list, manifest, delete (a task under the deployment lock).

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, CurrentUser, context_id, task_start};
use crate::deployments::{self, DELETE_DEPLOYMENT, DeploymentView};
use crate::error::{ApiError, codes};
use crate::tasks::store::NewTask;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deployments", get(deployment_list).post(deployment_create))
        .route(
            "/deployments/{name}",
            get(deployment_fetch).delete(deployment_delete),
        )
        .route("/deployments/{name}/diff", post(deployment_diff))
}

pub fn deployment_not_found(name: &str) -> ApiError {
    ApiError::not_found(
        codes::DEPLOYMENT_NOT_FOUND,
        format!("Deployment '{name}' doesn't exist"),
    )
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    exclude_configs: Option<String>,
}

async fn deployment_list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    let with_configs = q.exclude_configs.as_deref() != Some("true");
    Ok(Json(
        deployments::deployment_view_list(&state.db, with_configs).await?,
    ))
}

async fn deployment_fetch(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let d = deployments::deployment_fetch(&state.db, &name)
        .await?
        .ok_or_else(|| deployment_not_found(&name))?;
    Ok(Json(json!({"manifest": d.manifest})))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    force: Option<String>,
}

async fn deployment_delete(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if deployments::deployment_fetch(&state.db, &name)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(&name));
    }
    let force = q.force.as_deref() == Some("true");
    task_start(
        &state,
        NewTask {
            task_type: DELETE_DEPLOYMENT.to_owned(),
            description: format!("delete deployment {name}"),
            payload: json!({"name": name, "force": force}),
            user,
            deployment: Some(name.clone()),
            context_id: context_id(&headers)?,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    redact: Option<String>,
}

/// `POST /deployments/{name}/diff`: the stored manifest against the posted one, with the
/// config ids a deploy would use as `context`. Works for a deployment that does not exist
/// yet, and answers 200 with `error` when diffing fails, as the Ruby director does.
async fn deployment_diff(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let redact = q.redact.as_deref() != Some("false");
    let mut cloud_ids = Vec::new();
    let mut runtime_ids = Vec::new();
    for (config, _) in crate::configs::config_list(&state.db, None, None, true, None).await? {
        match config.config_type.as_str() {
            "cloud" => cloud_ids.push(config.id),
            "runtime" => runtime_ids.push(config.id),
            _ => {}
        }
    }
    cloud_ids.sort_unstable();
    runtime_ids.sort_unstable();
    let context = json!({"cloud_config_ids": cloud_ids, "runtime_config_ids": runtime_ids});
    let old = deployments::deployment_fetch(&state.db, &name)
        .await?
        .map(|d| d.manifest)
        .unwrap_or_default();
    let new = String::from_utf8_lossy(&body);
    match deployments::manifest_diff(&old, &new, redact) {
        Ok(lines) => Ok(Json(
            json!({"context": context, "diff": crate::configs::diff_json(&lines)}),
        )),
        Err(e) => Ok(Json(json!({"context": context, "diff": [], "error": e}))),
    }
}

#[derive(Debug, Deserialize)]
struct DeployQuery {
    recreate: Option<String>,
    recreate_persistent_disks: Option<String>,
    fix: Option<String>,
    skip_drain: Option<String>,
    canaries: Option<String>,
    max_in_flight: Option<String>,
    dry_run: Option<String>,
    force_latest_variables: Option<String>,
    context: Option<String>,
}

/// `POST /deployments` (director-api §5.3): the manifest body becomes a deploy task.
async fn deployment_create(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Query(q): Query<DeployQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let manifest = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::bad_request(codes::INVALID_REQUEST, "The manifest is not UTF-8 text")
    })?;
    let doc = bosh_yaml::parse(&manifest).map_err(|e| {
        ApiError::bad_request(
            codes::INVALID_REQUEST,
            format!("Manifest should be a hash: {e}"),
        )
    })?;
    let name = doc
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                codes::MISSING_FIELD,
                "Deployment manifest must have a 'name'",
            )
        })?
        .to_owned();
    let yes = |v: &Option<String>| v.as_deref() == Some("true");
    let context = match q.context.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(serde_json::from_str::<Value>(c).map_err(|e| {
            ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid context: {e}"))
        })?),
        None => None,
    };
    let dry_run = yes(&q.dry_run);
    let payload = json!({
        "name": name,
        "manifest": manifest,
        "recreate": yes(&q.recreate),
        "recreate_persistent_disks": yes(&q.recreate_persistent_disks),
        "fix": yes(&q.fix),
        // `*` or a list of groups: drain is skipped deployment-wide either way here.
        "skip_drain": q.skip_drain.as_deref().is_some_and(|s| !s.is_empty() && s != "false"),
        "canaries": q.canaries,
        "max_in_flight": q.max_in_flight,
        "dry_run": dry_run,
        "force_latest_variables": yes(&q.force_latest_variables),
        "context": context,
    });
    task_start(
        &state,
        NewTask {
            task_type: crate::deploy::DEPLOY.to_owned(),
            description: if dry_run {
                "create deployment (dry run)".to_owned()
            } else {
                "create deployment".to_owned()
            },
            payload,
            user,
            deployment: Some(name),
            context_id: context_id(&headers)?,
        },
    )
    .await
}
