//! The one error type API handlers return. It renders as the compact JSON body the CLI shows
//! verbatim: `{"code":N,"description":"…"}` (no spaces: the CLI greps for `"code":440012`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::db::DbError;

/// BOSH error codes the CLI or users recognise.
pub mod codes {
    pub const TASK_NOT_FOUND: u32 = 10000;
    pub const TASK_NOT_CANCELLABLE: u32 = 10001;
    pub const MISSING_FIELD: u32 = 40001;
    pub const INVALID_REQUEST: u32 = 40000;
    pub const DEPLOYMENT_NOT_FOUND: u32 = 70000;
    pub const CONFIG_INVALID: u32 = 440001;
    pub const CONFIG_NOT_FOUND: u32 = 440012;
    pub const INTERNAL: u32 = 100;
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub description: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            description: description.into(),
        }
    }

    pub fn not_found(code: u32, description: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, description)
    }

    pub fn bad_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub fn internal(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            codes::INTERNAL,
            description,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "description": self.description});
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        tracing::error!(error = %error_chain(&err), "database error in API handler");
        ApiError::internal("Internal director error: database unavailable")
    }
}

/// `err: cause: cause…`, for logs (our Display impls never repeat their source).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}
