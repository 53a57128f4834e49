//! `upload_blob({blob_id, checksum, payload})` (async): stores a base64 payload (newlines
//! tolerated) at `data/sensitive_blobs/<blob_id>` after checking it against `checksum`.
//! Later blobstore reads of that id are served from there first. Result: the blob id.

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use base64::Engine as _;
use bosh_types::digest::DigestString;
use serde::Deserialize;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "upload_blob",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

#[derive(Debug, Deserialize)]
struct UploadBlobSpec {
    #[serde(default)]
    blob_id: String,
    #[serde(default)]
    checksum: String,
    #[serde(default)]
    payload: String,
}

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let spec: UploadBlobSpec =
            inv.args
                .get_folded(0, 1, &["blob_id", "checksum", "payload"])?;
        if spec.blob_id.is_empty() || spec.blob_id.contains('/') || spec.blob_id.starts_with('.') {
            return Err(ActionError::msg(format!(
                "Invalid blob id '{}'",
                spec.blob_id
            )));
        }
        let cleaned: String = spec
            .payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let data = base64::engine::general_purpose::STANDARD
            .decode(cleaned.as_bytes())
            .map_err(|e| ActionError::msg(format!("Decoding payload: {e}")))?;
        let digest = DigestString::parse(&spec.checksum)
            .map_err(|e| ActionError::msg(format!("Parsing checksum: {e}")))?;
        digest
            .verify_bytes(&data)
            .map_err(|e| ActionError::msg(format!("Payload corrupted: {e}")))?;
        let dir = agent.layout.sensitive_blobs();
        let path = dir.join(&spec.blob_id);
        let io = |e: std::io::Error| ActionError::msg(format!("Saving blob {}: {e}", spec.blob_id));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tmp = dir.join(format!(".{}.partial", spec.blob_id));
        std::fs::write(&tmp, &data).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(spec.blob_id.into())
    })
}
