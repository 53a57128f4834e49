//! Persistent disks are directories; attaching records the disk in the VM's settings and
//! hands out the data directory's path as the hint. Snapshots are records.

use super::store::{io_error, read_json, write_json};
use super::vm::{read_record_for, read_settings, write_record, write_settings};
use super::{SimCpi, check_cid, new_cid};
use crate::error::CpiError;
use bosh_cpi_protocol::methods::{
    CloudProperties, CreateDiskArgs, DiskHint, Metadata, SnapshotCid, UpdateDiskArgs,
};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::{DiskCid, VmCid};
use serde::{Deserialize, Serialize};

/// `disks/<cid>/disk.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DiskRecord {
    size_mib: u64,
    cloud_properties: CloudProperties,
    #[serde(default)]
    metadata: Metadata,
    vm_cid: Option<VmCid>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    disk_cid: DiskCid,
    metadata: Metadata,
}

fn record_path(sim: &SimCpi, cid: &DiskCid) -> std::path::PathBuf {
    sim.disk_dir(cid).join("disk.json")
}

fn read(sim: &SimCpi, m: Method, cid: &DiskCid) -> Result<DiskRecord, CpiError> {
    check_cid(m, cid.as_str())?;
    let path = record_path(sim, cid);
    if !path.is_file() {
        return Err(CpiError::cloud(
            CpiErrorKind::DiskNotFound,
            m,
            format!("Disk '{cid}' not found"),
        ));
    }
    read_json(m, &path)
}

fn write(sim: &SimCpi, m: Method, cid: &DiskCid, r: &DiskRecord) -> Result<(), CpiError> {
    write_json(m, &record_path(sim, cid), r)
}

fn hint(sim: &SimCpi, cid: &DiskCid) -> DiskHint {
    DiskHint::Path(
        sim.disk_dir(cid)
            .join("data")
            .to_string_lossy()
            .into_owned(),
    )
}

pub(super) fn create(sim: &SimCpi, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
    let m = Method::CreateDisk;
    if let Some(vm) = &args.vm_cid {
        // Only a locality hint, but a hint naming a missing VM is a caller bug worth showing.
        read_record_for(sim, m, vm)?;
    }
    let cid = DiskCid::new(new_cid("disk")).expect("generated cids are not empty");
    let data = sim.disk_dir(&cid).join("data");
    std::fs::create_dir_all(&data).map_err(|e| io_error(m, "Creating", &data, e))?;
    let record = DiskRecord {
        size_mib: args.size_mib,
        cloud_properties: args.cloud_properties,
        metadata: Metadata::new(),
        vm_cid: None,
    };
    write(sim, m, &cid, &record)?;
    tracing::info!(%cid, size_mib = args.size_mib, "disk created");
    Ok(cid)
}

pub(super) fn delete(sim: &SimCpi, cid: &DiskCid) -> Result<(), CpiError> {
    let m = Method::DeleteDisk;
    let record = read(sim, m, cid)?;
    if let Some(vm) = record.vm_cid {
        return Err(CpiError::cloud(
            CpiErrorKind::CloudError,
            m,
            format!("Disk '{cid}' is attached to VM '{vm}'"),
        ));
    }
    let dir = sim.disk_dir(cid);
    std::fs::remove_dir_all(&dir).map_err(|e| io_error(m, "Removing", &dir, e))
}

pub(super) fn has(sim: &SimCpi, cid: &DiskCid) -> Result<bool, CpiError> {
    check_cid(Method::HasDisk, cid.as_str())?;
    Ok(record_path(sim, cid).is_file())
}

pub(super) fn attach(sim: &SimCpi, vm_cid: &VmCid, cid: &DiskCid) -> Result<DiskHint, CpiError> {
    let m = Method::AttachDisk;
    let mut vm = read_record_for(sim, m, vm_cid)?;
    let mut disk = read(sim, m, cid)?;
    match &disk.vm_cid {
        Some(other) if other != vm_cid => {
            return Err(CpiError::cloud(
                CpiErrorKind::CloudError,
                m,
                format!("Disk '{cid}' is already attached to VM '{other}'"),
            ));
        }
        _ => {}
    }
    let hint = hint(sim, cid);
    let mut settings = read_settings(sim, m, vm_cid)?;
    settings.disks.persistent.insert(cid.clone(), hint.clone());
    write_settings(sim, m, vm_cid, &settings)?;
    if !vm.disks.contains(cid) {
        vm.disks.push(cid.clone());
        write_record(sim, m, vm_cid, &vm)?;
    }
    disk.vm_cid = Some(vm_cid.clone());
    write(sim, m, cid, &disk)?;
    tracing::info!(disk = %cid, vm = %vm_cid, "disk attached");
    Ok(hint)
}

pub(super) fn detach(sim: &SimCpi, vm_cid: &VmCid, cid: &DiskCid) -> Result<(), CpiError> {
    let m = Method::DetachDisk;
    let mut vm = read_record_for(sim, m, vm_cid)?;
    let mut disk = read(sim, m, cid)?;
    if disk.vm_cid.as_ref() != Some(vm_cid) {
        return Err(CpiError::cloud(
            CpiErrorKind::DiskNotAttached,
            m,
            format!("Disk '{cid}' is not attached to VM '{vm_cid}'"),
        ));
    }
    let mut settings = read_settings(sim, m, vm_cid)?;
    settings.disks.persistent.remove(cid);
    write_settings(sim, m, vm_cid, &settings)?;
    vm.disks.retain(|d| d != cid);
    write_record(sim, m, vm_cid, &vm)?;
    disk.vm_cid = None;
    write(sim, m, cid, &disk)?;
    tracing::info!(disk = %cid, vm = %vm_cid, "disk detached");
    Ok(())
}

/// A VM is going away: its disks become detached (best effort; the VM is deleted anyway).
pub(super) fn forget_attachment(sim: &SimCpi, cid: &DiskCid, vm_cid: &VmCid) {
    let m = Method::DeleteVm;
    if let Ok(mut disk) = read(sim, m, cid)
        && disk.vm_cid.as_ref() == Some(vm_cid)
    {
        disk.vm_cid = None;
        let _ = write(sim, m, cid, &disk);
    }
}

pub(super) fn set_metadata(
    sim: &SimCpi,
    cid: &DiskCid,
    metadata: &Metadata,
) -> Result<(), CpiError> {
    let m = Method::SetDiskMetadata;
    let mut disk = read(sim, m, cid)?;
    disk.metadata
        .extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    write(sim, m, cid, &disk)
}

pub(super) fn resize(sim: &SimCpi, cid: &DiskCid, new_size_mib: u64) -> Result<(), CpiError> {
    let m = Method::ResizeDisk;
    let mut disk = read(sim, m, cid)?;
    if new_size_mib < disk.size_mib {
        return Err(CpiError::cloud(
            CpiErrorKind::NotSupported,
            m,
            format!(
                "Disk '{cid}' cannot shrink from {} to {new_size_mib} MiB",
                disk.size_mib
            ),
        ));
    }
    disk.size_mib = new_size_mib;
    write(sim, m, cid, &disk)
}

pub(super) fn update(sim: &SimCpi, args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError> {
    let m = Method::UpdateDisk;
    let mut disk = read(sim, m, &args.disk_cid)?;
    if args.new_size_mib < disk.size_mib {
        return Err(CpiError::cloud(
            CpiErrorKind::NotSupported,
            m,
            format!("Disk '{}' cannot shrink", args.disk_cid),
        ));
    }
    disk.size_mib = args.new_size_mib;
    disk.cloud_properties = args.cloud_properties;
    write(sim, m, &args.disk_cid, &disk)?;
    // Updated in place: the cid stays.
    Ok(None)
}

pub(super) fn snapshot(
    sim: &SimCpi,
    cid: &DiskCid,
    metadata: &Metadata,
) -> Result<SnapshotCid, CpiError> {
    let m = Method::SnapshotDisk;
    read(sim, m, cid)?;
    let snap = SnapshotCid(new_cid("snap"));
    let record = SnapshotRecord {
        disk_cid: cid.clone(),
        metadata: metadata.clone(),
    };
    write_json(m, &sim.snapshot_path(&snap), &record)?;
    Ok(snap)
}

pub(super) fn delete_snapshot(sim: &SimCpi, cid: &SnapshotCid) -> Result<(), CpiError> {
    let m = Method::DeleteSnapshot;
    check_cid(m, &cid.0)?;
    let path = sim.snapshot_path(cid);
    // Missing snapshots are fine: the director treats snapshot deletion as tolerant.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error(m, "Removing", &path, e))
        }
        _ => Ok(()),
    }
}

/// Whether a snapshot record exists.
pub(super) fn snapshot_exists(sim: &SimCpi, cid: &SnapshotCid) -> bool {
    sim.snapshot_path(cid).is_file()
}
