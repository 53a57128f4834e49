//! Heartbeat and alert payloads (§6.1–6.2). Vitals are strings on the wire, except uptime.

use crate::state::{JobState, Uptime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    pub deployment: String,
    /// Null before the first apply.
    pub job: Option<String>,
    pub index: Option<i64>,
    pub job_state: JobState,
    pub vitals: Vitals,
    pub node_id: String,
    pub number_of_processes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Vitals {
    pub cpu: CpuVitals,
    /// `system` for `/`, `ephemeral` and `persistent` only when mounted.
    pub disk: BTreeMap<String, DiskVitals>,
    /// 1, 5 and 15 minute load averages.
    pub load: Vec<String>,
    pub mem: MemVitals,
    pub swap: MemVitals,
    pub uptime: Uptime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CpuVitals {
    pub sys: String,
    pub user: String,
    pub wait: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiskVitals {
    pub percent: String,
    pub inode_percent: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemVitals {
    pub kb: String,
    pub percent: String,
}

/// Published on `hm.agent.alert.<id>`; severity 1 alert, 2 critical, 3 error, 4 warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    pub id: String,
    pub severity: u8,
    pub title: String,
    pub summary: String,
    /// Unix seconds.
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heartbeat_before_apply_has_null_job_and_index() {
        let hb = Heartbeat {
            deployment: String::new(),
            job: None,
            index: None,
            job_state: JobState::Running,
            vitals: Vitals::default(),
            node_id: String::new(),
            number_of_processes: Some(0),
        };
        let v = serde_json::to_value(hb).unwrap();
        assert_eq!(v["job"], json!(null));
        assert_eq!(v["index"], json!(null));
        assert_eq!(v["vitals"]["uptime"], json!({"secs": 0}));
    }
}
