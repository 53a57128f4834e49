//! Heartbeats for the health monitor: `hm.agent.heartbeat.*` as a stream.

use crate::error::AgentError;
use bosh_agent_protocol::Heartbeat;
use futures::StreamExt;
use futures::stream::BoxStream;

/// `(agent_id, heartbeat)` pairs; payloads that do not decode are logged and skipped.
pub type HeartbeatStream = BoxStream<'static, (String, Heartbeat)>;

/// Subscribes to every agent's heartbeats. `nats` must be allowed to subscribe to
/// `hm.agent.heartbeat.*` (the health monitor's identity in the stock configuration).
pub async fn subscribe_heartbeats(
    nats: &async_nats::Client,
) -> Result<HeartbeatStream, AgentError> {
    let sub = nats
        .subscribe("hm.agent.heartbeat.*")
        .await
        .map_err(|e| AgentError::connection("Subscribing to hm.agent.heartbeat.*", e))?;
    nats.flush()
        .await
        .map_err(|e| AgentError::connection("Flushing the NATS connection", e))?;
    Ok(sub
        .filter_map(|msg| async move {
            let agent_id = msg.subject.as_str().strip_prefix("hm.agent.heartbeat.")?;
            match serde_json::from_slice::<Heartbeat>(&msg.payload) {
                Ok(hb) => Some((agent_id.to_owned(), hb)),
                Err(e) => {
                    tracing::warn!(agent_id, error = %e, "undecodable heartbeat skipped");
                    None
                }
            }
        })
        .boxed())
}
