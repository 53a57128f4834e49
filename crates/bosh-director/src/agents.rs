//! The director's side of its agents: the NATS connection ([`AgentClient`]), certificates for
//! new agents and their NATS users.

use bosh_agent_client::{AgentClient, AgentClientConfig, AgentError};
use bosh_agent_protocol::MbusCert;
use std::sync::Arc;
use std::time::Duration;

use crate::nats::{EmbeddedNats, NatsError, NatsPki};

#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("NATS")]
    Nats(#[from] NatsError),
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: AgentError,
    },
    #[error("NATS did not accept agent '{agent_id}' within {after:?}")]
    UserNotLoaded { agent_id: String, after: Duration },
}

/// Agents and the message bus they talk on.
pub struct Agents {
    client: AgentClient,
    pki: Arc<NatsPki>,
    /// `None` with an external NATS, whose users the operator manages.
    embedded: Option<Arc<EmbeddedNats>>,
    mbus_url: String,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("mbus_url", &self.mbus_url)
            .finish_non_exhaustive()
    }
}

impl Agents {
    /// Connects the agent client with the director's certificate.
    pub async fn connect(
        pki: Arc<NatsPki>,
        embedded: Option<Arc<EmbeddedNats>>,
        mbus_url: String,
        director_uuid: &str,
    ) -> Result<Agents, AgentsError> {
        let config = AgentClientConfig {
            director_uuid: director_uuid.to_owned(),
            ..AgentClientConfig::default()
        };
        let cert = pki.director_cert()?;
        let client = AgentClient::connect(std::slice::from_ref(&mbus_url), &cert, config)
            .await
            .map_err(|source| AgentsError::Connect {
                url: mbus_url.clone(),
                source,
            })?;
        Ok(Agents {
            client,
            pki,
            embedded,
            mbus_url,
        })
    }

    pub fn client(&self) -> &AgentClient {
        &self.client
    }

    /// The URL agents are told to dial (`mbus` in their settings).
    pub fn mbus_url(&self) -> &str {
        &self.mbus_url
    }

    pub fn pki(&self) -> &NatsPki {
        &self.pki
    }

    pub fn embedded(&self) -> Option<&Arc<EmbeddedNats>> {
        self.embedded.as_ref()
    }

    /// Issues the agent's certificate and, with the embedded NATS, adds its users and waits
    /// until the reloaded server accepts that certificate (the agent's first connection must
    /// succeed, so the user has to exist before the VM boots).
    pub async fn agent_register(&self, agent_id: &str) -> Result<MbusCert, AgentsError> {
        let cert = self.pki.agent_cert(agent_id)?;
        if let Some(nats) = &self.embedded {
            nats.agent_add(agent_id).await?;
            let wait = Duration::from_secs(10);
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let probe = bosh_agent_client::mbus::connect(
                    std::slice::from_ref(&self.mbus_url),
                    &cert,
                    "bosh-director-probe",
                );
                if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                    // The connection can be accepted and then closed by an authorization
                    // failure; a flush round-trip proves the user is in place.
                    let ok = conn.flush().await.is_ok();
                    drop(conn);
                    if ok {
                        break;
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(AgentsError::UserNotLoaded {
                        agent_id: agent_id.to_owned(),
                        after: wait,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(cert)
    }

    /// Removes the agent's NATS users (its VM is gone).
    pub async fn agent_unregister(&self, agent_id: &str) -> Result<(), AgentsError> {
        if let Some(nats) = &self.embedded {
            nats.agent_remove(agent_id).await?;
        }
        Ok(())
    }
}
