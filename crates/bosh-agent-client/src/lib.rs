//! The director's side of the agent protocol (`shared/specs/agent-protocol.md` §2.4).
//!
//! - [`AgentClient`]: one NATS connection over mTLS with the director's certificate, one
//!   wildcard subscription `director.<uuid>.>` whose replies are dispatched by request id;
//!   `call` sends a request with a timeout, retries on timeout only where the Ruby director
//!   does (`get_state` and `get_task` twice, `upload_blob` three times) and polls `get_task`
//!   with back-off when the agent answers with a task handle.
//! - [`subscribe_heartbeats`]: `hm.agent.heartbeat.*` as a stream for the health monitor.
//! - [`mbus::connect`]: the TLS connection itself, for other NATS users (health monitor).

pub mod client;
pub mod error;
pub mod heartbeat;
pub mod mbus;

pub use bosh_agent_protocol::AgentReply;
pub use client::{AgentClient, AgentClientConfig, DrainType, retries_on_timeout};
pub use error::AgentError;
pub use heartbeat::{HeartbeatStream, subscribe_heartbeats};
