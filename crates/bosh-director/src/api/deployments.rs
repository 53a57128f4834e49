//! Deployments (director-api §5.3): list, manifest, delete (a task under the deployment lock).

use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, CurrentUser, context_id, task_start};
use crate::deployments::{self, DELETE_DEPLOYMENT, DeploymentView};
use crate::error::{ApiError, codes};
use crate::tasks::store::NewTask;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deployments", get(deployment_list))
        .route(
            "/deployments/{name}",
            get(deployment_fetch).delete(deployment_delete),
        )
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
    let mut out = Vec::new();
    for d in deployments::deployment_list(&state.db).await? {
        out.push(deployments::deployment_view(&state.db, &d, with_configs).await?);
    }
    Ok(Json(out))
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
