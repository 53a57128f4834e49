//! The director's own configuration file (`--config FILE`, YAML). Everything is optional: the
//! embedded default is SQLite in the data dir and one generated `admin` user.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read director config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("director config {path} is not valid YAML")]
    Yaml {
        path: PathBuf,
        #[source]
        source: bosh_yaml::ParseError,
    },
    #[error("director config {path} is invalid")]
    Decode {
        path: PathBuf,
        #[source]
        source: bosh_yaml::DecodeError,
    },
    #[error(
        "director config {path}: UAA authentication is not supported yet; remove the 'uaa' block to use basic auth"
    )]
    UaaUnsupported { path: PathBuf },
    #[error("director config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A basic-auth user from the config file.
#[derive(Debug, Clone, Deserialize)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    database_url: Option<String>,
    workers: Option<usize>,
    #[serde(default)]
    users: Vec<UserConfig>,
    uaa: Option<serde_json::Value>,
    /// How long a task waits for a lock before failing, in seconds.
    lock_wait_seconds: Option<u64>,
}

/// The settled configuration.
#[derive(Debug, Clone)]
pub struct DirectorConfig {
    pub name: String,
    /// `None` means SQLite in the data dir.
    pub database_url: Option<String>,
    pub workers: usize,
    /// Users from the config file; when empty an `admin` user with a generated password is used.
    pub users: Vec<UserConfig>,
    pub lock_wait_seconds: u64,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            name: "bosh-rs".to_owned(),
            database_url: None,
            workers: 3,
            users: Vec::new(),
            lock_wait_seconds: 300,
        }
    }
}

impl DirectorConfig {
    pub fn load(path: &Path) -> Result<DirectorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<DirectorConfig, ConfigError> {
        let value = bosh_yaml::parse(text).map_err(|source| ConfigError::Yaml {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = if value.is_null() {
            RawConfig::default()
        } else {
            bosh_yaml::from_value(&value).map_err(|source| ConfigError::Decode {
                path: path.to_owned(),
                source,
            })?
        };
        if raw.uaa.is_some() {
            return Err(ConfigError::UaaUnsupported {
                path: path.to_owned(),
            });
        }
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if raw.workers == Some(0) {
            return Err(invalid("workers must be at least 1"));
        }
        if raw
            .users
            .iter()
            .any(|u| u.name.is_empty() || u.password.is_empty())
        {
            return Err(invalid("every user needs a non-empty name and password"));
        }
        let defaults = DirectorConfig::default();
        Ok(DirectorConfig {
            name: raw.name.unwrap_or(defaults.name),
            database_url: raw.database_url,
            workers: raw.workers.unwrap_or(defaults.workers),
            users: raw.users,
            lock_wait_seconds: raw.lock_wait_seconds.unwrap_or(defaults.lock_wait_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_defaults() {
        let c = DirectorConfig::parse("", Path::new("c.yml")).unwrap();
        assert_eq!(c.workers, 3);
        assert!(c.database_url.is_none());
    }

    #[test]
    fn uaa_block_is_refused_with_a_clear_message() {
        let err =
            DirectorConfig::parse("uaa:\n  url: https://uaa\n", Path::new("c.yml")).unwrap_err();
        assert!(
            err.to_string()
                .contains("UAA authentication is not supported")
        );
    }

    #[test]
    fn users_and_database_are_read() {
        let c = DirectorConfig::parse(
            "database_url: postgres://u@h/db\nworkers: 5\nusers:\n- name: ops\n  password: pw\n",
            Path::new("c.yml"),
        )
        .unwrap();
        assert_eq!(c.workers, 5);
        assert_eq!(c.database_url.as_deref(), Some("postgres://u@h/db"));
        assert_eq!(c.users[0].name, "ops");
    }

    #[test]
    fn unknown_keys_and_zero_workers_are_errors() {
        assert!(DirectorConfig::parse("wrkers: 2\n", Path::new("c.yml")).is_err());
        assert!(DirectorConfig::parse("workers: 0\n", Path::new("c.yml")).is_err());
    }
}
