//! `get_task(id)` (sync): a running task's handle, a finished task's bare value (§10.3), or
//! the task's error.

use super::{ActionDef, ActionError, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use crate::task::TaskOutcome;
use bosh_agent_protocol::{TaskHandle, TaskState};
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "get_task",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let id: String = inv.args.get(0, 1)?;
        match agent.tasks.outcome(&id)? {
            TaskOutcome::Running => Ok(serde_json::to_value(TaskHandle {
                agent_task_id: id,
                state: TaskState::Running,
            })
            .unwrap_or_default()),
            TaskOutcome::Done(v) => Ok(v),
            TaskOutcome::Failed(e) => Err(ActionError::msg(format!("Task {id} result: {e}"))),
        }
    })
}
