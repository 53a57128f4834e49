//! Instance and VM listings (director-api §5.5): `?format=full` starts a `vms` task (a GET that
//! redirects, as the CLI expects); without it the short form is answered directly.

use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::deployments::deployment_not_found;
use super::{AppState, CurrentUser, context_id, task_start};
use crate::error::ApiError;
use crate::instance_listing::{self, ListingKind, VMS};
use crate::tasks::store::NewTask;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/deployments/{name}/instances", get(instance_list))
        .route("/deployments/{name}/vms", get(vm_list))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    format: Option<String>,
}

async fn instance_list(
    state: State<AppState>,
    user: Extension<CurrentUser>,
    name: Path<String>,
    q: Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    listing(state, user, name, q, headers, ListingKind::Instances).await
}

async fn vm_list(
    state: State<AppState>,
    user: Extension<CurrentUser>,
    name: Path<String>,
    q: Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    listing(state, user, name, q, headers, ListingKind::Vms).await
}

async fn listing(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
    kind: ListingKind,
) -> Result<Response, ApiError> {
    if !instance_listing::deployment_exists(&state.db, &name).await? {
        return Err(deployment_not_found(&name));
    }
    if q.format.as_deref() != Some("full") {
        let list = instance_listing::instance_summary_list(&state.db, &name, kind).await?;
        return Ok(Json(list).into_response());
    }
    task_start(
        &state,
        NewTask {
            task_type: VMS.to_owned(),
            description: "retrieve vm-stats".to_owned(),
            payload: json!({"deployment": name, "kind": kind}),
            user,
            deployment: Some(name.clone()),
            context_id: context_id(&headers)?,
        },
    )
    .await
}
