//! `GET /metrics`: the director's Prometheus metrics (issue 7), behind basic auth like the
//! rest of the API.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::error::{ApiError, error_chain};

/// The Prometheus text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_fetch))
}

async fn metrics_fetch(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let agent_health = state.hm.as_ref().map(|h| h.agent_health_counts());
    let text = state
        .services
        .metrics
        .scrape(&state.db, agent_health)
        .await
        .map_err(|e| ApiError::internal(error_chain(&e)))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}
