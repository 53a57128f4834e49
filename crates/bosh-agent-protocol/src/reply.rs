//! Director-side decoding of agent replies (§2.4 `AgentMessageConverter`).

use crate::envelope::{TaskHandle, TaskState};
use serde_json::Value;

/// A decoded agent reply.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReply {
    /// An asynchronous action is still running; poll `get_task` with the id.
    Task(TaskHandle),
    /// The final value.
    Done(Value),
}

/// The reply was an exception, or not JSON the director understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{message}")]
    Exception { message: String },
    #[error("agent reply is not a JSON object")]
    Malformed,
}

impl AgentReply {
    /// Normalises a raw reply as the Ruby director does: `{exception}` is an error (with any
    /// `backtrace` lines appended); `{value: v}` is `v`, a task handle when `v` has both
    /// `agent_task_id` and `state`; a bare object without `value` is the value itself.
    pub fn decode(raw: Value) -> Result<AgentReply, ReplyError> {
        let Value::Object(mut map) = raw else {
            return Err(ReplyError::Malformed);
        };
        if let Some(exc) = map.remove("exception") {
            return Err(ReplyError::Exception {
                message: exception_message(&exc),
            });
        }
        let value = match map.remove("value") {
            Some(v) => v,
            None => Value::Object(map),
        };
        Ok(match as_task_handle(&value) {
            Some(handle) => AgentReply::Task(handle),
            None => AgentReply::Done(value),
        })
    }
}

fn exception_message(exc: &Value) -> String {
    let message = match exc.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => exc.to_string(),
    };
    match exc.get("backtrace").and_then(Value::as_array) {
        Some(lines) if !lines.is_empty() => {
            let bt: Vec<String> = lines
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| l.to_string())
                })
                .collect();
            format!("{message}\n{}", bt.join("\n"))
        }
        _ => message,
    }
}

fn as_task_handle(value: &Value) -> Option<TaskHandle> {
    let obj = value.as_object()?;
    let id = obj.get("agent_task_id")?.as_str()?;
    let state = match obj.get("state")?.as_str()? {
        "running" => TaskState::Running,
        "done" => TaskState::Done,
        "failed" => TaskState::Failed,
        _ => return None,
    };
    Some(TaskHandle {
        agent_task_id: id.to_owned(),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_normalise_like_the_ruby_director() {
        assert_eq!(
            AgentReply::decode(json!({"value": "pong"})).unwrap(),
            AgentReply::Done(json!("pong"))
        );
        assert_eq!(
            AgentReply::decode(json!({"value": {"agent_task_id": "t1", "state": "running"}}))
                .unwrap(),
            AgentReply::Task(TaskHandle {
                agent_task_id: "t1".into(),
                state: TaskState::Running
            })
        );
        // A bare hash without `value` is the value itself.
        assert_eq!(
            AgentReply::decode(json!({"job_state": "running"})).unwrap(),
            AgentReply::Done(json!({"job_state": "running"}))
        );
        assert_eq!(
            AgentReply::decode(json!({"exception": {"message": "boom", "backtrace": ["a", "b"]}})),
            Err(ReplyError::Exception {
                message: "boom\na\nb".into()
            })
        );
        assert_eq!(AgentReply::decode(json!("x")), Err(ReplyError::Malformed));
        // get_task on a finished task returns the bare result (§10.3).
        assert_eq!(
            AgentReply::decode(json!({"value": {"state": "done"}})).unwrap(),
            AgentReply::Done(json!({"state": "done"}))
        );
    }
}
