//! `ping` (sync): liveness; the director's `wait_until_ready` loops on it.

use super::{ActionDef, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "ping",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(_: Arc<Agent>, _: Invocation) -> ActionFuture {
    Box::pin(async { Ok("pong".into()) })
}
