//! The agent settings document a CPI writes into a VM in registry-less mode
//! (cpi-protocol.md §6; bosh-cpi-go's "agent env"). The agent reads it from its settings
//! source (for container and process VMs, a file).

use crate::methods::{DiskHint, Networks};
use bosh_types::ids::{AgentId, DiskCid, VmCid};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentEnv {
    #[schemars(with = "String")]
    pub agent_id: AgentId,
    pub vm: AgentEnvVm,
    /// From the CPI's own config (`agent.mbus`), not from the director.
    pub mbus: String,
    #[serde(default)]
    pub ntp: Vec<String>,
    /// Only when the CPI config has one; normally the blobstore comes from `env.bosh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstore: Option<Value>,
    pub networks: Networks,
    pub disks: AgentEnvDisks,
    /// `create_vm`'s `env`, verbatim (mbus certs, blobstores, password, tags...).
    #[serde(default)]
    pub env: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentEnvVm {
    pub name: String,
    pub id: String,
}

impl AgentEnvVm {
    pub fn for_cid(cid: &VmCid) -> Self {
        Self {
            name: cid.to_string(),
            id: cid.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct AgentEnvDisks {
    /// Container CPIs write `""`: the root filesystem is already there.
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub ephemeral: Option<DiskHint>,
    /// Attached persistent disks: cid → hint.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, DiskHint>")]
    pub persistent: BTreeMap<DiskCid, DiskHint>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_env_has_the_go_cpi_shape() {
        let cid: VmCid = "vm-1".parse().unwrap();
        let agent = AgentId::new_v4();
        let mut env = AgentEnv {
            agent_id: agent,
            vm: AgentEnvVm::for_cid(&cid),
            mbus: "nats://127.0.0.1:4222".into(),
            ntp: vec![],
            blobstore: None,
            networks: Networks::new(),
            disks: AgentEnvDisks::default(),
            env: Map::new(),
        };
        env.disks
            .persistent
            .insert("d-1".parse().unwrap(), DiskHint::Path("/d".into()));
        assert_eq!(
            serde_json::to_value(&env).unwrap(),
            json!({"agent_id": agent.to_string(), "vm": {"name": "vm-1", "id": "vm-1"},
                "mbus": "nats://127.0.0.1:4222", "ntp": [], "networks": {},
                "disks": {"system": "", "ephemeral": null, "persistent": {"d-1": "/d"}},
                "env": {}})
        );
    }
}
