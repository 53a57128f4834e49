//! `get_state(["full"])` (sync): the persisted spec merged with agent facts (§4.3); vitals
//! only with `"full"`.

use super::{ActionDef, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use bosh_agent_protocol::AgentState;
use bosh_agent_protocol::state::VmRef;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "get_state",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let full = inv.args.optional::<String>(0)?.as_deref() == Some("full");
        let state = AgentState {
            spec: agent.spec(),
            agent_id: agent.agent_id.clone(),
            vm: VmRef {
                name: agent.settings().vm.name,
            },
            job_state: agent.supervisor.job_state(),
            processes: agent.supervisor.processes(),
            vitals: full.then(|| agent.vitals.sample(agent.layout.base())),
        };
        Ok(serde_json::to_value(state).unwrap_or_default())
    })
}
