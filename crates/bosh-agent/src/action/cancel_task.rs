//! `cancel_task(id)` (sync): only cancellable actions (drain) stop; others answer
//! "not supported".

use super::{ActionDef, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "cancel_task",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let id: String = inv.args.get(0, 1)?;
        agent.tasks.cancel(&id)?;
        Ok("canceled".into())
    })
}
