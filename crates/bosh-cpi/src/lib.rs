//! The `Cpi` trait the director drives, the client for external CPI executables, and the
//! built-in sim CPI (VMs are local agent processes, disks are directories).
//!
//! - [`Cpi`]: the v2 methods, object safe; errors keep the CPI's own type and message.
//! - [`external::ExternalCpi`]: one process per call, as the director runs CPIs.
//! - [`sim::SimCpi`]: in-process implementation, also served by the `bosh-sim-cpi` binary.
//! - [`docker::DockerCpi`]: containers, volumes and networks of a Docker engine, shaped like
//!   the real bosh-docker-cpi; served by the `bosh-docker-cpi` binary.
//! - [`serve`]: turns one JSON request into one JSON response for any `Cpi`.

pub mod docker;
pub mod error;
pub mod external;
pub mod log_sink;
pub mod serve;
pub mod sim;

pub use bosh_cpi_protocol as protocol;
pub use docker::{DockerCpi, DockerCpiConfig};
pub use error::CpiError;
pub use external::{ExternalCpi, ExternalCpiConfig};
pub use log_sink::{CpiLogSink, MemoryLogSink};
pub use sim::{SimCpi, SimCpiConfig};

use async_trait::async_trait;
use bosh_cpi_protocol::methods::{
    CloudProperties, CreateDiskArgs, CreateStemcellArgs, CreateVmArgs, CreateVmResult, DiskHint,
    InfoResult, Metadata, SnapshotCid, UpdateDiskArgs, VmResources,
};
use bosh_types::ids::{DiskCid, StemcellCid, VmCid};

/// The CPI contract v2, as the director uses it. Implemented by the external-executable
/// client and by built-in CPIs.
#[async_trait]
pub trait Cpi: Send + Sync {
    async fn info(&self) -> Result<InfoResult, CpiError>;
    async fn create_stemcell(&self, args: CreateStemcellArgs) -> Result<StemcellCid, CpiError>;
    async fn delete_stemcell(&self, stemcell_cid: &StemcellCid) -> Result<(), CpiError>;
    /// Returns `[vm_cid, networks]`; the VM is booting when this returns.
    async fn create_vm(&self, args: CreateVmArgs) -> Result<CreateVmResult, CpiError>;
    async fn delete_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError>;
    async fn has_vm(&self, vm_cid: &VmCid) -> Result<bool, CpiError>;
    async fn reboot_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError>;
    async fn set_vm_metadata(&self, vm_cid: &VmCid, metadata: &Metadata) -> Result<(), CpiError>;
    async fn calculate_vm_cloud_properties(
        &self,
        resources: &VmResources,
    ) -> Result<CloudProperties, CpiError>;
    async fn get_disks(&self, vm_cid: &VmCid) -> Result<Vec<DiskCid>, CpiError>;
    async fn create_disk(&self, args: CreateDiskArgs) -> Result<DiskCid, CpiError>;
    async fn delete_disk(&self, disk_cid: &DiskCid) -> Result<(), CpiError>;
    async fn has_disk(&self, disk_cid: &DiskCid) -> Result<bool, CpiError>;
    /// Returns the disk hint the agent needs (`add_persistent_disk`).
    async fn attach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<DiskHint, CpiError>;
    async fn detach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<(), CpiError>;
    async fn set_disk_metadata(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<(), CpiError>;
    async fn resize_disk(&self, disk_cid: &DiskCid, new_size_mib: u64) -> Result<(), CpiError>;
    /// `None` means the disk kept its cid.
    async fn update_disk(&self, args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError>;
    async fn snapshot_disk(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<SnapshotCid, CpiError>;
    async fn delete_snapshot(&self, snapshot_cid: &SnapshotCid) -> Result<(), CpiError>;

    /// A handle that also sends the CPI's own log text (an external CPI's stderr and
    /// response `log`) to `sink`; `None` when this CPI writes no such text.
    fn with_log_sink(
        &self,
        _sink: std::sync::Arc<dyn CpiLogSink>,
    ) -> Option<std::sync::Arc<dyn Cpi>> {
        None
    }
}
