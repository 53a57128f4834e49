//! Stemcells (director-api §4.1): list, the upload pre-check, upload and delete (tasks).

use axum::body::Body;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, CurrentUser, context_id, task_start};
use crate::error::{ApiError, codes};
use crate::stemcells::{self, DELETE_STEMCELL, STEMCELL_NOT_FOUND, UPDATE_STEMCELL};
use crate::tasks::store::NewTask;
use crate::uploads;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/stemcells", get(stemcell_list).post(stemcell_upload))
        .route("/stemcell_uploads", post(stemcell_upload_check))
        .route("/stemcells/{name}/{version}", delete(stemcell_delete))
}

async fn stemcell_list(
    State(state): State<AppState>,
) -> Result<Json<Vec<stemcells::StemcellView>>, ApiError> {
    Ok(Json(stemcells::stemcell_view_list(&state.db).await?))
}

async fn stemcell_upload_check(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let field = |k: &str| match &body["stemcell"][k] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (Some(name), Some(version)) = (field("name"), field("version")) else {
        return Err(ApiError::bad_request(
            codes::MISSING_FIELD,
            "stemcell name and version are required",
        ));
    };
    let exists = stemcells::stemcell_fetch(&state.db, &name, &version)
        .await?
        .is_some();
    Ok(Json(json!({ "needed": !exists })))
}

#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    fix: Option<String>,
    rebase: Option<String>,
}

/// The task payload of an upload: the body streamed to a file, or the JSON location.
pub(super) async fn upload_payload(
    state: &AppState,
    req: Request,
    what: &str,
    q: &UploadQuery,
) -> Result<Value, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut payload = json!({
        "fix": q.fix.as_deref() == Some("true"),
        "rebase": q.rebase.as_deref() == Some("true"),
    });
    if is_json {
        let bytes = axum::body::to_bytes(req.into_body(), 1024 * 1024)
            .await
            .map_err(|_| ApiError::bad_request(codes::INVALID_REQUEST, "request body too large"))?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(codes::INVALID_REQUEST, format!("invalid JSON body: {e}"))
        })?;
        let location = body["location"].as_str().ok_or_else(|| {
            ApiError::bad_request(codes::MISSING_FIELD, format!("{what} location is required"))
        })?;
        payload["location"] = json!(location);
        if let Some(sha1) = body["sha1"].as_str() {
            payload["sha1"] = json!(sha1);
        }
    } else {
        let dest = uploads::upload_path(&state.services.data_dir, ".tgz");
        let body: Body = req.into_body();
        uploads::body_to_file(body, &dest, uploads::MAX_UPLOAD_BYTES)
            .await
            .map_err(|e| {
                ApiError::bad_request(
                    codes::INVALID_REQUEST,
                    format!(
                        "cannot receive the {what} upload: {}",
                        crate::error::error_chain(&e)
                    ),
                )
            })?;
        payload["path"] = json!(dest.to_string_lossy());
    }
    Ok(payload)
}

async fn stemcell_upload(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let context_id = context_id(&headers)?;
    let payload = upload_payload(&state, req, "stemcell", &q).await?;
    task_start(
        &state,
        NewTask {
            task_type: UPDATE_STEMCELL.to_owned(),
            description: "create stemcell".to_owned(),
            payload,
            user,
            deployment: None,
            context_id,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    force: Option<String>,
}

async fn stemcell_delete(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path((name, version)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if stemcells::stemcell_fetch(&state.db, &name, &version)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(
            STEMCELL_NOT_FOUND,
            format!("Stemcell '{name}/{version}' doesn't exist"),
        ));
    }
    task_start(
        &state,
        NewTask {
            task_type: DELETE_STEMCELL.to_owned(),
            description: format!("delete stemcell: {name}/{version}"),
            payload: json!({"name": name, "version": version, "force": q.force.as_deref() == Some("true")}),
            user,
            deployment: None,
            context_id: context_id(&headers)?,
        },
    )
    .await
}
