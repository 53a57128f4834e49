//! `unmount_disk(cid)` (async): unmounts the disk from `store` or the migration target.
//! Result `{"message": "Unmounted partition of <dev>"}` or `"Partition of <dev> is not
//! mounted"`.

use super::disk_support::{find_disk, io};
use super::{ActionDef, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use serde_json::json;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "unmount_disk",
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
        for mp in [agent.layout.store(), agent.layout.store_migration_target()] {
            if disks.mounted_device(&mp).as_deref() == Some(device.as_str()) {
                disks
                    .unmount(&mp)
                    .map_err(io("Unmounting persistent disk"))?;
                return Ok(json!({"message": format!("Unmounted partition of {device}")}));
            }
        }
        Ok(json!({"message": format!("Partition of {device} is not mounted")}))
    })
}
