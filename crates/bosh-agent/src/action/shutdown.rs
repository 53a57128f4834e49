//! `shutdown` (sync): answers `""`, tells the health monitor, then the agent stops its jobs
//! and the platform powers off.

use super::{ActionDef, ActionFuture, Invocation, sync};
use crate::agent::{Agent, ExitRequest};
use bosh_agent_protocol::subjects;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "shutdown",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, _: Invocation) -> ActionFuture {
    Box::pin(async move {
        agent.publish(
            subjects::shutdown(&agent.agent_id),
            &serde_json::Value::Null,
        );
        agent.request_exit(ExitRequest::PowerOff);
        Ok("".into())
    })
}
