//! The director's JSON objects, with the field types the official CLI expects
//! (`director-api.md` §3.3, §4, §5). Unknown fields are ignored and `null` gives the default.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// `null` → the type's default, like Go's `encoding/json`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Info {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub cpi: String,
    #[serde(deserialize_with = "nullable")]
    pub stemcell_os: String,
    #[serde(deserialize_with = "nullable")]
    pub stemcell_version: String,
    #[serde(deserialize_with = "nullable")]
    pub user_authentication: AuthInfo,
    #[serde(deserialize_with = "nullable")]
    pub features: BTreeMap<String, Feature>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthInfo {
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(deserialize_with = "nullable")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Feature {
    #[serde(deserialize_with = "nullable")]
    pub status: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Task {
    pub id: i64,
    #[serde(deserialize_with = "nullable")]
    pub state: String,
    #[serde(deserialize_with = "nullable")]
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub timestamp: i64,
    #[serde(deserialize_with = "nullable")]
    pub started_at: i64,
    #[serde(deserialize_with = "nullable")]
    pub result: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub deployment: String,
    #[serde(deserialize_with = "nullable")]
    pub context_id: String,
}

impl Task {
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "processing" | "cancelling")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Lock {
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(deserialize_with = "nullable")]
    pub resource: Vec<String>,
    /// Unix seconds as a float, in a string.
    #[serde(deserialize_with = "nullable")]
    pub timeout: String,
    #[serde(deserialize_with = "nullable")]
    pub task_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub content: String,
    #[serde(deserialize_with = "nullable")]
    pub team: String,
    #[serde(deserialize_with = "nullable")]
    pub created_at: String,
    #[serde(deserialize_with = "nullable")]
    pub current: bool,
}

/// An element of `GET /cloud_configs` (and the runtime/CPI equivalents).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LegacyConfig {
    #[serde(deserialize_with = "nullable")]
    pub properties: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConfigDiff {
    #[serde(deserialize_with = "nullable")]
    pub diff: Vec<Vec<serde_json::Value>>,
    #[serde(deserialize_with = "nullable")]
    pub from: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NameVersion {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deployment {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub releases: Vec<NameVersion>,
    #[serde(deserialize_with = "nullable")]
    pub stemcells: Vec<NameVersion>,
    #[serde(deserialize_with = "nullable")]
    pub teams: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub cloud_config: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeploymentManifest {
    #[serde(deserialize_with = "nullable")]
    pub manifest: String,
}

/// The lines of a diff (`[text, status]`) as the official CLI prints them.
pub fn diff_text(lines: &[Vec<serde_json::Value>]) -> String {
    let mut out = String::new();
    for line in lines {
        let text = match line.first() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let mark = match line.get(1).and_then(|v| v.as_str()) {
            Some("added") => "+ ",
            Some("removed") => "- ",
            _ => "  ",
        };
        out.push_str(mark);
        out.push_str(&text);
        out.push('\n');
    }
    out
}
