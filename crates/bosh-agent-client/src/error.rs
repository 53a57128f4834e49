//! What can go wrong talking to an agent.

use std::time::Duration;

/// A boxed error from the NATS or TLS layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An agent call failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent answered `{"exception": {"message": ...}}`; `message` is its text (with any
    /// backtrace lines appended, as the Ruby director formats it).
    #[error("{message}")]
    Exception {
        agent_id: String,
        method: String,
        message: String,
    },
    /// No reply within the per-request timeout (after the retries the method gets).
    #[error("Timed out sending '{method}' to agent '{agent_id}' after {after:?}")]
    Timeout {
        agent_id: String,
        method: String,
        after: Duration,
    },
    /// An asynchronous action was still running when the total task timeout ran out.
    #[error(
        "Timed out waiting for task '{task_id}' ('{method}') on agent '{agent_id}' after {after:?}"
    )]
    TaskTimeout {
        agent_id: String,
        method: String,
        task_id: String,
        after: Duration,
    },
    /// Connecting, publishing or subscribing failed.
    #[error("{what}")]
    Connection {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The reply was not JSON, or not the shape the method answers with.
    #[error("Invalid reply to '{method}' from agent '{agent_id}': {reason}")]
    InvalidReply {
        agent_id: String,
        method: String,
        reason: String,
    },
}

impl AgentError {
    /// True for the agent's `unknown message <method>` exception (an agent too old for the
    /// action; the director ignores it for some actions).
    pub fn is_unknown_message(&self) -> bool {
        matches!(self, AgentError::Exception { message, .. } if message.contains("unknown message"))
    }

    /// True for [`AgentError::Timeout`] and [`AgentError::TaskTimeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            AgentError::Timeout { .. } | AgentError::TaskTimeout { .. }
        )
    }

    pub(crate) fn connection(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        AgentError::Connection {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn invalid(agent_id: &str, method: &str, reason: impl Into<String>) -> Self {
        AgentError::InvalidReply {
            agent_id: agent_id.to_owned(),
            method: method.to_owned(),
            reason: reason.into(),
        }
    }
}
