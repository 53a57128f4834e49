//! `GET /resources/{blobstore_id}`: a blob as a raw download (logs, exported releases).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::io::ReaderStream;

use super::AppState;
use crate::blobstore::BlobstoreError;
use crate::error::ApiError;

pub const RESOURCE_NOT_FOUND: u32 = 100002;

pub fn routes() -> Router<AppState> {
    Router::new().route("/resources/{id}", get(resource_fetch))
}

async fn resource_fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.services.blobstore.get(&id).await {
        Ok(reader) => Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Body::from_stream(ReaderStream::new(reader)),
        )
            .into_response()),
        Err(BlobstoreError::NotFound(_) | BlobstoreError::InvalidId(_)) => Err(
            ApiError::not_found(RESOURCE_NOT_FOUND, format!("Resource '{id}' not found")),
        ),
        Err(e) => {
            tracing::error!(error = %crate::error::error_chain(&e), "cannot read a blob");
            Err(ApiError::internal(
                "Internal director error reading the blobstore",
            ))
        }
    }
}
