//! `agent.json` and the settings sources it names (§5.1, interop-notes §4).

use crate::layout::Layout;
use bosh_agent_protocol::{Settings, UpdateSettings};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no settings source could be read and no cached settings exist")]
    NoSettings,
}

/// The parts of the real agent's `agent.json` we act on; other keys are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentConfig {
    #[serde(default)]
    pub infrastructure: InfrastructureConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InfrastructureConfig {
    #[serde(default)]
    pub settings: SettingsConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SettingsConfig {
    #[serde(default)]
    pub sources: Vec<SettingsSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SettingsSource {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub settings_path: Option<PathBuf>,
}

impl AgentConfig {
    /// A missing file is an empty config (the cached settings may still exist).
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
                path: path.into(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentConfig::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ConfigError> {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename so a crash never leaves half a file behind.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(value).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| ConfigError::Write {
        path: path.into(),
        source,
    })
}

/// Loads settings from the first readable `File` source, caching them in
/// `bosh/settings.json`; falls back to that cache when no source can be read.
pub fn load_settings(config: &AgentConfig, layout: &Layout) -> Result<Settings, ConfigError> {
    for source in &config.infrastructure.settings.sources {
        if !source.kind.eq_ignore_ascii_case("file") {
            tracing::warn!(kind = %source.kind, "settings source type not supported, skipping");
            continue;
        }
        let Some(path) = &source.settings_path else {
            continue;
        };
        match read_json::<Settings>(path) {
            Ok(settings) => {
                write_json(&layout.settings_cache(), &settings)?;
                return Ok(settings);
            }
            Err(e) => tracing::warn!(error = %crate::error_chain(&e), "settings source unreadable"),
        }
    }
    let cache = layout.settings_cache();
    if cache.exists() {
        return read_json(&cache);
    }
    Err(ConfigError::NoSettings)
}

/// The settings stored by the last `update_settings`, if any.
pub fn load_update_settings(layout: &Layout) -> Result<Option<UpdateSettings>, ConfigError> {
    let path = layout.update_settings();
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_is_read_and_cached_then_used_as_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let env = dir.path().join("env.json");
        std::fs::write(
            &env,
            r#"{"agent_id":"a1","mbus":"nats://h:1","vm":{"name":"v"}}"#,
        )
        .unwrap();
        let cfg: AgentConfig = serde_json::from_str(&format!(
            r#"{{"Platform":{{}},"Infrastructure":{{"Settings":{{"Sources":[{{"Type":"HTTP"}},{{"Type":"File","SettingsPath":"{}"}}]}}}}}}"#,
            env.display()
        ))
        .unwrap();
        assert_eq!(load_settings(&cfg, &layout).unwrap().agent_id, "a1");
        std::fs::remove_file(&env).unwrap();
        assert_eq!(load_settings(&cfg, &layout).unwrap().vm.name, "v");
        assert!(matches!(
            load_settings(&cfg, &Layout::new(dir.path().join("x"))),
            Err(ConfigError::NoSettings)
        ));
    }
}
