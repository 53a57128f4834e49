//! JSON state files, written atomically (temp file + rename) because several CPI processes
//! and the agent read them concurrently.

use crate::error::CpiError;
use bosh_cpi_protocol::{CpiErrorKind, Method};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

pub(super) fn io_error(method: Method, what: &str, path: &Path, e: std::io::Error) -> CpiError {
    CpiError::cloud(
        CpiErrorKind::CloudError,
        method,
        format!("{what} '{}': {e}", path.display()),
    )
}

pub(super) fn read_json<T: DeserializeOwned>(method: Method, path: &Path) -> Result<T, CpiError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(method, "Reading", path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CpiError::cloud(
            CpiErrorKind::CloudError,
            method,
            format!("Parsing '{}': {e}", path.display()),
        )
    })
}

pub(super) fn write_json<T: Serialize>(
    method: Method,
    path: &Path,
    value: &T,
) -> Result<(), CpiError> {
    let bytes = serde_json::to_vec_pretty(value).expect("sim state serializes to JSON");
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes).map_err(|e| io_error(method, "Writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(method, "Renaming into", path, e)
    })
}
