//! `add_persistent_disk(cid, hint)` (async): records the CPI's attach hint (string or object)
//! in `bosh/persistent_disk_hints.json`. Result `{}`.

use super::disk_support::{read_hints, write_hints};
use super::{ActionDef, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use serde_json::{Value, json};
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "add_persistent_disk",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let cid: String = inv.args.get(0, 2)?;
        let hint: Value = inv.args.get(1, 2)?;
        let mut hints = read_hints(&agent);
        hints.insert(cid, hint);
        write_hints(&agent, &hints)?;
        Ok(json!({}))
    })
}
