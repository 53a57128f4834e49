//! Files inside containers, through the engine's archive API (works on created and stopped
//! containers too, and needs no `tar` in the image).

use super::{DockerCpi, cloud_error, is_not_found};
use crate::error::CpiError;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use futures::TryStreamExt;
use std::io::Read;

/// Where the warden/docker stemcells' agent reads its settings (its `agent.json` points there).
pub const AGENT_ENV_PATH: &str = "/var/vcap/bosh/warden-cpi-agent-env.json";

/// Writes `contents` at absolute `path` in the container, creating missing parent
/// directories (0755) as needed.
pub(super) async fn write_file(
    cpi: &DockerCpi,
    method: Method,
    container: &str,
    path: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), CpiError> {
    let docker = cpi.docker(method).await?;
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = if parent.is_empty() { "/" } else { parent };
    let single = tar_of(&[], name, contents, mode);
    let upload = |dest: &str, body: Vec<u8>| {
        docker.upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: dest.to_owned(),
                ..Default::default()
            }),
            bollard::body_full(body.into()),
        )
    };
    match upload(parent, single).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) && parent != "/" => {
            // The parent is missing: send it along, rooted at `/`.
            let dirs: Vec<&str> = parent
                .trim_start_matches('/')
                .split('/')
                .filter(|s| !s.is_empty())
                .collect();
            let rooted = tar_of(&dirs, name, contents, mode);
            upload("/", rooted)
                .await
                .map_err(|e| cloud_error(method, &format!("Writing '{path}' in '{container}'"), e))
        }
        Err(e) => Err(cloud_error(
            method,
            &format!("Writing '{path}' in '{container}'"),
            e,
        )),
    }
}

/// The file at absolute `path` in the container, or `None` when it does not exist.
pub(super) async fn read_file(
    cpi: &DockerCpi,
    method: Method,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, CpiError> {
    let docker = cpi.docker(method).await?;
    let chunks: Result<Vec<bytes::Bytes>, _> = docker
        .download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: path.to_owned(),
            }),
        )
        .try_collect()
        .await;
    let chunks = match chunks {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => {
            return Err(cloud_error(
                method,
                &format!("Reading '{path}' from '{container}'"),
                e,
            ));
        }
    };
    let body: Vec<u8> = chunks.concat();
    let bad = |e: std::io::Error| {
        CpiError::cloud(
            CpiErrorKind::CloudError,
            method,
            format!("Reading '{path}' from '{container}': {e}"),
        )
    };
    let mut archive = tar::Archive::new(body.as_slice());
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type().is_file() {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).map_err(bad)?;
            return Ok(Some(contents));
        }
    }
    Ok(None)
}

/// A tar with directories `dirs` (nested, in order) and the file `name` inside the last.
fn tar_of(dirs: &[&str], name: &str, contents: &[u8], mode: u32) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut prefix = String::new();
    for dir in dirs {
        prefix.push_str(dir);
        prefix.push('/');
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(0);
        // Writing into a Vec cannot fail.
        let _ = builder.append_data(&mut header, &prefix, std::io::empty());
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_size(contents.len() as u64);
    header.set_mtime(0);
    let _ = builder.append_data(&mut header, format!("{prefix}{name}"), contents);
    builder.into_inner().unwrap_or_default()
}
