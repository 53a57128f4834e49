//! `fetch_logs(log_types, filters)` (async): tars the matching files of the requested log
//! directories (`job` = `sys/log`, `agent` = `bosh/log`, `system` = `/var/log`), uploads the
//! tarball and returns `{"blobstore_id", "sha1"}` (bare hex sha1 of the tarball).

use super::compile_package::{sha1_file, tgz_dir};
use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "fetch_logs",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

const DEFAULT_FILTER: &str = "**/*";

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let log_types: String = inv.args.get(0, 2)?;
        let filters: Option<Vec<String>> = inv.args.get(1, 2)?;
        let mut filters = filters.unwrap_or_default();
        if filters.is_empty() {
            filters.push(DEFAULT_FILTER.to_owned());
        }
        let matcher = build_matcher(&filters)?;
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        for t in log_types.split(',').map(str::trim) {
            let dir = match t {
                "job" => agent.layout.data_sys().join("log"),
                "agent" => agent.layout.agent_log_dir(),
                "system" => PathBuf::from("/var/log"),
                _ => return Err(ActionError::msg("Invalid log type")),
            };
            dirs.push((t.to_owned(), dir));
        }
        let blobstore = agent
            .blobstore()?
            .ok_or_else(|| ActionError::msg("Fetching logs: no blobstore configured"))?;
        let tmp = agent.layout.tmp();
        std::fs::create_dir_all(&tmp)
            .map_err(|e| ActionError::msg(format!("Creating {}: {e}", tmp.display())))?;
        let staging = tmp.join(format!("logs-{}", uuid::Uuid::new_v4()));
        let tarball = staging.with_extension("tgz");
        let result = async {
            let (s, t) = (staging.clone(), tarball.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&s)?;
                let single = dirs.len() == 1;
                for (name, dir) in &dirs {
                    let dest = if single { s.clone() } else { s.join(name) };
                    copy_matching(dir, &dest, &matcher)?;
                }
                tgz_dir(&s, &t, |_| true)
            })
            .await
            .map_err(|e| ActionError::msg(e.to_string()))?
            .map_err(|e| ActionError::msg(format!("Making logs tarball: {e}")))?;
            let sha1 = sha1_file(&tarball)?;
            let id = blobstore.put(&tarball).await.map_err(|e| {
                ActionError::msg(format!(
                    "Uploading logs tarball: {}",
                    crate::error_chain(&e)
                ))
            })?;
            Ok(json!({"blobstore_id": id, "sha1": sha1}))
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_file(&tarball);
        result
    })
}

fn build_matcher(filters: &[String]) -> Result<globset::GlobSet, ActionError> {
    let mut b = globset::GlobSetBuilder::new();
    for f in filters {
        let glob = globset::GlobBuilder::new(f.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| ActionError::msg(format!("Invalid filter '{f}': {e}")))?;
        b.add(glob);
    }
    b.build()
        .map_err(|e| ActionError::msg(format!("Invalid filters: {e}")))
}

/// Copies the regular files under `dir` whose relative path matches into `dest`, keeping
/// their relative paths. A missing `dir` contributes nothing.
fn copy_matching(dir: &Path, dest: &Path, matcher: &globset::GlobSet) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir).follow_links(true).min_depth(1) {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        if !matcher.is_match(rel) {
            continue;
        }
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Unreadable files (system logs) are skipped, as a best-effort copy.
        let _ = std::fs::copy(entry.path(), &target);
    }
    Ok(())
}
