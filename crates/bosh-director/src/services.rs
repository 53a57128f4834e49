//! What tasks share: the data dir, the blobstore, the CPI and the agents.

use bosh_cpi::Cpi;
use std::path::PathBuf;
use std::sync::Arc;

use crate::agents::Agents;
use crate::blobstore::Blobstore;
use crate::tasks::runner::TaskError;

#[derive(Clone)]
pub struct Services {
    pub data_dir: PathBuf,
    pub blobstore: Arc<dyn Blobstore>,
    /// `None` when the `--cpi` value names a CPI this director cannot drive yet.
    pub cpi: Option<Arc<dyn Cpi>>,
    /// The `--cpi` value, for messages.
    pub cpi_name: String,
    /// NATS and the agent client; `None` when this director drives no VMs (no NATS).
    pub agents: Option<Arc<Agents>>,
    /// What every new VM's `env.bosh` gets from the director besides its mbus certificate:
    /// `blobstores` (the director's DAV endpoint with the agents' credentials).
    pub agent_env: AgentEnvDefaults,
    /// Prometheus series the tasks record into (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Director-wide parts of the agent env (cpi-protocol.md §4, agent-protocol.md §5.3).
#[derive(Clone, Default)]
pub struct AgentEnvDefaults {
    /// `env.bosh.blobstores`; holds credentials, so it is never logged or stored.
    pub blobstores: Vec<serde_json::Value>,
}

impl std::fmt::Debug for AgentEnvDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEnvDefaults")
            .field("blobstores", &self.blobstores.len())
            .finish()
    }
}

impl Services {
    pub fn cpi(&self) -> Result<&Arc<dyn Cpi>, TaskError> {
        self.cpi.as_ref().ok_or_else(|| {
            TaskError::failed(
                100,
                format!("CPI '{}' is not available in this director", self.cpi_name),
            )
        })
    }

    /// The CPI for calls made in a task: each request and response (secrets redacted) and
    /// the CPI's own log go to the task's `cpi` output.
    pub fn task_cpi(
        &self,
        ctx: &crate::tasks::runner::TaskContext,
    ) -> Result<Arc<dyn Cpi>, TaskError> {
        let cpi = crate::cpi_log::TaskCpi::new(
            self.cpi()?.clone(),
            ctx.cpi_output().clone(),
            &self.cpi_name,
        );
        Ok(Arc::new(cpi))
    }

    pub fn agents(&self) -> Result<&Arc<Agents>, TaskError> {
        self.agents.as_ref().ok_or_else(|| {
            TaskError::failed(
                100,
                "This director has no message bus (NATS) to reach agents",
            )
        })
    }

    /// A fresh scratch path under `DIR/tmp`.
    pub fn tmp_path(&self, prefix: &str) -> PathBuf {
        self.data_dir
            .join("tmp")
            .join(format!("{prefix}-{}", uuid::Uuid::new_v4()))
    }
}

/// The error and its causes on one line, for task errors the user reads.
pub fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    crate::error::error_chain(err)
}
