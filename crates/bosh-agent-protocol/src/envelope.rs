//! The request and response envelopes (§2.1–2.3).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A director request published on `agent.<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    /// Absent from HTTPS (create-env) clients, which the agent treats as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    pub method: String,
    /// Positional arguments; see [`crate::Arguments`] for decoding.
    #[serde(default)]
    pub arguments: Vec<Value>,
    /// The subject the reply goes to; without it the agent publishes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl Request {
    pub fn new(
        method: impl Into<String>,
        arguments: Vec<Value>,
        reply_to: impl Into<String>,
    ) -> Self {
        Request {
            protocol: Some(crate::PROTOCOL_VERSION),
            method: method.into(),
            arguments,
            reply_to: Some(reply_to.into()),
        }
    }

    /// The protocol number actions see (0 when absent).
    pub fn protocol_version(&self) -> u32 {
        self.protocol.unwrap_or(0)
    }
}

/// `{"exception": {"message": ...}}`'s inner object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExceptionBody {
    pub message: String,
}

/// What the agent publishes on `reply_to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Response {
    Value { value: Value },
    Exception { exception: ExceptionBody },
}

impl Response {
    pub fn value(value: impl Into<Value>) -> Self {
        Response::Value {
            value: value.into(),
        }
    }

    pub fn exception(message: impl Into<String>) -> Self {
        Response::Exception {
            exception: ExceptionBody {
                message: message.into(),
            },
        }
    }

    /// Serialises within the agent's 1 MiB limit (§2.5): a too-large value becomes an
    /// exception, a too-long exception message keeps its head and tail.
    pub fn to_bytes_limited(&self, limit: usize) -> Vec<u8> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        if bytes.len() <= limit {
            return bytes;
        }
        match self {
            Response::Value { .. } => serde_json::to_vec(&Response::exception(
                "Response exceeded maximum allowed length",
            ))
            .unwrap_or_default(),
            Response::Exception { exception } => {
                const MARK: &str = "...[truncated]...";
                // Room left once the envelope and marker are accounted for; JSON escaping may
                // grow the text, so keep a generous margin.
                let budget = limit.saturating_sub(64 + MARK.len()) / 2;
                let msg = &exception.message;
                let head = floor_char_boundary(msg, budget / 2);
                let tail = ceil_char_boundary(msg, msg.len().saturating_sub(budget / 2));
                let short = format!("{}{MARK}{}", &msg[..head], &msg[tail..]);
                serde_json::to_vec(&Response::exception(short)).unwrap_or_default()
            }
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Agent task states (§2.3). Only `running` ever appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Running,
    Done,
    Failed,
}

/// The value an asynchronous action (or `get_task` on a running task) answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskHandle {
    pub agent_task_id: String,
    pub state: TaskState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_have_the_agents_shapes() {
        assert_eq!(
            serde_json::to_value(Response::value("pong")).unwrap(),
            json!({"value": "pong"})
        );
        assert_eq!(
            serde_json::to_value(Response::exception("unknown message x")).unwrap(),
            json!({"exception": {"message": "unknown message x"}})
        );
        let handle = TaskHandle {
            agent_task_id: "t".into(),
            state: TaskState::Running,
        };
        assert_eq!(
            serde_json::to_value(handle).unwrap(),
            json!({"agent_task_id": "t", "state": "running"})
        );
    }

    #[test]
    fn request_without_protocol_is_version_zero() {
        let r: Request =
            serde_json::from_str(r#"{"method":"ping","arguments":[],"reply_to":"cli"}"#).unwrap();
        assert_eq!(r.protocol_version(), 0);
        let r: Request = serde_json::from_value(json!({"protocol": 3, "method": "ping"})).unwrap();
        assert_eq!(r.protocol_version(), 3);
        assert!(r.arguments.is_empty());
    }

    #[test]
    fn oversized_responses_are_replaced_or_truncated() {
        let big = Response::value("x".repeat(2000));
        let out: Value = serde_json::from_slice(&big.to_bytes_limited(1000)).unwrap();
        assert_eq!(
            out,
            json!({"exception": {"message": "Response exceeded maximum allowed length"}})
        );

        let long = Response::exception(format!("head{}tail", "é".repeat(3000)));
        let bytes = long.to_bytes_limited(1000);
        assert!(bytes.len() <= 1000, "{}", bytes.len());
        let out: Response = serde_json::from_slice(&bytes).unwrap();
        let Response::Exception { exception } = out else {
            panic!("not an exception")
        };
        assert!(exception.message.starts_with("head"));
        assert!(exception.message.ends_with("tail"));
        assert!(exception.message.contains("...[truncated]..."));
    }
}
