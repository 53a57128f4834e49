//! The docker CPI's configuration. Two spellings are read: ours
//! (`{"docker": {...}, "agent": {...}}`) and the real bosh-docker-cpi's `cpi.json`
//! (`{"Actions": {"Docker": {...}, "Agent": {"Mbus", "NTP", "Blobstore"}}}`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The repository full stemcells are imported into, as the real CPI does.
pub const DEFAULT_STEMCELL_REPO: &str = "bosh.io/stemcells";

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("Reading config {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parsing config {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("Validating config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DockerEngineConfig {
    /// `unix:///var/run/docker.sock` or `tcp://host:port` / `http://host:port` (no TLS yet).
    pub host: String,
    /// e.g. `1.41`; negotiated with the engine when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

impl Default for DockerEngineConfig {
    fn default() -> Self {
        Self {
            host: "unix:///var/run/docker.sock".to_owned(),
            api_version: None,
        }
    }
}

/// What the CPI tells every agent (settings `mbus`, `ntp`, `blobstore`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DockerAgentConfig {
    #[serde(alias = "Mbus")]
    pub mbus: String,
    #[serde(default, alias = "NTP")]
    pub ntp: Vec<String>,
    #[serde(default, alias = "Blobstore", skip_serializing_if = "Option::is_none")]
    pub blobstore: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DockerCpiConfig {
    pub docker: DockerEngineConfig,
    pub agent: DockerAgentConfig,
    /// Prepended to every container, volume and image tag this CPI names (tests use it to
    /// find and remove what they made). Empty in production: cids look like the real CPI's.
    #[serde(default)]
    pub name_prefix: String,
    #[serde(default = "default_stemcell_repo")]
    pub stemcell_repo: String,
    /// Seconds `docker stop` waits before killing, when a container is recreated.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u32,
}

fn default_stemcell_repo() -> String {
    DEFAULT_STEMCELL_REPO.to_owned()
}

fn default_stop_timeout() -> u32 {
    10
}

impl DockerCpiConfig {
    pub fn new(docker: DockerEngineConfig, agent: DockerAgentConfig) -> Self {
        Self {
            docker,
            agent,
            name_prefix: String::new(),
            stemcell_repo: default_stemcell_repo(),
            stop_timeout_secs: default_stop_timeout(),
        }
    }

    /// Reads either spelling of the config file and validates it.
    pub fn from_file(path: &Path) -> Result<Self, DockerConfigError> {
        let text = std::fs::read(path).map_err(|source| DockerConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig =
            serde_json::from_slice(&text).map_err(|source| DockerConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let config = raw.into_config()?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), DockerConfigError> {
        let invalid = |m: &str| Err(DockerConfigError::Invalid(m.to_owned()));
        if self.docker.host.is_empty() {
            return invalid("Must provide non-empty Docker host");
        }
        if !["unix://", "tcp://", "http://"]
            .iter()
            .any(|p| self.docker.host.starts_with(p))
        {
            return invalid("Docker host must start with unix://, tcp:// or http://");
        }
        if self.agent.mbus.is_empty() {
            return invalid("Must provide non-empty Agent Mbus");
        }
        let prefix_ok = self
            .name_prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !prefix_ok {
            return invalid("name_prefix may contain only lowercase letters, digits, '-' and '_'");
        }
        Ok(())
    }
}

/// Both spellings; `Actions` wins when present.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    docker: Option<DockerEngineConfig>,
    #[serde(default)]
    agent: Option<DockerAgentConfig>,
    #[serde(default, rename = "Actions")]
    actions: Option<RawActions>,
    #[serde(default)]
    name_prefix: String,
    #[serde(default = "default_stemcell_repo")]
    stemcell_repo: String,
    #[serde(default = "default_stop_timeout")]
    stop_timeout_secs: u32,
}

#[derive(Deserialize)]
struct RawActions {
    #[serde(rename = "Docker")]
    docker: RawDocker,
    #[serde(rename = "Agent")]
    agent: DockerAgentConfig,
}

#[derive(Deserialize)]
struct RawDocker {
    #[serde(alias = "Host")]
    host: String,
    #[serde(default, alias = "APIVersion")]
    api_version: Option<String>,
}

impl RawConfig {
    fn into_config(self) -> Result<DockerCpiConfig, DockerConfigError> {
        let (docker, agent) = match self.actions {
            Some(a) => (
                DockerEngineConfig {
                    host: a.docker.host,
                    api_version: a.docker.api_version.filter(|v| !v.is_empty()),
                },
                a.agent,
            ),
            None => (
                self.docker.unwrap_or_default(),
                self.agent.ok_or_else(|| {
                    DockerConfigError::Invalid("Must provide 'agent' (or 'Actions.Agent')".into())
                })?,
            ),
        };
        Ok(DockerCpiConfig {
            docker,
            agent,
            name_prefix: self.name_prefix,
            stemcell_repo: self.stemcell_repo,
            stop_timeout_secs: self.stop_timeout_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DockerCpiConfig, DockerConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpi.json");
        std::fs::write(&path, text).unwrap();
        DockerCpiConfig::from_file(&path)
    }

    #[test]
    fn reads_the_real_cpi_json_shape() {
        let c = parse(
            r#"{"start_containers_with_systemd": false,
                "Actions": {"Docker": {"host": "unix:///var/run/docker.sock", "api_version": "1.44"},
                "Agent": {"Mbus": "nats://n:p@127.0.0.1:4222", "NTP": ["pool"],
                          "Blobstore": {"Provider": "local"}}}}"#,
        )
        .unwrap();
        assert_eq!(c.docker.api_version.as_deref(), Some("1.44"));
        assert_eq!(c.agent.mbus, "nats://n:p@127.0.0.1:4222");
        assert_eq!(c.agent.ntp, vec!["pool"]);
        assert_eq!(c.stemcell_repo, DEFAULT_STEMCELL_REPO);
    }

    #[test]
    fn reads_our_shape_and_validates() {
        let c = parse(r#"{"docker": {"host": "unix:///x.sock"}, "agent": {"mbus": "nats://a"}}"#)
            .unwrap();
        assert_eq!(c.docker.host, "unix:///x.sock");
        assert!(c.docker.api_version.is_none());
        let e =
            parse(r#"{"docker": {"host": "unix:///x.sock"}, "agent": {"mbus": ""}}"#).unwrap_err();
        assert!(e.to_string().contains("Mbus"), "{e}");
        let e = parse(r#"{"docker": {"host": "ftp://x"}, "agent": {"mbus": "n"}}"#).unwrap_err();
        assert!(e.to_string().contains("unix://"), "{e}");
        assert!(parse(r#"{"docker": {"host": "unix:///x"}}"#).is_err());
    }
}
