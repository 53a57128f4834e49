//! The `get_state` result (§4.3) and job state (§6.3).

use crate::apply_spec::ApplySpec;
use crate::heartbeat::Vitals;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Aggregate state of the supervised jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Failing,
    Stopped,
    Starting,
    Unknown,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Failing => "failing",
            JobState::Stopped => "stopped",
            JobState::Starting => "starting",
            JobState::Unknown => "unknown",
        }
    }
}

/// State of one supervised process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    Failing,
    Starting,
    Stopped,
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Uptime {
    pub secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessMem {
    pub kb: u64,
    pub percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessCpu {
    pub total: f64,
}

/// One entry of `get_state`'s `processes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessStatus {
    pub name: String,
    pub state: ProcessState,
    #[serde(default)]
    pub uptime: Uptime,
    #[serde(default)]
    pub mem: ProcessMem,
    #[serde(default)]
    pub cpu: ProcessCpu,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmRef {
    pub name: String,
}

/// `get_state`'s value: the persisted apply spec merged at top level with agent facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentState {
    #[serde(flatten)]
    pub spec: ApplySpec,
    pub agent_id: String,
    pub vm: VmRef,
    pub job_state: JobState,
    #[serde(default)]
    pub processes: Vec<ProcessStatus>,
    /// Only with the `"full"` argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vitals: Option<Vitals>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_flattens_the_spec() {
        let state = AgentState {
            spec: ApplySpec {
                deployment: "d".into(),
                ..Default::default()
            },
            agent_id: "a".into(),
            vm: VmRef {
                name: "vm-a".into(),
            },
            job_state: JobState::Running,
            processes: vec![],
            vitals: None,
        };
        let v = serde_json::to_value(&state).unwrap();
        assert_eq!(v["deployment"], json!("d"));
        assert_eq!(v["job_state"], json!("running"));
        assert_eq!(v["networks"], json!({}));
        assert!(v.get("vitals").is_none());
        let back: AgentState = serde_json::from_value(v).unwrap();
        assert_eq!(back, state);
    }
}
