//! `GET /locks`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use crate::error::ApiError;
use crate::locks::{LockView, lock_list};

pub fn routes() -> Router<AppState> {
    Router::new().route("/locks", get(locks_list))
}

async fn locks_list(State(state): State<AppState>) -> Result<Json<Vec<LockView>>, ApiError> {
    Ok(Json(lock_list(&state.db).await?))
}
