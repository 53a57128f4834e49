//! `prepare(spec)` (async): downloads and unpacks jobs and packages without enabling them, to
//! shorten the later stop/apply window.

use super::{ActionDef, ActionFuture, Invocation, not_sync};
use crate::agent::{Agent, decode_spec};
use crate::applier;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "prepare",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let spec = decode_spec(&inv.args, 0, 1)?;
        if spec.has_configuration() {
            let blobstore = agent.blobstore()?;
            applier::prepare(&agent.layout, blobstore.as_ref(), &spec).await?;
        }
        Ok("prepared".into())
    })
}
