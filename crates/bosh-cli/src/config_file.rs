//! `~/.bosh/config`, in the official CLI's format:
//!
//! ```yaml
//! environments:
//! - url: https://192.168.50.6:25555
//!   ca_cert: |-
//!     -----BEGIN CERTIFICATE-----
//!   alias: vbox
//!   username: admin
//!   password: secret
//! ```
//!
//! Written with mode 0600 (it holds credentials).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("Expected HOME to be set to find '~/.bosh/config'")]
    NoHome,
    #[error("Reading config '{path}'")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Unmarshalling config")]
    Parse(#[source] bosh_yaml::DecodeError),
    #[error("Unmarshalling config")]
    ParseYaml(#[source] bosh_yaml::ParseError),
    #[error("Writing config '{path}'")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Expected non-empty environment URL")]
    EmptyUrl,
    #[error("Expected non-empty environment alias")]
    EmptyAlias,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub refresh_token: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Schema {
    #[serde(default)]
    environments: Vec<Environment>,
}

#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    schema: Schema,
}

impl ConfigFile {
    /// `$HOME/.bosh/config` (a missing file is an empty config).
    pub fn load_default() -> Result<ConfigFile, ConfigFileError> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or(ConfigFileError::NoHome)?;
        ConfigFile::load(&Path::new(&home).join(".bosh").join("config"))
    }

    pub fn load(path: &Path) -> Result<ConfigFile, ConfigFileError> {
        let schema = match std::fs::read_to_string(path) {
            Ok(text) => {
                let value = bosh_yaml::parse(&text).map_err(ConfigFileError::ParseYaml)?;
                if value == bosh_yaml::Value::Null {
                    Schema::default()
                } else {
                    bosh_yaml::from_value(&value).map_err(ConfigFileError::Parse)?
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Schema::default(),
            Err(source) => {
                return Err(ConfigFileError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(ConfigFile {
            path: path.to_owned(),
            schema,
        })
    }

    pub fn save(&self) -> Result<(), ConfigFileError> {
        let value = bosh_yaml::to_value(&self.schema);
        let text = bosh_yaml::to_string(&value);
        let write_err = |source| ConfigFileError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        std::fs::write(&self.path, text).map_err(write_err)?;
        set_private(&self.path).map_err(write_err)?;
        Ok(())
    }

    pub fn environments(&self) -> &[Environment] {
        &self.schema.environments
    }

    /// The environment whose URL or alias is `url_or_alias`.
    pub fn find(&self, url_or_alias: &str) -> Option<&Environment> {
        if url_or_alias.is_empty() {
            return None;
        }
        self.schema
            .environments
            .iter()
            .find(|e| e.url == url_or_alias || e.alias == url_or_alias)
    }

    fn find_or_create(&mut self, url_or_alias: &str) -> &mut Environment {
        let pos = self.schema.environments.iter().position(|e| {
            !url_or_alias.is_empty() && (e.url == url_or_alias || e.alias == url_or_alias)
        });
        let i = match pos {
            Some(i) => i,
            None => {
                self.schema.environments.push(Environment {
                    url: url_or_alias.to_string(),
                    ..Environment::default()
                });
                self.schema.environments.len() - 1
            }
        };
        &mut self.schema.environments[i]
    }

    /// Adds or updates the environment matching the URL or the alias.
    pub fn alias_environment(
        &mut self,
        url: &str,
        alias: &str,
        ca_cert: &str,
    ) -> Result<(), ConfigFileError> {
        if url.is_empty() {
            return Err(ConfigFileError::EmptyUrl);
        }
        if alias.is_empty() {
            return Err(ConfigFileError::EmptyAlias);
        }
        let pos = self
            .schema
            .environments
            .iter()
            .position(|e| e.url == url || e.alias == alias);
        let env = match pos {
            Some(i) => &mut self.schema.environments[i],
            None => {
                self.schema.environments.push(Environment::default());
                self.schema.environments.last_mut().expect("just pushed")
            }
        };
        env.url = url.to_string();
        env.alias = alias.to_string();
        env.ca_cert = ca_cert.to_string();
        Ok(())
    }

    pub fn set_credentials(&mut self, url_or_alias: &str, username: &str, password: &str) {
        let env = self.find_or_create(url_or_alias);
        env.username = username.to_string();
        env.password = password.to_string();
        env.refresh_token.clear();
    }

    pub fn unset_credentials(&mut self, url_or_alias: &str) {
        self.set_credentials(url_or_alias, "", "");
    }
}

#[cfg(unix)]
fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_official_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".bosh/config");
        let mut c = ConfigFile::load(&path).unwrap();
        c.alias_environment(
            "10.0.0.6",
            "vbox",
            "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        c.set_credentials("vbox", "admin", "secret");
        c.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "environments:\n- url: 10.0.0.6\n  ca_cert: |\n    -----BEGIN CERTIFICATE-----\n    abc\n    -----END CERTIFICATE-----\n  alias: vbox\n  username: admin\n  password: secret\n"
        );
        let c = ConfigFile::load(&path).unwrap();
        assert_eq!(c.find("10.0.0.6").unwrap().username, "admin");
        let mut c = c;
        c.unset_credentials("vbox");
        assert_eq!(c.find("vbox").unwrap().password, "");
        c.alias_environment("10.0.0.7", "vbox", "").unwrap();
        assert_eq!(c.environments().len(), 1);
        assert_eq!(c.environments()[0].url, "10.0.0.7");
    }
}
