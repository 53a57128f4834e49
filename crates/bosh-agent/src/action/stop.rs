//! `stop` (async): writes the `stopped` marker and stops every `vcap` service; with protocol
//! 3 it waits (≤ 5 min) until they are gone.

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use std::sync::Arc;
use std::time::Duration;

pub const ACTION: ActionDef = ActionDef {
    name: "stop",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let _guard = agent.spec_lock.lock().await;
        let marker = agent.layout.stopped_marker();
        std::fs::write(&marker, b"")
            .map_err(|e| ActionError::msg(format!("Writing {}: {e}", marker.display())))?;
        agent
            .supervisor
            .stop_all(inv.protocol > 2, Duration::from_secs(300))
            .await?;
        Ok("stopped".into())
    })
}
