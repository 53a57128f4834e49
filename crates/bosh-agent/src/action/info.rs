//! `info` (sync): the agent API level.

use super::{ActionDef, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "info",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(_: Arc<Agent>, _: Invocation) -> ActionFuture {
    Box::pin(async { Ok(serde_json::json!({"api_version": 1})) })
}
