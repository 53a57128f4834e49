//! Day-2 API: resurrection (director-api.md §5.4): `PUT /resurrection` pauses or resumes the
//! resurrector director-wide (`bosh update-resurrection on|off`); the per-instance endpoint is
//! gone, as in the Ruby director (resurrection configs and `ignore` replace it).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use serde_json::Value;

use super::AppState;
use crate::error::{ApiError, codes};
use crate::hm::resurrector::resurrection_pause_set;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/resurrection", put(resurrection_pause))
        .route(
            "/deployments/{dep}/jobs/{group}/{id}/resurrection",
            put(instance_resurrection),
        )
}

async fn resurrection_pause(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid JSON body: {e}"))
    })?;
    // Ruby stores the value's text and treats anything but "false" as paused.
    let paused = match &value["resurrection_paused"] {
        Value::Bool(b) => *b,
        Value::String(s) => s != "false",
        Value::Null => {
            return Err(ApiError::bad_request(
                codes::MISSING_FIELD,
                "Missing 'resurrection_paused'",
            ));
        }
        _ => true,
    };
    resurrection_pause_set(&state.db, paused).await?;
    tracing::info!(paused, "resurrection pause updated");
    Ok(StatusCode::OK.into_response())
}

async fn instance_resurrection() -> Response {
    (
        StatusCode::GONE,
        "This endpoint has been removed. Please use \
         https://bosh.io/docs/resurrector/#enable-with-resurrection-config to configure \
         resurrection for the deployment or instance group. If you need to prevent a single \
         instance from being resurrected, consider using https://bosh.io/docs/cli-v2/#ignore.",
    )
        .into_response()
}
