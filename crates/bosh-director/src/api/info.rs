//! `GET /info`: unauthenticated, never 401; echoes the user when valid credentials came along
//! (`bosh log-in` decides success from it).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/info", get(info_fetch))
}

async fn info_fetch(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let auth_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // A failing check (even a database error) only means "no user" here.
    let user = state.auth.authenticate(auth_header).await.ok().flatten();
    let i = &state.info;
    Json(json!({
        "name": i.name,
        "uuid": i.uuid,
        "version": i.version,
        "user": user,
        "cpi": i.cpi,
        "stemcell_os": "",
        "stemcell_version": "",
        "user_authentication": {"type": "basic", "options": {}},
        "features": {
            "local_dns": {"status": false, "extras": {"domain_name": "bosh"}},
            "snapshots": {"status": false, "extras": {}},
            "config_server": {"status": false, "extras": {"urls": []}},
        },
    }))
}
