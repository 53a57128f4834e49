//! Configs (director-api §5.1, §5.2): the generic `/configs` API and the legacy typed
//! `/cloud_configs`, `/runtime_configs` and `/cpi_configs` endpoints. Config ids are strings
//! on the wire.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

use super::AppState;
use crate::configs::{
    self, Config, ConfigCreate, ConfigView, config_validate, diff_json, time_text, yaml_diff,
};
use crate::error::{ApiError, codes};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/configs",
            get(config_list).post(config_create).delete(config_delete),
        )
        .route("/configs/diff", post(config_diff))
        .route(
            "/configs/{id}",
            get(config_fetch).delete(config_delete_by_id),
        )
        .route(
            "/cloud_configs",
            get(|s: State<AppState>, q: Query<LegacyQuery>| legacy_list(s, q, "cloud")).post(
                |s: State<AppState>, q: Query<LegacyQuery>, b: Bytes| {
                    legacy_create(s, q, b, "cloud")
                },
            ),
        )
        .route(
            "/cloud_configs/diff",
            post(|s: State<AppState>, q: Query<LegacyQuery>, b: Bytes| {
                legacy_diff(s, q, b, "cloud")
            }),
        )
        .route(
            "/runtime_configs",
            get(|s: State<AppState>, q: Query<LegacyQuery>| legacy_list(s, q, "runtime")).post(
                |s: State<AppState>, q: Query<LegacyQuery>, b: Bytes| {
                    legacy_create(s, q, b, "runtime")
                },
            ),
        )
        .route(
            "/runtime_configs/diff",
            post(|s: State<AppState>, q: Query<LegacyQuery>, b: Bytes| {
                legacy_diff(s, q, b, "runtime")
            }),
        )
        .route(
            "/cpi_configs",
            get(|s: State<AppState>, q: Query<LegacyQuery>| legacy_list(s, q, "cpi")).post(
                |s: State<AppState>, q: Query<LegacyQuery>, b: Bytes| legacy_create(s, q, b, "cpi"),
            ),
        )
        .route(
            "/cpi_configs/diff",
            post(|s: State<AppState>, q: Query<LegacyQuery>, b: Bytes| legacy_diff(s, q, b, "cpi")),
        )
}

fn config_not_found(what: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(codes::CONFIG_NOT_FOUND, format!("Config {what} not found"))
}

fn invalid_config(config_type: &str, message: &str) -> ApiError {
    ApiError::bad_request(
        codes::CONFIG_INVALID,
        format!("Invalid {config_type} config:\n{message}"),
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid JSON body: {e}"))
    })
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| config_not_found(format_args!("with ID '{raw}'")))
}

/// An empty or missing name means `default`, as in Ruby.
fn name_or_default(name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => "default".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "type")]
    config_type: Option<String>,
    name: Option<String>,
    latest: Option<String>,
    limit: Option<String>,
}

fn parse_limit(limit: Option<&str>) -> Result<Option<i64>, ApiError> {
    match limit.filter(|l| !l.is_empty()) {
        None => Ok(None),
        Some(l) => l.parse().map(Some).map_err(|_| {
            ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid limit '{l}'"))
        }),
    }
}

async fn config_list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<ConfigView>>, ApiError> {
    let latest = q.latest.as_deref() == Some("true");
    let list = configs::config_list(
        &state.db,
        q.config_type.as_deref().filter(|t| !t.is_empty()),
        q.name.as_deref().filter(|n| !n.is_empty()),
        latest,
        parse_limit(q.limit.as_deref())?,
    )
    .await?;
    Ok(Json(list.iter().map(|(c, cur)| c.view(*cur)).collect()))
}

async fn config_fetch(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<ConfigView>, ApiError> {
    let id = parse_id(&raw)?;
    let config = configs::config_fetch(&state.db, id)
        .await?
        .ok_or_else(|| config_not_found(format_args!("with ID '{raw}'")))?;
    let current = configs::config_is_current(&state.db, &config).await?;
    Ok(Json(config.view(current)))
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    #[serde(rename = "type")]
    config_type: Option<String>,
    name: Option<String>,
    content: Option<String>,
    expected_latest_id: Option<String>,
}

async fn config_create(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: CreateBody = parse_json(&body)?;
    let missing = |field: &str| {
        ApiError::bad_request(
            codes::MISSING_FIELD,
            format!("Missing required field '{field}'"),
        )
    };
    let config_type = req
        .config_type
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("type"))?;
    let name = req
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| missing("name"))?;
    let content = req.content.ok_or_else(|| missing("content"))?;
    config_validate(&config_type, &content).map_err(|m| invalid_config(&config_type, &m))?;
    match configs::config_create(
        &state.db,
        &config_type,
        &name,
        &content,
        req.expected_latest_id.as_deref(),
    )
    .await?
    {
        ConfigCreate::Created(c) | ConfigCreate::Unchanged(c) => {
            Ok((StatusCode::CREATED, Json(c.view(true))).into_response())
        }
        ConfigCreate::Conflict { latest_id } => Ok((
            StatusCode::PRECONDITION_FAILED,
            Json(json!({
                "latest_id": latest_id,
                "expected_latest_id": req.expected_latest_id.unwrap_or_default(),
            })),
        )
            .into_response()),
    }
}

#[derive(Debug, Deserialize)]
struct DiffBody {
    #[serde(rename = "type")]
    config_type: Option<String>,
    name: Option<String>,
    content: Option<String>,
    from: Option<HashMap<String, Value>>,
    to: Option<HashMap<String, Value>>,
}

/// One side of `{"from": {...}, "to": {...}}`: a stored config by id, or inline content.
async fn diff_side(state: &AppState, side: &HashMap<String, Value>) -> Result<String, ApiError> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(id) = side.get("id") {
        let raw = text(id);
        let config = configs::config_fetch(&state.db, parse_id(&raw)?)
            .await?
            .ok_or_else(|| config_not_found(format_args!("with ID '{raw}'")))?;
        return Ok(config.content);
    }
    if let Some(content) = side.get("content") {
        return Ok(text(content));
    }
    Err(ApiError::bad_request(
        codes::INVALID_REQUEST,
        "Each of 'from' and 'to' needs an 'id' or a 'content'",
    ))
}

async fn config_diff(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: DiffBody = parse_json(&body)?;
    if let (Some(from), Some(to)) = (&req.from, &req.to) {
        let old = diff_side(&state, from).await?;
        let new = diff_side(&state, to).await?;
        return Ok(Json(json!({"diff": diff_json(&yaml_diff(&old, &new))})));
    }
    let config_type = req.config_type.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::bad_request(codes::MISSING_FIELD, "Missing required field 'type'")
    })?;
    let name = name_or_default(req.name.as_deref());
    let content = req.content.unwrap_or_default();
    config_validate(&config_type, &content).map_err(|m| invalid_config(&config_type, &m))?;
    let current = configs::config_latest(&state.db, &config_type, &name).await?;
    let (from_id, old) = match &current {
        Some(c) => (c.id.to_string(), c.content.as_str()),
        None => ("0".to_owned(), ""),
    };
    Ok(Json(json!({
        "diff": diff_json(&yaml_diff(old, &content)),
        "from": {"id": from_id},
    })))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(rename = "type")]
    config_type: Option<String>,
    name: Option<String>,
}

async fn config_delete(
    State(state): State<AppState>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let config_type = q.config_type.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::bad_request(codes::MISSING_FIELD, "Missing required parameter 'type'")
    })?;
    let name = name_or_default(q.name.as_deref());
    if configs::config_delete(&state.db, &config_type, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(config_not_found(format_args!(
            "with type '{config_type}' and name '{name}'"
        )))
    }
}

async fn config_delete_by_id(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&raw)?;
    if configs::config_delete_by_id(&state.db, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(config_not_found(format_args!("with ID '{raw}'")))
    }
}

#[derive(Debug, Deserialize)]
struct LegacyQuery {
    name: Option<String>,
    limit: Option<String>,
}

/// `cpi` configs have no name: everything is `default`.
fn legacy_name(config_type: &str, q: &LegacyQuery) -> String {
    if config_type == "cpi" {
        "default".to_owned()
    } else {
        name_or_default(q.name.as_deref())
    }
}

fn legacy_view(c: &Config) -> Value {
    json!({"properties": c.content, "created_at": time_text(c.created_at), "id": c.id.to_string(), "name": c.name})
}

async fn legacy_list(
    State(state): State<AppState>,
    Query(q): Query<LegacyQuery>,
    config_type: &'static str,
) -> Result<Json<Vec<Value>>, ApiError> {
    let name = legacy_name(config_type, &q);
    let limit = parse_limit(q.limit.as_deref())?;
    let list =
        configs::config_list(&state.db, Some(config_type), Some(&name), false, limit).await?;
    Ok(Json(list.iter().map(|(c, _)| legacy_view(c)).collect()))
}

fn body_text(body: &Bytes) -> Result<String, ApiError> {
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request(codes::INVALID_REQUEST, "Config must be UTF-8 text"))
}

async fn legacy_create(
    State(state): State<AppState>,
    Query(q): Query<LegacyQuery>,
    body: Bytes,
    config_type: &'static str,
) -> Result<StatusCode, ApiError> {
    let name = legacy_name(config_type, &q);
    let content = body_text(&body)?;
    config_validate(config_type, &content).map_err(|m| invalid_config(config_type, &m))?;
    configs::config_create(&state.db, config_type, &name, &content, None).await?;
    Ok(StatusCode::CREATED)
}

async fn legacy_diff(
    State(state): State<AppState>,
    Query(q): Query<LegacyQuery>,
    body: Bytes,
    config_type: &'static str,
) -> Result<Json<Value>, ApiError> {
    let name = legacy_name(config_type, &q);
    let content = body_text(&body)?;
    config_validate(config_type, &content).map_err(|m| invalid_config(config_type, &m))?;
    let old = configs::config_latest(&state.db, config_type, &name)
        .await?
        .map(|c| c.content)
        .unwrap_or_default();
    Ok(Json(json!({"diff": diff_json(&yaml_diff(&old, &content))})))
}
