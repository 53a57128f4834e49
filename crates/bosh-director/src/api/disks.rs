//! Day-2 API: orphaned disks, orphaning, attaching, orphaned VMs and clean-up
//! (director-api.md §5.11).

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::deployments::deployment_not_found;
use super::{AppState, CurrentUser, context_id, task_start};
use crate::cleanup::{self, CleanupOptions, DELETE_ARTIFACTS};
use crate::disks::{
    self, ATTACH_DISK, DELETE_ORPHAN_DISKS, DELETING_PERSISTENT_DISK, ORPHAN_DISK, OrphanDiskView,
};
use crate::error::{ApiError, codes};
use crate::tasks::store::NewTask;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/disks", get(orphan_disk_list))
        .route("/disks/{cid}", axum::routing::delete(disk_delete))
        .route("/disks/{cid}/attachments", put(disk_attach))
        .route("/orphaned_vms", get(orphaned_vm_list))
        .route("/cleanup", post(cleanup_start))
        .route("/cleanup/dryrun", get(cleanup_dry_run))
}

async fn orphan_disk_list(
    State(state): State<AppState>,
) -> Result<Json<Vec<OrphanDiskView>>, ApiError> {
    Ok(Json(disks::orphan_disk_list(&state.db).await?))
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    orphan: Option<String>,
}

/// `DELETE /disks/{cid}` deletes an orphaned disk; with `?orphan=true` it orphans an attached
/// one instead (Ruby: any value but `false` means orphan).
async fn disk_delete(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(cid): Path<String>,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let context_id = context_id(&headers)?;
    let orphan = q.orphan.as_deref().is_some_and(|o| o != "false");
    if orphan {
        return task_start(
            &state,
            NewTask {
                task_type: ORPHAN_DISK.to_owned(),
                description: "orphan disk".to_owned(),
                payload: json!({"disk_cid": cid}),
                user,
                deployment: None,
                context_id,
            },
        )
        .await;
    }
    if disks::persistent_disk_exists(&state.db, &cid).await? {
        return Err(ApiError::bad_request(
            DELETING_PERSISTENT_DISK,
            format!("Deleting persistent disk is not supported: [\"{cid}\"]"),
        ));
    }
    task_start(
        &state,
        NewTask {
            task_type: DELETE_ORPHAN_DISKS.to_owned(),
            description: "delete orphan disks".to_owned(),
            payload: json!({"orphan_disk_cids": [cid]}),
            user,
            deployment: None,
            context_id,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
struct AttachQuery {
    deployment: Option<String>,
    job: Option<String>,
    instance_id: Option<String>,
    disk_properties: Option<String>,
}

/// `PUT /disks/{cid}/attachments?deployment=&job=&instance_id=[&disk_properties=copy]`.
async fn disk_attach(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    Path(cid): Path<String>,
    Query(q): Query<AttachQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let deployment = q.deployment.unwrap_or_default();
    if crate::deployments::deployment_fetch(&state.db, &deployment)
        .await?
        .is_none()
    {
        return Err(deployment_not_found(&deployment));
    }
    let job = q.job.unwrap_or_default();
    let instance_id = q.instance_id.unwrap_or_default();
    task_start(
        &state,
        NewTask {
            task_type: ATTACH_DISK.to_owned(),
            description: format!("attach disk '{cid}' to '{job}/{instance_id}'"),
            payload: json!({
                "deployment": deployment,
                "job": job,
                "instance_id": instance_id,
                "disk_cid": cid,
                "disk_properties": q.disk_properties,
            }),
            user,
            deployment: Some(deployment.clone()),
            context_id: context_id(&headers)?,
        },
    )
    .await
}

/// Always empty: a VM this director stops tracking is deleted at once (a failed create is
/// undone, `delete-vm` and deploys delete through the CPI), so it keeps no orphaned VMs.
async fn orphaned_vm_list() -> Json<Vec<Value>> {
    Json(Vec::new())
}

#[derive(Debug, Deserialize)]
struct DryRunQuery {
    remove_all: Option<String>,
    keep_orphaned_disks: Option<String>,
}

async fn cleanup_dry_run(
    State(state): State<AppState>,
    Query(q): Query<DryRunQuery>,
) -> Result<Json<Value>, ApiError> {
    let opts = CleanupOptions {
        remove_all: q.remove_all.as_deref() == Some("true"),
        keep_orphaned_disks: q.keep_orphaned_disks.as_deref() == Some("true"),
    };
    let plan = cleanup::cleanup_plan(&state.db, opts).await?;
    Ok(Json(plan.dry_run_json()))
}

#[derive(Debug, Deserialize)]
struct CleanupBody {
    #[serde(default)]
    config: CleanupOptions,
}

/// `POST /cleanup` with `{"config":{"remove_all":bool,"keep_orphaned_disks":bool}}`.
async fn cleanup_start(
    State(state): State<AppState>,
    Extension(CurrentUser(user)): Extension<CurrentUser>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CleanupBody = if body.is_empty() {
        CleanupBody {
            config: CleanupOptions::default(),
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(codes::INVALID_REQUEST, format!("Invalid JSON body: {e}"))
        })?
    };
    task_start(
        &state,
        NewTask {
            task_type: DELETE_ARTIFACTS.to_owned(),
            description: body.config.description().to_owned(),
            payload: serde_json::to_value(body.config).unwrap_or_else(|_| json!({})),
            user,
            deployment: None,
            context_id: context_id(&headers)?,
        },
    )
    .await
}
