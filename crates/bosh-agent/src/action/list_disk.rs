//! `list_disk` (async from protocol 3, else sync): cids of the persistent disks currently
//! mounted, from both settings and recorded hints.

use super::disk_support::mounted_cids;
use super::{ActionDef, ActionFuture, Invocation};
use crate::agent::Agent;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "list_disk",
    asynchronous: |protocol| protocol >= 3,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, _inv: Invocation) -> ActionFuture {
    Box::pin(async move { Ok(serde_json::json!(mounted_cids(&agent))) })
}
