//! The director's own configuration file (`--config FILE`, YAML). Everything is optional: the
//! embedded default is SQLite in the data dir, a local blobstore in the data dir and one
//! generated `admin` user.
//!
//! The `blobstore` block follows the real director's `director.yml` (`provider` + `options`):
//!
//! ```yaml
//! blobstore:
//!   provider: s3                 # or `local` (the default)
//!   options:
//!     bucket_name: bosh-blobs    # required
//!     region: us-east-1          # default us-east-1
//!     # Where the S3 API answers; leave out for AWS. Either one URL...
//!     endpoint: https://minio.example:9000
//!     # ...or BOSH's pieces: host, port (default 443/80), use_ssl (default true).
//!     host: minio.example
//!     port: 9000
//!     use_ssl: true
//!     ssl_verify_peer: true      # false accepts any server certificate
//!     s3_force_path_style: false # true: https://host/bucket/id, false: https://bucket.host/id
//!     credentials_source: static # static | env_or_profile | none
//!     access_key_id: AKIA...     # required when static
//!     secret_access_key: ...     # required when static; never logged
//! ```
//!
//! `provider: local` takes one optional option, `blobstore_path` (default `DATA_DIR/blobstore`).
//!
//! The `docker` block is read with `--cpi docker` only:
//!
//! ```yaml
//! docker:
//!   host: unix:///var/run/docker.sock  # the engine; default $DOCKER_HOST, else this socket
//!   network: bosh-rs                   # the bridge network VMs join; created when missing
//!   subnet: 10.245.0.0/24              # its subnet when created (gateway: the first address)
//!   name_prefix: ""                    # prepended to container, volume and image names
//! ```
//!
//! Agents in containers reach the director on that network's gateway address: the embedded
//! nats-server listens there (unless `nats.host` says otherwise) and, when `--listen` is a
//! loopback address, the director also serves HTTPS (the DAV blobstore) there. The cloud
//! config's manual network must use the same subnet, with `cloud_properties: {name: NETWORK}`.

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
    blobstore: Option<RawBlobstore>,
    #[serde(default)]
    nats: NatsConfig,
    #[serde(default)]
    docker: DockerConfig,
    #[serde(default)]
    hm: crate::hm::HmConfig,
    #[serde(default)]
    deploy: DeployConfig,
    #[serde(default)]
    sim: SimConfig,
}

/// `deploy:`: director-wide budgets of the deploy path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployConfig {
    /// How many VMs "Creating missing vms" creates at once (a sliding window).
    pub vm_create_concurrency: usize,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            vm_create_concurrency: 32,
        }
    }
}

/// `sim:`: latency injection and simulated agents for `--cpi sim` (benchmarks, scale tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// How long every `create_vm` takes before it returns.
    pub create_vm_delay_ms: u64,
    /// How long a simulated agent takes to boot before it dials NATS.
    pub agent_boot_delay_ms: u64,
    /// VMs get an in-process simulated agent instead of a `bosh-agent` process.
    pub simulated_agents: bool,
}

/// `docker:`: the Docker engine and network of `--cpi docker` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// `unix://PATH`, `tcp://HOST:PORT` or `http://HOST:PORT`; `None`: `$DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`.
    pub host: Option<String>,
    /// The Docker network VMs join; an existing one is used as it is (its gateway found by
    /// inspection), a missing one is created with `subnet`.
    pub network: String,
    /// IPv4 CIDR of the network when the director creates it.
    pub subnet: String,
    /// Prepended to every container, volume and image name (lowercase letters, digits, `-`,
    /// `_`), so that several directors or tests can share one engine.
    pub name_prefix: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: None,
            network: "bosh-rs".to_owned(),
            subnet: "10.245.0.0/24".to_owned(),
            name_prefix: String::new(),
        }
    }
}

/// `nats:`: the embedded nats-server's address, or an external NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// An external NATS (`nats://host:port`): no child process is started; it must trust
    /// `DATA_DIR/nats/ca.crt` and map certificate subjects to users (per-agent users are then
    /// the operator's job, as `bosh-nats-sync`'s).
    pub url: Option<String>,
    /// Where the embedded nats-server listens and agents dial (default 127.0.0.1); its
    /// certificate names it.
    pub host: Option<String>,
    /// The embedded server's port; by default a free port picked once and kept in the data dir.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlobstore {
    provider: String,
    #[serde(default)]
    options: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3Options {
    #[serde(default, deserialize_with = "scalar_string")]
    bucket_name: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    region: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    endpoint: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    host: Option<String>,
    port: Option<u16>,
    use_ssl: Option<bool>,
    ssl_verify_peer: Option<bool>,
    s3_force_path_style: Option<bool>,
    #[serde(default, deserialize_with = "scalar_string")]
    credentials_source: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    access_key_id: Option<String>,
    #[serde(default, deserialize_with = "scalar_string")]
    secret_access_key: Option<String>,
    /// Accepted for `director.yml` compatibility; only `4` is spoken.
    #[serde(default, deserialize_with = "scalar_string")]
    signature_version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocalOptions {
    blobstore_path: Option<PathBuf>,
}

/// Any YAML scalar as a string, so that a key made only of digits is not refused, and so that
/// a decode error never has to quote the value (it may be a secret).
fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        serde_json::Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(D::Error::custom("expected a string")),
    }
}

/// Where blobs are kept (`blobstore:` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobstoreConfig {
    /// Files under `path`, or `DATA_DIR/blobstore` when `None`.
    Local {
        path: Option<PathBuf>,
    },
    S3(S3Config),
}

impl Default for BlobstoreConfig {
    fn default() -> Self {
        BlobstoreConfig::Local { path: None }
    }
}

/// How the S3 client finds its credentials (`credentials_source`).
#[derive(Clone, PartialEq, Eq)]
pub enum S3Credentials {
    /// `static`: the keys from the config.
    Static {
        access_key_id: String,
        secret_access_key: String,
    },
    /// `env_or_profile`: `AWS_*` environment variables, else the instance profile.
    EnvOrProfile,
    /// `none`: unsigned requests (a public or policy-open bucket).
    None,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The key id is not secret and helps tell configs apart; the secret never shows.
            S3Credentials::Static { access_key_id, .. } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .finish_non_exhaustive(),
            S3Credentials::EnvOrProfile => f.write_str("EnvOrProfile"),
            S3Credentials::None => f.write_str("None"),
        }
    }
}

/// A settled S3 blobstore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket_name: String,
    pub region: String,
    /// `scheme://host[:port]` of the S3 API; `None` means AWS for `region`.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub ssl_verify_peer: bool,
    pub credentials: S3Credentials,
}

/// The `blobstore` block's documented options, for error messages.
const S3_OPTIONS: &str = "bucket_name, region, endpoint, host, port, use_ssl, ssl_verify_peer, \
                          s3_force_path_style, credentials_source, access_key_id, \
                          secret_access_key, signature_version";

impl BlobstoreConfig {
    fn from_raw(raw: RawBlobstore) -> Result<BlobstoreConfig, String> {
        let options = serde_json::Value::Object(raw.options.unwrap_or_default());
        let decode_err = |e: serde_path_to_error::Error<serde_json::Error>| {
            let field = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde's "unknown field `x`, expected one of ..." already names the field.
            let inner = inner
                .split(", expected")
                .next()
                .unwrap_or(&inner)
                .to_owned();
            if field == "." || inner.starts_with("unknown field") {
                format!("blobstore.options: {inner}")
            } else {
                format!("blobstore.options.{field}: {inner}")
            }
        };
        match raw.provider.as_str() {
            "local" => {
                let o: RawLocalOptions =
                    serde_path_to_error::deserialize(options).map_err(|e| {
                        format!(
                            "{} (provider local takes only blobstore_path)",
                            decode_err(e)
                        )
                    })?;
                Ok(BlobstoreConfig::Local {
                    path: o.blobstore_path,
                })
            }
            "s3" => {
                let o: RawS3Options = serde_path_to_error::deserialize(options)
                    .map_err(|e| format!("{} (provider s3 takes {S3_OPTIONS})", decode_err(e)))?;
                S3Config::from_raw(o).map(BlobstoreConfig::S3)
            }
            other => Err(format!(
                "blobstore.provider '{other}' is not supported (expected 'local' or 's3')"
            )),
        }
    }
}

impl S3Config {
    fn from_raw(o: RawS3Options) -> Result<S3Config, String> {
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let bucket_name = nonempty(o.bucket_name)
            .ok_or("blobstore.options.bucket_name is required for provider s3")?;
        if let Some(v) = o.signature_version.as_deref()
            && v != "4"
        {
            return Err(format!(
                "blobstore.options.signature_version '{v}' is not supported (only 4)"
            ));
        }
        let endpoint = match (nonempty(o.endpoint), nonempty(o.host)) {
            (Some(_), Some(_)) => {
                return Err(
                    "blobstore.options: give either endpoint or host (with port and use_ssl), not both"
                        .to_owned(),
                );
            }
            (Some(url), None) => {
                if o.port.is_some() || o.use_ssl.is_some() {
                    return Err(
                        "blobstore.options: port and use_ssl go with host, not endpoint; \
                         put them in the endpoint URL"
                            .to_owned(),
                    );
                }
                let rest = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                    .ok_or_else(|| {
                        format!(
                            "blobstore.options.endpoint '{url}' must start with http:// or https://"
                        )
                    })?;
                if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
                    return Err(format!(
                        "blobstore.options.endpoint '{url}' must be scheme://host[:port] with no path"
                    ));
                }
                Some(url.trim_end_matches('/').to_owned())
            }
            (None, Some(host)) => {
                if host.contains("://") || host.contains('/') {
                    return Err(format!(
                        "blobstore.options.host '{host}' must be a host name (use endpoint for a URL)"
                    ));
                }
                let tls = o.use_ssl.unwrap_or(true);
                let scheme = if tls { "https" } else { "http" };
                Some(match o.port {
                    Some(port) => format!("{scheme}://{host}:{port}"),
                    None => format!("{scheme}://{host}"),
                })
            }
            (None, None) => None,
        };
        let source = o.credentials_source.as_deref().unwrap_or("static");
        let credentials = match source {
            "static" => {
                let (Some(access_key_id), Some(secret_access_key)) =
                    (nonempty(o.access_key_id), nonempty(o.secret_access_key))
                else {
                    return Err("blobstore.options.access_key_id and secret_access_key are \
                         required when credentials_source is static (the default); \
                         or set credentials_source to env_or_profile or none"
                        .to_owned());
                };
                S3Credentials::Static {
                    access_key_id,
                    secret_access_key,
                }
            }
            "env_or_profile" | "none" => {
                if o.access_key_id.is_some() || o.secret_access_key.is_some() {
                    return Err(format!(
                        "blobstore.options: access_key_id and secret_access_key are only used \
                         with credentials_source static, not {source}"
                    ));
                }
                if source == "none" {
                    S3Credentials::None
                } else {
                    S3Credentials::EnvOrProfile
                }
            }
            other => {
                return Err(format!(
                    "blobstore.options.credentials_source '{other}' is not one of static, \
                     env_or_profile, none"
                ));
            }
        };
        Ok(S3Config {
            bucket_name,
            region: nonempty(o.region).unwrap_or_else(|| "us-east-1".to_owned()),
            endpoint,
            force_path_style: o.s3_force_path_style.unwrap_or(false),
            ssl_verify_peer: o.ssl_verify_peer.unwrap_or(true),
            credentials,
        })
    }
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
    pub blobstore: BlobstoreConfig,
    pub nats: NatsConfig,
    pub docker: DockerConfig,
    /// `hm:`: the health monitor and resurrector.
    pub hm: crate::hm::HmConfig,
    pub deploy: DeployConfig,
    pub sim: SimConfig,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            name: "bosh-rs".to_owned(),
            database_url: None,
            workers: 3,
            users: Vec::new(),
            lock_wait_seconds: 300,
            blobstore: BlobstoreConfig::default(),
            nats: NatsConfig::default(),
            docker: DockerConfig::default(),
            hm: crate::hm::HmConfig::default(),
            deploy: DeployConfig::default(),
            sim: SimConfig::default(),
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
        if raw.deploy.vm_create_concurrency == 0 {
            return Err(invalid("deploy.vm_create_concurrency must be at least 1"));
        }
        if raw
            .users
            .iter()
            .any(|u| u.name.is_empty() || u.password.is_empty())
        {
            return Err(invalid("every user needs a non-empty name and password"));
        }
        let blobstore = match raw.blobstore {
            Some(b) => BlobstoreConfig::from_raw(b).map_err(|m| invalid(&m))?,
            None => BlobstoreConfig::default(),
        };
        let defaults = DirectorConfig::default();
        Ok(DirectorConfig {
            name: raw.name.unwrap_or(defaults.name),
            database_url: raw.database_url,
            workers: raw.workers.unwrap_or(defaults.workers),
            users: raw.users,
            lock_wait_seconds: raw.lock_wait_seconds.unwrap_or(defaults.lock_wait_seconds),
            blobstore,
            nats: raw.nats,
            docker: raw.docker,
            hm: raw.hm,
            deploy: raw.deploy,
            sim: raw.sim,
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
    fn deploy_and_sim_blocks_are_read() {
        let c = DirectorConfig::parse("", Path::new("c.yml")).unwrap();
        assert_eq!(c.deploy.vm_create_concurrency, 32);
        assert!(!c.sim.simulated_agents);
        let c = DirectorConfig::parse(
            "deploy: {vm_create_concurrency: 250}\nsim: {create_vm_delay_ms: 20, simulated_agents: true}\n",
            Path::new("c.yml"),
        )
        .unwrap();
        assert_eq!(c.deploy.vm_create_concurrency, 250);
        assert_eq!(c.sim.create_vm_delay_ms, 20);
        assert_eq!(c.sim.agent_boot_delay_ms, 0);
        assert!(c.sim.simulated_agents);
        assert!(
            DirectorConfig::parse("deploy: {vm_create_concurrency: 0}\n", Path::new("c.yml"))
                .is_err()
        );
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

    fn blobstore_err(text: &str) -> String {
        crate::error::error_chain(&DirectorConfig::parse(text, Path::new("c.yml")).unwrap_err())
    }

    #[test]
    fn blobstore_defaults_to_local_and_reads_s3_like_director_yml() {
        let c = DirectorConfig::parse("", Path::new("c.yml")).unwrap();
        assert_eq!(c.blobstore, BlobstoreConfig::Local { path: None });
        let c = DirectorConfig::parse(
            "blobstore:\n  provider: s3\n  options:\n    bucket_name: b\n    host: minio.local\n    \
             port: 9000\n    use_ssl: false\n    s3_force_path_style: true\n    \
             access_key_id: AK\n    secret_access_key: 98765\n    signature_version: '4'\n",
            Path::new("c.yml"),
        )
        .unwrap();
        let BlobstoreConfig::S3(s3) = &c.blobstore else {
            panic!("{:?}", c.blobstore)
        };
        assert_eq!(s3.bucket_name, "b");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio.local:9000"));
        assert!(s3.force_path_style && s3.ssl_verify_peer);
        // A digits-only secret is still a string, and Debug never shows it.
        assert_eq!(
            s3.credentials,
            S3Credentials::Static {
                access_key_id: "AK".into(),
                secret_access_key: "98765".into()
            }
        );
        assert!(!format!("{c:?}").contains("98765"));
        let c = DirectorConfig::parse(
            "blobstore:\n  provider: s3\n  options:\n    bucket_name: b\n    \
             endpoint: https://s3.example/\n    credentials_source: env_or_profile\n",
            Path::new("c.yml"),
        )
        .unwrap();
        let BlobstoreConfig::S3(s3) = &c.blobstore else {
            panic!()
        };
        assert_eq!(s3.endpoint.as_deref(), Some("https://s3.example"));
        assert_eq!(s3.credentials, S3Credentials::EnvOrProfile);
        let c = DirectorConfig::parse(
            "blobstore:\n  provider: local\n  options:\n    blobstore_path: /srv/blobs\n",
            Path::new("c.yml"),
        )
        .unwrap();
        assert_eq!(
            c.blobstore,
            BlobstoreConfig::Local {
                path: Some(PathBuf::from("/srv/blobs"))
            }
        );
    }

    #[test]
    fn blobstore_errors_name_the_field() {
        let s3 = "blobstore:\n  provider: s3\n  options:\n";
        let e = blobstore_err(&format!("{s3}    region: x\n"));
        assert!(
            e.contains("c.yml") && e.contains("blobstore.options.bucket_name is required"),
            "{e}"
        );
        let e = blobstore_err(&format!("{s3}    bucket_name: b\n"));
        assert!(
            e.contains("access_key_id and secret_access_key are required"),
            "{e}"
        );
        let e = blobstore_err(&format!("{s3}    bucket_name: b\n    bucket: c\n"));
        assert!(
            e.contains("unknown field `bucket`") && e.contains("provider s3 takes"),
            "{e}"
        );
        let e = blobstore_err(&format!("{s3}    bucket_name: b\n    port: huge\n"));
        assert!(e.contains("blobstore.options.port"), "{e}");
        let e = blobstore_err(&format!(
            "{s3}    bucket_name: b\n    endpoint: minio:9000\n    credentials_source: none\n"
        ));
        assert!(
            e.contains("blobstore.options.endpoint 'minio:9000' must start with"),
            "{e}"
        );
        let e = blobstore_err(&format!(
            "{s3}    bucket_name: b\n    credentials_source: iam\n"
        ));
        assert!(e.contains("credentials_source 'iam'"), "{e}");
        let e = blobstore_err(&format!(
            "{s3}    bucket_name: b\n    credentials_source: none\n    secret_access_key: hush\n"
        ));
        assert!(
            e.contains("only used with credentials_source static") && !e.contains("hush"),
            "{e}"
        );
        let e = blobstore_err("blobstore:\n  provider: gcs\n");
        assert!(
            e.contains("blobstore.provider 'gcs' is not supported"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_zero_workers_are_errors() {
        assert!(DirectorConfig::parse("wrkers: 2\n", Path::new("c.yml")).is_err());
        assert!(DirectorConfig::parse("workers: 0\n", Path::new("c.yml")).is_err());
    }

    #[test]
    fn docker_block_defaults_and_overrides() {
        let c = DirectorConfig::parse("", Path::new("c.yml")).unwrap();
        assert_eq!(c.docker, DockerConfig::default());
        let c = DirectorConfig::parse(
            "docker:\n  network: n1\n  subnet: 10.9.8.0/24\n  name_prefix: t-\n",
            Path::new("c.yml"),
        )
        .unwrap();
        assert_eq!(
            (c.docker.network.as_str(), c.docker.subnet.as_str()),
            ("n1", "10.9.8.0/24")
        );
        assert_eq!(c.docker.name_prefix, "t-");
        assert!(DirectorConfig::parse("docker:\n  netwrk: x\n", Path::new("c.yml")).is_err());
    }
}
