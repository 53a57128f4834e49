//! Releases and package matching (director-api §4.2, §4.3).

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stemcells::{UploadQuery, upload_payload};
use super::{AppState, CurrentUser, context_id, task_start};
use crate::error::{ApiError, codes};
use crate::releases::{
    self, DELETE_RELEASE, RELEASE_NOT_FOUND, RELEASE_VERSION_NOT_FOUND, UPDATE_RELEASE,
};
use crate::tasks::store::NewTask;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/releases", get(release_list).post(release_upload))
        .route(
            "/releases/{name}",
            get(release_fetch).delete(release_delete),
        )
        .route("/packages/matches", post(package_matches))
        .route("/packages/matches_compiled", post(package_matches_compiled))
}

async fn release_list(
    State(state): State<AppState>,
) -> Result<Json<Vec<releases::ReleaseView>>, ApiError> {
    Ok(Json(releases::release_view_list(&state.db).await?))
}

#[derive(Debug, Deserialize)]
struct VersionQuery {
    version: Option<String>,
    force: Option<String>,
}

fn release_not_found(name: &str) -> ApiError {
    ApiError::not_found(RELEASE_NOT_FOUND, format!("Release '{name}' doesn't exist"))
}

async fn release_fetch(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let db = &state.db;
    let rid = releases::release_id_fetch(db, &name)
        .await?
        .ok_or_else(|| release_not_found(&name))?;
    match q.version {
        Some(v) => {
            let rv = releases::release_version_fetch(db, rid, &v)
                .await?
                .ok_or_else(|| {
                    ApiError::not_found(
                        RELEASE_VERSION_NOT_FOUND,
                        format!("Release version '{name}/{v}' doesn't exist"),
                    )
                })?;
            Ok(Json(releases::release_version_inspect(db, rv.id).await?))
        }
        None => {
            let versions: Vec<String> = releases::release_version_list(db, rid)
                .await?
                .into_iter()
                .map(|rv| rv.version)
                .collect();
            let mut packages = Vec::new();
            let mut jobs = Vec::new();
            if let Some(last) = releases::release_version_list(db, rid).await?.last() {
                let inspect = releases::release_version_inspect(db, last.id).await?;
                packages = inspect["packages"].as_array().cloned().unwrap_or_default();
                jobs = inspect["jobs"].as_array().cloned().unwrap_or_default();
            }
            Ok(Json(
                json!({"packages": packages, "jobs": jobs, "versions": versions}),
            ))
        }
    }
}

async fn release_upload(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let context_id = context_id(&headers)?;
    let payload = upload_payload(&state, req, "release", &q).await?;
    task_start(
        &state,
        NewTask {
            task_type: UPDATE_RELEASE.to_owned(),
            description: "create release".to_owned(),
            payload,
            user,
            deployment: None,
            context_id,
        },
    )
    .await
}

async fn release_delete(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rid = releases::release_id_fetch(&state.db, &name)
        .await?
        .ok_or_else(|| release_not_found(&name))?;
    if let Some(v) = &q.version
        && releases::release_version_fetch(&state.db, rid, v)
            .await?
            .is_none()
    {
        return Err(ApiError::not_found(
            RELEASE_VERSION_NOT_FOUND,
            format!("Release version '{name}/{v}' doesn't exist"),
        ));
    }
    let description = match &q.version {
        Some(v) => format!("delete release: {name}/{v}"),
        None => format!("delete release: {name}"),
    };
    task_start(
        &state,
        NewTask {
            task_type: DELETE_RELEASE.to_owned(),
            description,
            payload: json!({"name": name, "version": q.version, "force": q.force.as_deref() == Some("true")}),
            user,
            deployment: None,
            context_id: context_id(&headers)?,
        },
    )
    .await
}

fn manifest_body(body: &str) -> Result<bosh_yaml::Value, ApiError> {
    bosh_yaml::parse(body).map_err(|e| {
        ApiError::bad_request(
            codes::INVALID_REQUEST,
            format!("release manifest is not valid YAML: {e}"),
        )
    })
}

async fn package_matches(
    State(state): State<AppState>,
    body: String,
) -> Result<Json<Vec<String>>, ApiError> {
    let manifest = manifest_body(&body)?;
    Ok(Json(releases::package_matches(&state.db, &manifest).await?))
}

async fn package_matches_compiled(
    State(state): State<AppState>,
    body: String,
) -> Result<Json<Vec<String>>, ApiError> {
    let manifest = manifest_body(&body)?;
    Ok(Json(
        releases::package_matches_compiled(&state.db, &manifest).await?,
    ))
}
