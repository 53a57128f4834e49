//! The director's side of its agents: the NATS connection ([`AgentClient`]), certificates for
//! new agents and their NATS users.

use bosh_agent_client::{AgentClient, AgentClientConfig, AgentError};
use bosh_agent_protocol::MbusCert;
use bosh_types::ids::AgentId;
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

    /// Adds the NATS users of agents about to be created, with one configuration reload for
    /// all of them, and waits until the server accepts the first one's certificate (they were
    /// loaded together, so that proves all); their VMs' `agent_register` then finds the
    /// users in place and neither reloads nor probes. Callers unregister the ids they end up
    /// not using.
    pub async fn agents_register(&self, agent_ids: &[AgentId]) -> Result<(), AgentsError> {
        let (Some(nats), Some(first)) = (&self.embedded, agent_ids.first()) else {
            return Ok(());
        };
        let ids: Vec<String> = agent_ids.iter().map(AgentId::to_string).collect();
        nats.agents_add(ids.iter().map(String::as_str)).await?;
        let first = first.to_string();
        let cert = self.pki.agent_cert(&first)?;
        self.user_loaded_wait(&first, &cert).await
    }

    /// Issues the agent's certificate and, with the embedded NATS, adds its users and waits
    /// until the reloaded server accepts that certificate (the agent's first connection must
    /// succeed, so the user has to exist before the VM boots). An agent registered ahead by
    /// `agents_register` is already in place.
    pub async fn agent_register(&self, agent_id: &str) -> Result<MbusCert, AgentsError> {
        let cert = self.pki.agent_cert(agent_id)?;
        if let Some(nats) = &self.embedded
            && !nats.agent_known(agent_id).await
        {
            nats.agent_add(agent_id).await?;
            self.user_loaded_wait(agent_id, &cert).await?;
        }
        Ok(cert)
    }

    /// Polls NATS with the agent's certificate until the server accepts it.
    async fn user_loaded_wait(&self, agent_id: &str, cert: &MbusCert) -> Result<(), AgentsError> {
        let wait = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let probe = bosh_agent_client::mbus::connect(
                std::slice::from_ref(&self.mbus_url),
                cert,
                "bosh-director-probe",
            );
            if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
                // The connection can be accepted and then closed by an authorization
                // failure; a flush round-trip proves the user is in place.
                let ok = conn.flush().await.is_ok();
                drop(conn);
                if ok {
                    return Ok(());
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

    /// Removes the agent's NATS users (its VM is gone). The removal is written in the
    /// background, batched with others (see `EmbeddedNats::agent_remove`).
    pub async fn agent_unregister(&self, agent_id: &str) -> Result<(), AgentsError> {
        if let Some(nats) = &self.embedded {
            nats.agent_remove(agent_id);
        }
        Ok(())
    }

    /// Removes the NATS users of many agents at once (ids registered for VMs that were never
    /// created).
    pub fn agents_unregister(&self, agent_ids: &[AgentId]) {
        if let Some(nats) = &self.embedded {
            let ids: Vec<String> = agent_ids.iter().map(AgentId::to_string).collect();
            nats.agents_remove(ids.iter().map(String::as_str));
        }
    }
}
