//! The sim CPI: VMs are local agent processes, disks and stemcells are directories, all
//! under one root directory so that separate `bosh-sim-cpi` processes share the state.
//! Needs neither root nor Docker.
//!
//! Layout under `root_dir`:
//! - `stemcells/<cid>/stemcell.json`
//! - `vms/<cid>/` — the agent's base dir (`-b`): `vm.json` (sim state), `agent.json`,
//!   `bosh/warden-cpi-agent-env.json` (agent settings, cpi-protocol.md §6)
//! - `disks/<cid>/disk.json` and `disks/<cid>/data/` (the disk hint points there)
//! - `snapshots/<cid>.json`, `logs/agent.<vm cid>.log`, `tmp/`

mod disk;
mod process;
pub mod simulated_agent;
mod stemcell;
mod store;
mod vm;

use crate::Cpi;
use crate::error::CpiError;
use async_trait::async_trait;
use bosh_cpi_protocol::methods::*;
use bosh_types::ids::{DiskCid, StemcellCid, VmCid};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use process::AgentProcess;
pub use simulated_agent::SimulatedAgents;

/// Latency injection and simulated agents (benchmarks and scale tests); off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// How long every `create_vm` takes before it returns.
    pub create_vm_delay: Duration,
    /// How long a simulated agent boots before it dials NATS.
    pub agent_boot_delay: Duration,
    /// VMs get an in-process [`simulated_agent`] instead of an agent process.
    pub simulated_agents: bool,
}

/// The sim CPI's `-configPath` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCpiConfig {
    pub root_dir: PathBuf,
    pub agent: SimAgentConfig,
    #[serde(default = "default_stemcell_formats")]
    pub stemcell_formats: Vec<String>,
}

fn default_stemcell_formats() -> Vec<String> {
    ["general-tar", "warden-tar", "warden-light", "docker-light"]
        .map(str::to_owned)
        .to_vec()
}

/// How VMs' agents run: `command` (argv prefix) followed by the real agent's flags
/// `-b <vm dir> -P <platform> -M <job_supervisor> -C <vm dir>/agent.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimAgentConfig {
    #[serde(deserialize_with = "string_or_list")]
    pub command: Vec<String>,
    /// Written into the settings as `mbus`, like Go CPIs' `agent.mbus`.
    pub mbus: String,
    #[serde(default)]
    pub ntp: Vec<String>,
    /// Written as a top-level settings `blobstore` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstore: Option<Value>,
    #[serde(default = "default_platform")]
    pub platform: String,
    #[serde(default = "default_job_supervisor")]
    pub job_supervisor: String,
}

fn default_platform() -> String {
    "dummy".to_owned()
}

fn default_job_supervisor() -> String {
    "dummy-nats".to_owned()
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Command {
        One(String),
        Argv(Vec<String>),
    }
    let argv = match Command::deserialize(d)? {
        Command::One(s) => vec![s],
        Command::Argv(v) => v,
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(serde::de::Error::custom(
            "agent.command must name a program",
        ));
    }
    Ok(argv)
}

/// Why the sim CPI could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    #[error("Reading config '{}'", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parsing config '{}'", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("Creating state directories under '{}'", path.display())]
    Layout {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The in-process sim CPI.
#[derive(Debug, Clone)]
pub struct SimCpi {
    config: SimCpiConfig,
    options: SimOptions,
    simulated: Arc<SimulatedAgents>,
}

impl SimCpi {
    pub fn new(config: SimCpiConfig) -> Result<Self, SimConfigError> {
        for sub in ["stemcells", "vms", "disks", "snapshots", "logs", "tmp"] {
            let path = config.root_dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|source| SimConfigError::Layout { path, source })?;
        }
        Ok(Self {
            config,
            options: SimOptions::default(),
            simulated: Arc::new(SimulatedAgents::default()),
        })
    }

    /// Turns on latency injection and/or simulated agents.
    pub fn options_set(mut self, options: SimOptions) -> Self {
        self.options = options;
        self
    }

    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// The simulated agents running in this process.
    pub fn simulated_agents(&self) -> &SimulatedAgents {
        &self.simulated
    }

    pub fn from_config_file(path: &Path) -> Result<Self, SimConfigError> {
        let text = std::fs::read(path).map_err(|source| SimConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = serde_json::from_slice(&text).map_err(|source| SimConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        Self::new(config)
    }

    pub fn config(&self) -> &SimCpiConfig {
        &self.config
    }

    /// The VM's directory, which is also its agent's base dir.
    pub fn vm_dir(&self, vm_cid: &VmCid) -> PathBuf {
        self.config.root_dir.join("vms").join(vm_cid.as_str())
    }

    /// The agent settings file of a VM.
    pub fn vm_settings_path(&self, vm_cid: &VmCid) -> PathBuf {
        self.vm_dir(vm_cid)
            .join("bosh")
            .join("warden-cpi-agent-env.json")
    }

    /// The agent process of a VM as recorded, alive or not.
    pub fn vm_agent_process(&self, vm_cid: &VmCid) -> Option<AgentProcess> {
        vm::read_record(self, vm_cid).ok().and_then(|r| r.process)
    }

    /// Whether `snapshot_disk` issued this cid and it was not deleted since.
    pub fn snapshot_exists(&self, cid: &SnapshotCid) -> bool {
        disk::snapshot_exists(self, cid)
    }

    pub fn disk_dir(&self, disk_cid: &DiskCid) -> PathBuf {
        self.config.root_dir.join("disks").join(disk_cid.as_str())
    }

    fn stemcell_dir(&self, cid: &StemcellCid) -> PathBuf {
        self.config.root_dir.join("stemcells").join(cid.as_str())
    }

    fn snapshot_path(&self, cid: &SnapshotCid) -> PathBuf {
        self.config
            .root_dir
            .join("snapshots")
            .join(format!("{}.json", cid.0))
    }
}

/// A new cid: a prefix plus a random UUID.
fn new_cid(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// Cids become path components; refuse anything that could leave the state directory.
fn check_cid(method: Method, cid: &str) -> Result<(), CpiError> {
    let safe = !cid.is_empty()
        && cid != "."
        && cid != ".."
        && cid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if safe {
        Ok(())
    } else {
        Err(CpiError::cloud(
            bosh_cpi_protocol::CpiErrorKind::CloudError,
            method,
            format!("Invalid cid '{cid}'"),
        ))
    }
}

#[async_trait]
impl Cpi for SimCpi {
    async fn info(&self) -> Result<InfoResult, CpiError> {
        Ok(InfoResult {
            api_version: Some(2),
            stemcell_formats: self.config.stemcell_formats.clone(),
        })
    }

    async fn create_stemcell(&self, args: CreateStemcellArgs) -> Result<StemcellCid, CpiError> {
        stemcell::create(self, args)
    }

    async fn delete_stemcell(&self, stemcell_cid: &StemcellCid) -> Result<(), CpiError> {
        stemcell::delete(self, stemcell_cid)
    }

    async fn create_vm(&self, args: CreateVmArgs) -> Result<CreateVmResult, CpiError> {
        vm::create(self, args).await
    }

    async fn delete_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        vm::delete(self, vm_cid).await
    }

    async fn has_vm(&self, vm_cid: &VmCid) -> Result<bool, CpiError> {
        vm::has(self, vm_cid)
    }

    async fn reboot_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        vm::reboot(self, vm_cid).await
    }

    async fn set_vm_metadata(&self, vm_cid: &VmCid, metadata: &Metadata) -> Result<(), CpiError> {
        vm::set_metadata(self, vm_cid, metadata)
    }

    async fn calculate_vm_cloud_properties(
        &self,
        resources: &VmResources,
    ) -> Result<CloudProperties, CpiError> {
        // Processes have no size; echo the request so callers can see what they asked for.
        match serde_json::to_value(resources) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Ok(CloudProperties::new()),
        }
    }

    async fn get_disks(&self, vm_cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
        vm::disks(self, vm_cid)
    }

    async fn create_disk(&self, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
        disk::create(self, args)
    }

    async fn delete_disk(&self, disk_cid: &DiskCid) -> Result<(), CpiError> {
        disk::delete(self, disk_cid)
    }

    async fn has_disk(&self, disk_cid: &DiskCid) -> Result<bool, CpiError> {
        disk::has(self, disk_cid)
    }

    async fn attach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<DiskHint, CpiError> {
        disk::attach(self, vm_cid, disk_cid)
    }

    async fn detach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<(), CpiError> {
        disk::detach(self, vm_cid, disk_cid)
    }

    async fn set_disk_metadata(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<(), CpiError> {
        disk::set_metadata(self, disk_cid, metadata)
    }

    async fn resize_disk(&self, disk_cid: &DiskCid, new_size_mib: u64) -> Result<(), CpiError> {
        disk::resize(self, disk_cid, new_size_mib)
    }

    async fn update_disk(&self, args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError> {
        disk::update(self, args)
    }

    async fn snapshot_disk(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<SnapshotCid, CpiError> {
        disk::snapshot(self, disk_cid, metadata)
    }

    async fn delete_snapshot(&self, snapshot_cid: &SnapshotCid) -> Result<(), CpiError> {
        disk::delete_snapshot(self, snapshot_cid)
    }
}
