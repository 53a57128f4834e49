//! `migrate_disk` (async, arguments ignored): copies `store` onto the disk mounted at
//! `store_migration_target`, then remounts that disk at `store`. Result `{}`.

use super::disk_support::io;
use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "migrate_disk",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, _inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let disks = agent.platform.disks();
        let (store, target) = (agent.layout.store(), agent.layout.store_migration_target());
        let Some(new_device) = disks.mounted_device(&target) else {
            return Err(ActionError::msg(
                "Migrating persistent disk: no disk is mounted at the migration target",
            ));
        };
        if disks.mounted_device(&store).is_some() {
            let (s, t) = (store.clone(), target.clone());
            tokio::task::spawn_blocking(move || copy_tree(&s, &t))
                .await
                .map_err(|e| ActionError::msg(e.to_string()))?
                .map_err(io("Copying persistent disk"))?;
            disks
                .unmount(&store)
                .map_err(io("Unmounting old persistent disk"))?;
        }
        disks
            .unmount(&target)
            .map_err(io("Unmounting migration target"))?;
        disks
            .mount(&new_device, &store)
            .map_err(io("Remounting new persistent disk"))?;
        Ok(json!({}))
    })
}

/// Copies the contents of `from` into `to`, keeping permissions and symlinks.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .map_err(std::io::Error::other)?;
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest)?;
            std::fs::set_permissions(&dest, entry.metadata()?.permissions())?;
        } else if ft.is_symlink() {
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
