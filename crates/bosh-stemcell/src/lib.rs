//! Stemcell builders.
//!
//! - [`docker::build_docker_stemcell`]: a Debian rootfs made with `debootstrap` (cached by its
//!   package list), our `bosh-agent` and the `/var/vcap` skeleton layered on top, packed as a
//!   full stemcell whose `image` is a gzipped rootfs tarball for the docker CPI.
//! - [`sim::build_sim_stemcell`]: a light stemcell (empty `image`) for the sim CPI.
//!
//! Both write `stemcell.MF` + `image` tarballs that `bosh_release::stemcell` reads.

pub mod docker;
mod pack;
pub mod sim;

pub use docker::{DockerStemcellOptions, build_docker_stemcell};
pub use sim::{SimStemcellOptions, build_sim_stemcell};

use std::path::PathBuf;

/// Formats the docker CPI accepts for full stemcells (its `info` also lists `docker-light`).
pub const DOCKER_STEMCELL_FORMATS: [&str; 2] = ["warden-tar", "general-tar"];
/// What the sim CPI accepts by default.
pub const SIM_STEMCELL_FORMATS: [&str; 1] = ["warden-tar"];

#[derive(Debug, thiserror::Error)]
pub enum StemcellBuildError {
    #[error("{doing} {}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent binary {} not found (build bosh-agent or pass --agent)", .0.display())]
    AgentMissing(PathBuf),
    #[error("running {command} failed: {detail}")]
    Command { command: String, detail: String },
    #[error("stemcell builds need {0}")]
    Requirement(String),
}

pub(crate) fn io_err(
    doing: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> StemcellBuildError {
    let path = path.into();
    move |source| StemcellBuildError::Io {
        doing,
        path,
        source,
    }
}

/// A written stemcell tarball.
#[derive(Debug, Clone)]
pub struct BuiltStemcell {
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub sha1: String,
    /// The base rootfs came from the cache (docker stemcells only).
    pub cache_hit: bool,
}

/// `$BOSH_RS_CACHE/stemcell`, else `$XDG_CACHE_HOME/bosh-rs/stemcell`, else
/// `~/.cache/bosh-rs/stemcell`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOSH_RS_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("stemcell");
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("bosh-rs").join("stemcell");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home)
        .join(".cache")
        .join("bosh-rs")
        .join("stemcell")
}
