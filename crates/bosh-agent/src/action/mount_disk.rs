//! `mount_disk(cid)` (async): mounts the disk at `store`, or at `store_migration_target`
//! when `store` already holds a different disk. Mounting an already mounted disk is a no-op.
//! Result `{}`.

use super::disk_support::{find_disk, io};
use super::{ActionDef, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use serde_json::json;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "mount_disk",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let cid: String = inv.args.get(0, 1)?;
        let device = find_disk(&agent, &cid)?;
        let disks = agent.platform.disks();
        let (store, target) = (agent.layout.store(), agent.layout.store_migration_target());
        let mount_point = match disks.mounted_device(&store) {
            None => store,
            Some(d) if d == device => return Ok(json!({})),
            Some(_) => target,
        };
        disks
            .mount(&device, &mount_point)
            .map_err(io("Mounting persistent disk"))?;
        Ok(json!({}))
    })
}
