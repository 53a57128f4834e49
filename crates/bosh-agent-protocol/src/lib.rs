//! Director <-> agent NATS protocol: envelopes, actions, apply spec, settings, heartbeats.
//!
//! Wire types only, no IO. Field names and shapes follow `shared/specs/agent-protocol.md`;
//! section numbers in docs refer to it.

pub mod apply_spec;
pub mod arguments;
pub mod envelope;
pub mod heartbeat;
pub mod reply;
pub mod schema;
pub mod settings;
pub mod state;
pub mod subjects;

pub use apply_spec::{ApplySpec, BlobRef, JobSpec, JobTemplateSpec, PackageSpec};
pub use arguments::{ArgumentError, Arguments};
pub use envelope::{ExceptionBody, Request, Response, TaskHandle, TaskState};
pub use heartbeat::{Alert, Heartbeat, Vitals};
pub use reply::{AgentReply, ReplyError};
pub use settings::{MbusCert, Settings, UpdateSettings};
pub use state::{AgentState, JobState, ProcessState, ProcessStatus};

/// Largest JSON response an agent publishes (§2.5); the NATS default `max_payload` too.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Protocol version the current director sends (§2.1).
pub const PROTOCOL_VERSION: u32 = 3;
