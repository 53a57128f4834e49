//! `sync_dns(blobstore_id, multi_digest, version)` (sync): fetches the DNS records blob
//! unless the stored version is already at least `version`, checks its embedded version and
//! saves it as `instance/dns/records.json`. Returns `"synced"`.

use super::{ActionDef, ActionError, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use serde_json::Value;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "sync_dns",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn stored_version(agent: &Agent) -> Option<u64> {
    let bytes = std::fs::read(agent.layout.dns_records()).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("version").and_then(Value::as_u64)
}

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let blob_id: String = inv.args.get(0, 3)?;
        let digest: String = inv.args.get(1, 3)?;
        let version: u64 = inv.args.get(2, 3)?;
        if stored_version(&agent).is_some_and(|v| v >= version) {
            return Ok("synced".into());
        }
        let blobstore = agent
            .blobstore()?
            .ok_or_else(|| ActionError::msg("Syncing DNS: no blobstore configured"))?;
        let tmp = agent.layout.tmp();
        let io = |e: std::io::Error| ActionError::msg(format!("Syncing DNS: {e}"));
        std::fs::create_dir_all(&tmp).map_err(io)?;
        let blob = tmp.join(format!("dns-{}", uuid::Uuid::new_v4()));
        let fetched = blobstore.fetch(&blob_id, &digest, &blob).await;
        let bytes = fetched.map(|()| std::fs::read(&blob));
        let _ = std::fs::remove_file(&blob);
        let bytes = bytes?.map_err(io)?;
        let records: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ActionError::msg(format!("Unmarshalling DNS records: {e}")))?;
        let embedded = records.get("version").and_then(Value::as_u64);
        if embedded != Some(version) {
            return Err(ActionError::msg(
                "version from unpacked dns records does not match version from message",
            ));
        }
        let path = agent.layout.dns_records();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, &bytes).map_err(io)?;
        std::fs::rename(&partial, &path).map_err(io)?;
        Ok("synced".into())
    })
}
