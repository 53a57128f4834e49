//! Persistent disks are named local volumes `vol-<uuid>` (their size is not enforced, as in
//! the real CPI). Attaching binds the volume at `/warden-cpi-dev/<cid>` by rebuilding the
//! container; the disk hint is that path.

use super::vm::{self, disk_path};
use super::{DockerCpi, LABEL_CPI, LABEL_CPI_VALUE, cloud_error, is_conflict, is_not_found};
use crate::error::CpiError;
use bollard::models::VolumeCreateOptions;
use bollard::query_parameters::RemoveVolumeOptions;
use bosh_cpi_protocol::methods::{CreateDiskArgs, DiskHint};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::{DiskCid, VmCid};
use std::collections::HashMap;

pub(super) fn not_found(method: Method, cid: &DiskCid) -> CpiError {
    CpiError::cloud(
        CpiErrorKind::DiskNotFound,
        method,
        format!("Disk '{cid}' not found"),
    )
}

pub(super) async fn create(cpi: &DockerCpi, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
    let m = Method::CreateDisk;
    let name = cpi.new_name("vol");
    let labels = HashMap::from([
        (LABEL_CPI.to_owned(), LABEL_CPI_VALUE.to_owned()),
        ("io.bosh-rs.size-mib".to_owned(), args.size_mib.to_string()),
    ]);
    cpi.docker(m)
        .await?
        .create_volume(VolumeCreateOptions {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        })
        .await
        .map_err(|e| cloud_error(m, "Creating volume", e))?;
    tracing::info!(cid = %name, size_mib = args.size_mib, "disk created");
    DiskCid::new(name).map_err(|e| CpiError::cloud(CpiErrorKind::CloudError, m, e.to_string()))
}

pub(super) async fn delete(cpi: &DockerCpi, cid: &DiskCid) -> Result<(), CpiError> {
    let m = Method::DeleteDisk;
    match cpi
        .docker(m)
        .await?
        // Not forced: the engine would drop a volume still bound to a container.
        .remove_volume(cid.as_str(), Some(RemoveVolumeOptions { force: false }))
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Err(not_found(m, cid)),
        Err(e) if is_conflict(&e) => Err(cloud_error(
            m,
            &format!("Deleting volume '{cid}' (still attached?)"),
            e,
        )),
        Err(e) => Err(cloud_error(m, &format!("Deleting volume '{cid}'"), e)),
    }
}

pub(super) async fn has(cpi: &DockerCpi, cid: &DiskCid) -> Result<bool, CpiError> {
    let m = Method::HasDisk;
    match cpi.docker(m).await?.inspect_volume(cid.as_str()).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(cloud_error(m, &format!("Inspecting volume '{cid}'"), e)),
    }
}

pub(super) async fn attach(
    cpi: &DockerCpi,
    vm_cid: &VmCid,
    disk_cid: &DiskCid,
) -> Result<DiskHint, CpiError> {
    let m = Method::AttachDisk;
    if !has(cpi, disk_cid).await? {
        return Err(not_found(m, disk_cid));
    }
    let container = vm::inspect(cpi, m, vm_cid).await?;
    let spec = vm::spec_of(m, vm_cid, &container)?;
    let path = disk_path(disk_cid);
    let hint = DiskHint::Path(path);
    if spec.disks.contains(disk_cid) {
        return Ok(hint);
    }
    let mut disks = spec.disks.clone();
    disks.push(disk_cid.clone());
    let for_env = hint.clone();
    vm::recreate(cpi, m, vm_cid, spec, disks, |env| {
        env.disks.persistent.insert(disk_cid.clone(), for_env);
    })
    .await?;
    tracing::info!(vm = %vm_cid, disk = %disk_cid, "disk attached");
    Ok(hint)
}

pub(super) async fn detach(
    cpi: &DockerCpi,
    vm_cid: &VmCid,
    disk_cid: &DiskCid,
) -> Result<(), CpiError> {
    let m = Method::DetachDisk;
    let container = vm::inspect(cpi, m, vm_cid).await?;
    let spec = vm::spec_of(m, vm_cid, &container)?;
    if !spec.disks.contains(disk_cid) {
        // Nothing to unbind; detaching twice is harmless.
        tracing::warn!(vm = %vm_cid, disk = %disk_cid, "disk not attached");
        return Ok(());
    }
    let disks: Vec<DiskCid> = spec
        .disks
        .iter()
        .filter(|d| *d != disk_cid)
        .cloned()
        .collect();
    vm::recreate(cpi, m, vm_cid, spec, disks, |env| {
        env.disks.persistent.remove(disk_cid);
    })
    .await?;
    tracing::info!(vm = %vm_cid, disk = %disk_cid, "disk detached");
    Ok(())
}
