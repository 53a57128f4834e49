//! The blobstore served to agents with the `dav` provider's layout (agent-protocol §5.2):
//! `/blobstore/<2 hex of SHA-1(id)>/<id>` with GET, HEAD, PUT and DELETE, behind basic auth
//! with the blobstore's own credentials (not the admin user's). Agents are configured with
//! endpoint `https://<director>/blobstore`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures::TryStreamExt;
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio_util::io::{ReaderStream, StreamReader};

use super::AppState;
use crate::blobstore::{BlobstoreError, blob_id_valid, blob_prefix};
use crate::uploads::MAX_UPLOAD_BYTES;

/// Where the DAV endpoint lives on the director's listener.
pub const DAV_PREFIX: &str = "/blobstore";

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/blobstore/{prefix}/{id}",
            get(blob_get).put(blob_put).delete(blob_delete),
        )
        .route_layer(middleware::from_fn_with_state(state, require_dav_auth))
}

async fn require_dav_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest)
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .is_some_and(|given| {
            let expected = format!("{}:{}", state.dav.user, state.dav.password);
            bool::from(given.as_slice().ct_eq(expected.as_bytes()))
        });
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"BOSH Blobstore\"")],
            "Not authorized\n",
        )
            .into_response()
    }
}

/// The blob id when the path is well formed and its prefix matches the id.
fn blob_path_id(prefix: &str, id: &str) -> Option<String> {
    (blob_id_valid(id) && prefix == blob_prefix(id)).then(|| id.to_owned())
}

fn store_error(e: BlobstoreError) -> Response {
    match e {
        BlobstoreError::NotFound(_) | BlobstoreError::InvalidId(_) => {
            StatusCode::NOT_FOUND.into_response()
        }
        other => {
            tracing::error!(error = %crate::error::error_chain(&other), "blobstore request failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn blob_get(
    State(state): State<AppState>,
    Path((prefix, id)): Path<(String, String)>,
) -> Response {
    let Some(id) = blob_path_id(&prefix, &id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match state.services.blobstore.get(&id).await {
        Ok(reader) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Body::from_stream(ReaderStream::new(reader)),
        )
            .into_response(),
        Err(e) => store_error(e),
    }
}

async fn blob_put(
    State(state): State<AppState>,
    Path((prefix, id)): Path<(String, String)>,
    body: Body,
) -> Response {
    let Some(id) = blob_path_id(&prefix, &id) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    // One byte over the cap tells an oversized body from one that fits exactly.
    let reader = StreamReader::new(stream).take(MAX_UPLOAD_BYTES + 1);
    match state.services.blobstore.put(&id, Box::pin(reader)).await {
        Ok(n) if n > MAX_UPLOAD_BYTES => {
            let _ = state.services.blobstore.delete(&id).await;
            StatusCode::PAYLOAD_TOO_LARGE.into_response()
        }
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(e) => store_error(e),
    }
}

async fn blob_delete(
    State(state): State<AppState>,
    Path((prefix, id)): Path<(String, String)>,
) -> Response {
    let Some(id) = blob_path_id(&prefix, &id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match state.services.blobstore.delete(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => store_error(e),
    }
}
