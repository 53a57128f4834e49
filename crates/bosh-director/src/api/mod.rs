//! The HTTP API (director-api.md): one module per endpoint group, a shared [`AppState`], and
//! the basic-auth layer that guards everything but `GET /info`.

pub mod blobstore;
pub mod configs;
pub mod deployments;
pub mod disks;
pub mod errands;
pub mod events;
pub mod info;
pub mod instance_ops;
pub mod instances;
pub mod locks;
pub mod logs;
pub mod metrics;
pub mod problems;
pub mod releases;
pub mod resources;
pub mod resurrection;
pub mod stemcells;
pub mod tasks;
pub mod variables;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::blobstore::DavCredentials;
use crate::db::Db;
use crate::error::{ApiError, codes};
use crate::services::Services;
use crate::tasks::TaskId;
use crate::tasks::runner::TaskQueue;
use crate::tasks::store::NewTask;

/// Fixed facts `/info` reports.
#[derive(Debug, Clone)]
pub struct DirectorInfo {
    pub name: String,
    pub uuid: String,
    pub version: String,
    pub cpi: String,
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub auth: Authenticator,
    pub queue: TaskQueue,
    pub info: Arc<DirectorInfo>,
    /// Data dir, blobstore and CPI, shared with the artifact tasks.
    pub services: Services,
    /// Credentials of the agents' DAV endpoint.
    pub dav: DavCredentials,
    /// The health monitor (`None` when this director drives no agents).
    pub hm: Option<Arc<crate::hm::HealthMonitor>>,
}

/// The authenticated user, put in request extensions by the auth layer.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub String);

/// The `X-Bosh-Context-Id` header (at most 64 characters, as Ruby enforces).
pub fn context_id(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(v) = headers.get("x-bosh-context-id") else {
        return Ok(String::new());
    };
    let v = v.to_str().map_err(|_| {
        ApiError::bad_request(codes::INVALID_REQUEST, "X-Bosh-Context-Id is not text")
    })?;
    if v.len() > 64 {
        return Err(ApiError::bad_request(
            codes::INVALID_REQUEST,
            "X-Bosh-Context-Id cannot be longer than 64 characters",
        ));
    }
    Ok(v.to_owned())
}

/// Queues a task and answers `302 Location: /tasks/{id}`; the CLI's client turns that into
/// `GET /tasks/{id}` (never 307/308, which would resend the body).
pub async fn task_start(state: &AppState, new: NewTask) -> Result<Response, ApiError> {
    let task = state.queue.task_enqueue(&new).await?;
    Ok(task_redirect(task.id))
}

pub fn task_redirect(id: TaskId) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("/tasks/{id}"))],
    )
        .into_response()
}

async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    // The DAV endpoint checks its own credentials (agents never get the admin password).
    if path == "/info" || path.starts_with("/blobstore/") {
        return next.run(req).await;
    }
    let header_value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match state.auth.authenticate(header_value).await {
        Ok(Some(user)) => {
            req.extensions_mut().insert(CurrentUser(user));
            next.run(req).await
        }
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Basic realm=\"BOSH Director\""),
                (header::CONTENT_TYPE, "text/plain"),
            ],
            format!("Not authorized: '{path}'\n"),
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %crate::error::error_chain(&err), "authentication failed with an error");
            ApiError::internal("Internal director error during authentication").into_response()
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(info::routes())
        .merge(tasks::routes())
        .merge(configs::routes())
        .merge(deployments::routes())
        .merge(instances::routes())
        .merge(variables::routes())
        .merge(locks::routes())
        .merge(stemcells::routes())
        .merge(releases::routes())
        .merge(events::routes())
        .merge(resources::routes())
        .merge(crate::day2::routes())
        .merge(blobstore::routes(state.clone()))
        .fallback(|req: Request| async move {
            ApiError::not_found(
                codes::INVALID_REQUEST,
                format!("No route for {} {}", req.method(), req.uri().path()),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_auth))
        .with_state(state)
}
