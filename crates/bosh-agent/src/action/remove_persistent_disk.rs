//! `remove_persistent_disk(cid)` (async): forgets the hint recorded for `cid`. Result `{}`.

use super::disk_support::{read_hints, write_hints};
use super::{ActionDef, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use serde_json::json;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "remove_persistent_disk",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let cid: String = inv.args.get(0, 1)?;
        let mut hints = read_hints(&agent);
        if hints.remove(&cid).is_some() {
            write_hints(&agent, &hints)?;
        }
        Ok(json!({}))
    })
}
