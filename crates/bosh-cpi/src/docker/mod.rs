//! The docker CPI: VMs are privileged containers, disks are named volumes, stemcells are
//! images imported from a rootfs tarball. Names, binds and the settings file follow the real
//! bosh-docker-cpi (cpi-protocol.md §7) so stemcells and agents built for it fit.
//!
//! | BOSH | Docker | cid |
//! |---|---|---|
//! | stemcell | image `<repo>:img-<uuid>` | `bosh.io/stemcells:img-<uuid>` |
//! | VM | container `c-<uuid>`, ephemeral volume `vol-eph-<cid>` at `/var/vcap/data/` | `c-<uuid>` |
//! | persistent disk | volume `vol-<uuid>` bound at `/warden-cpi-dev/<cid>` | `vol-<uuid>` |
//! | manual / dynamic network | user-defined bridge network | - |

pub mod config;
mod disk;
mod files;
mod network;
mod stemcell;
mod vm;

pub use config::{DockerAgentConfig, DockerConfigError, DockerCpiConfig, DockerEngineConfig};
pub use files::AGENT_ENV_PATH;

use crate::Cpi;
use crate::error::CpiError;
use async_trait::async_trait;
use bollard::Docker;
use bosh_cpi_protocol::methods::{
    CloudProperties, CreateDiskArgs, CreateStemcellArgs, CreateVmArgs, CreateVmResult, DiskHint,
    InfoResult, Metadata, SnapshotCid, UpdateDiskArgs, VmResources,
};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::{DiskCid, StemcellCid, VmCid};
use std::path::Path;
use tokio::sync::OnceCell;

/// What `info` reports, as the real docker CPI.
pub const STEMCELL_FORMATS: [&str; 3] = ["warden-tar", "general-tar", "docker-light"];

/// Label on every object this CPI creates.
pub(crate) const LABEL_CPI: &str = "io.bosh-rs.cpi";
pub(crate) const LABEL_CPI_VALUE: &str = "docker";

pub struct DockerCpi {
    config: DockerCpiConfig,
    client: OnceCell<Docker>,
}

impl DockerCpi {
    pub fn new(config: DockerCpiConfig) -> Result<Self, DockerConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            client: OnceCell::new(),
        })
    }

    pub fn from_config_file(path: &Path) -> Result<Self, DockerConfigError> {
        Self::new(DockerCpiConfig::from_file(path)?)
    }

    pub fn config(&self) -> &DockerCpiConfig {
        &self.config
    }

    /// The engine client, connected on first use (negotiating the API version unless the
    /// config pins one).
    pub(crate) async fn docker(&self, method: Method) -> Result<&Docker, CpiError> {
        self.client
            .get_or_try_init(|| connect(&self.config.docker))
            .await
            .map_err(|e| {
                CpiError::cloud(
                    CpiErrorKind::CloudError,
                    method,
                    format!("Connecting to Docker at '{}': {e}", self.config.docker.host),
                )
            })
    }

    /// A new name `<prefix><kind>-<uuid>`.
    pub(crate) fn new_name(&self, kind: &str) -> String {
        format!("{}{kind}-{}", self.config.name_prefix, uuid::Uuid::new_v4())
    }
}

async fn connect(cfg: &DockerEngineConfig) -> Result<Docker, bollard::errors::Error> {
    const TIMEOUT_SECS: u64 = 600;
    let pinned = cfg.api_version.as_deref().and_then(parse_api_version);
    let version = pinned.unwrap_or(*bollard::API_DEFAULT_VERSION);
    let docker = if cfg.host.starts_with("unix://") {
        Docker::connect_with_unix(&cfg.host, TIMEOUT_SECS, &version)?
    } else {
        Docker::connect_with_http(&cfg.host, TIMEOUT_SECS, &version)?
    };
    if pinned.is_some() {
        Ok(docker)
    } else {
        docker.negotiate_version().await
    }
}

fn parse_api_version(text: &str) -> Option<bollard::ClientVersion> {
    let (major, minor) = text.split_once('.')?;
    Some(bollard::ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// The engine said 404.
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

pub(crate) fn is_conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

/// An engine failure as the CPI error `kind`, with what we were doing.
pub(crate) fn engine_error(
    kind: CpiErrorKind,
    method: Method,
    doing: &str,
    e: bollard::errors::Error,
) -> CpiError {
    CpiError::cloud(kind, method, format!("{doing}: {e}"))
}

pub(crate) fn cloud_error(method: Method, doing: &str, e: bollard::errors::Error) -> CpiError {
    engine_error(CpiErrorKind::CloudError, method, doing, e)
}

fn not_supported(method: Method) -> CpiError {
    CpiError::cloud(
        CpiErrorKind::NotSupported,
        method,
        format!("'{method}' is not supported by the docker CPI"),
    )
}

#[async_trait]
impl Cpi for DockerCpi {
    async fn info(&self) -> Result<InfoResult, CpiError> {
        Ok(InfoResult {
            api_version: Some(2),
            stemcell_formats: STEMCELL_FORMATS.iter().map(|s| s.to_string()).collect(),
        })
    }

    async fn create_stemcell(&self, args: CreateStemcellArgs) -> Result<StemcellCid, CpiError> {
        stemcell::create(self, args).await
    }

    async fn delete_stemcell(&self, stemcell_cid: &StemcellCid) -> Result<(), CpiError> {
        stemcell::delete(self, stemcell_cid).await
    }

    async fn create_vm(&self, args: CreateVmArgs) -> Result<CreateVmResult, CpiError> {
        vm::create(self, args).await
    }

    async fn delete_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        vm::delete(self, vm_cid).await
    }

    async fn has_vm(&self, vm_cid: &VmCid) -> Result<bool, CpiError> {
        vm::has(self, vm_cid).await
    }

    async fn reboot_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        vm::reboot(self, vm_cid).await
    }

    async fn set_vm_metadata(&self, vm_cid: &VmCid, _metadata: &Metadata) -> Result<(), CpiError> {
        // Container labels are fixed at creation; the real CPI ignores metadata too. The VM
        // must exist, though, so a typo'd cid is not silently accepted.
        vm::inspect(self, Method::SetVmMetadata, vm_cid).await?;
        Ok(())
    }

    async fn calculate_vm_cloud_properties(
        &self,
        _resources: &VmResources,
    ) -> Result<CloudProperties, CpiError> {
        // Containers take the host's resources; the real CPI answers `{}`.
        Ok(CloudProperties::new())
    }

    async fn get_disks(&self, vm_cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
        vm::disks(self, vm_cid).await
    }

    async fn create_disk(&self, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
        disk::create(self, args).await
    }

    async fn delete_disk(&self, disk_cid: &DiskCid) -> Result<(), CpiError> {
        disk::delete(self, disk_cid).await
    }

    async fn has_disk(&self, disk_cid: &DiskCid) -> Result<bool, CpiError> {
        disk::has(self, disk_cid).await
    }

    async fn attach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<DiskHint, CpiError> {
        disk::attach(self, vm_cid, disk_cid).await
    }

    async fn detach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<(), CpiError> {
        disk::detach(self, vm_cid, disk_cid).await
    }

    async fn set_disk_metadata(
        &self,
        disk_cid: &DiskCid,
        _metadata: &Metadata,
    ) -> Result<(), CpiError> {
        // Volume labels are fixed at creation; accepted and ignored as in the real CPI.
        if disk::has(self, disk_cid).await? {
            Ok(())
        } else {
            Err(disk::not_found(Method::SetDiskMetadata, disk_cid))
        }
    }

    async fn resize_disk(&self, _disk_cid: &DiskCid, _new_size_mib: u64) -> Result<(), CpiError> {
        // Volumes have no size; the real CPI treats resizing as a no-op.
        Ok(())
    }

    async fn update_disk(&self, _args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError> {
        Err(not_supported(Method::UpdateDisk))
    }

    async fn snapshot_disk(
        &self,
        _disk_cid: &DiskCid,
        _metadata: &Metadata,
    ) -> Result<SnapshotCid, CpiError> {
        // Snapshots are not taken; the empty cid tells the director so, as the real CPI.
        Ok(SnapshotCid(String::new()))
    }

    async fn delete_snapshot(&self, _snapshot_cid: &SnapshotCid) -> Result<(), CpiError> {
        Ok(())
    }
}
