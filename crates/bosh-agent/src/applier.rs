//! Installing jobs and packages (§3.1 apply/prepare, §7.1 layout): bundles live under
//! `data/jobs/<job>/<hash>` and `data/packages/<pkg>/<hash>`, enabled by symlinks in
//! `jobs/` and `packages/`.

use crate::blobstore::{BlobstoreClient, BlobstoreError};
use crate::layout::Layout;
use bosh_agent_protocol::{ApplySpec, PackageSpec};
use sha1::{Digest as _, Sha1};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Blobstore(#[from] BlobstoreError),
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Job '{0}' is not in the rendered templates archive")]
    MissingJob(String),
    #[error("Network '{0}' is not found in settings")]
    Network(String),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ApplyError + 'a {
    move |source| ApplyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn sha1_hex(s: &str) -> String {
    hex::encode(Sha1::digest(s.as_bytes()))
}

pub fn job_bundle(layout: &Layout, job: &str, version: &str, archive_sha1: &str) -> PathBuf {
    layout
        .job_bundles(job)
        .join(sha1_hex(&format!("{version}-{archive_sha1}")))
}

pub fn package_bundle(layout: &Layout, pkg: &PackageSpec) -> PathBuf {
    layout
        .package_bundles(&pkg.name)
        .join(sha1_hex(&pkg.version))
}

/// Unpacks a tar archive, gzip-compressed or not, into `dest`.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), ApplyError> {
    let mut file = std::fs::File::open(archive).map_err(io("opening", archive))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io("reading", archive))?;
    let file = std::fs::File::open(archive).map_err(io("opening", archive))?;
    std::fs::create_dir_all(dest).map_err(io("creating", dest))?;
    let result = if n == 2 && magic == [0x1f, 0x8b] {
        tar::Archive::new(flate2::read::GzDecoder::new(file)).unpack(dest)
    } else {
        tar::Archive::new(file).unpack(dest)
    };
    result.map_err(io("unpacking into", dest))
}

/// Points `link` at `target`, replacing whatever was there atomically.
pub fn replace_symlink(target: &Path, link: &Path) -> Result<(), ApplyError> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let tmp = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io("linking", &tmp))?;
    std::fs::rename(&tmp, link).map_err(io("renaming", link))
}

/// Downloads and unpacks what `spec` needs into bundle dirs, skipping bundles already
/// present; enables nothing (that is `prepare`).
pub async fn prepare(
    layout: &Layout,
    blobstore: Option<&BlobstoreClient>,
    spec: &ApplySpec,
) -> Result<(), ApplyError> {
    let tmp_root = layout.tmp();
    tokio::fs::create_dir_all(&tmp_root)
        .await
        .map_err(io("creating", &tmp_root))?;
    for pkg in spec.packages.values() {
        let bundle = package_bundle(layout, pkg);
        if bundle.exists() {
            continue;
        }
        let bs = blobstore.ok_or(BlobstoreError::Option("provider"))?;
        let blob = tmp_root.join(uuid::Uuid::new_v4().to_string());
        let fetched = match &pkg.signed_url {
            Some(url) => {
                bs.fetch_url(
                    &pkg.blobstore_id,
                    url,
                    &pkg.blobstore_headers.clone().unwrap_or_default(),
                    &pkg.sha1,
                    &blob,
                )
                .await
            }
            None => bs.fetch(&pkg.blobstore_id, &pkg.sha1, &blob).await,
        };
        let result = match fetched {
            Ok(()) => unpack_into(&blob, &bundle).await,
            Err(e) => Err(e.into()),
        };
        let _ = tokio::fs::remove_file(&blob).await;
        result?;
    }
    let (Some(job), Some(archive)) = (&spec.job, &spec.rendered_templates_archive) else {
        return Ok(());
    };
    let missing: Vec<_> = job
        .templates
        .iter()
        .filter(|t| !job_bundle(layout, &t.name, &t.version, &archive.sha1).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let bs = blobstore.ok_or(BlobstoreError::Option("provider"))?;
    let blob = tmp_root.join(uuid::Uuid::new_v4().to_string());
    let unpacked = tmp_root.join(uuid::Uuid::new_v4().to_string());
    let result = async {
        bs.fetch(&archive.blobstore_id, &archive.sha1, &blob)
            .await?;
        unpack_blocking(blob.clone(), unpacked.clone()).await?;
        for t in missing {
            let src = unpacked.join(&t.name);
            if !src.is_dir() {
                return Err(ApplyError::MissingJob(t.name.clone()));
            }
            let bundle = job_bundle(layout, &t.name, &t.version, &archive.sha1);
            let parent = bundle.parent().unwrap_or(&bundle);
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            std::fs::rename(&src, &bundle).map_err(io("installing", &bundle))?;
            bin_executables_mark(&bundle.join("bin"))?;
            job_paths_rewrite(layout, &bundle)?;
        }
        Ok(())
    }
    .await;
    let _ = tokio::fs::remove_file(&blob).await;
    let _ = tokio::fs::remove_dir_all(&unpacked).await;
    result
}

/// Rendered templates arrive with mode 0644; a job's `bin/` scripts (ctl, drain, pre-start)
/// must run, so they are made 0755 as the real agent does.
fn bin_executables_mark(bin: &Path) -> Result<(), ApplyError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(bin) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io("making executable", &path))?;
        }
    }
    Ok(())
}

/// Rendered templates name `/var/vcap/...` paths. When this agent runs under another base
/// dir (several sim VMs on one host), they are mapped onto it, as monit files are, so a
/// job's scripts find their own config and packages.
fn job_paths_rewrite(layout: &Layout, bundle: &Path) -> Result<(), ApplyError> {
    if layout.rewrite(crate::layout::DEFAULT_BASE) == crate::layout::DEFAULT_BASE {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(bundle).into_iter().flatten() {
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // binary content is left alone
        };
        if text.contains(crate::layout::DEFAULT_BASE) {
            std::fs::write(path, layout.rewrite(&text)).map_err(io("rewriting", path))?;
        }
    }
    Ok(())
}

async fn unpack_blocking(archive: PathBuf, dest: PathBuf) -> Result<(), ApplyError> {
    tokio::task::spawn_blocking(move || unpack(&archive, &dest))
        .await
        .unwrap_or_else(|e| {
            Err(ApplyError::Io {
                action: "unpacking",
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })
        })
}

/// Unpacks into a sibling temp dir then renames, so a half-unpacked bundle never looks
/// installed.
async fn unpack_into(archive: &Path, bundle: &Path) -> Result<(), ApplyError> {
    let staging = bundle.with_extension("partial");
    let _ = tokio::fs::remove_dir_all(&staging).await;
    unpack_blocking(archive.to_owned(), staging.clone()).await?;
    std::fs::rename(&staging, bundle).map_err(io("installing", bundle))
}

/// Installs (via [`prepare`]) and enables `spec`'s jobs and packages, then removes jobs and
/// packages that are no longer in the spec.
pub async fn apply(
    layout: &Layout,
    blobstore: Option<&BlobstoreClient>,
    spec: &ApplySpec,
) -> Result<(), ApplyError> {
    prepare(layout, blobstore, spec).await?;
    for pkg in spec.packages.values() {
        replace_symlink(
            &package_bundle(layout, pkg),
            &layout.packages().join(&pkg.name),
        )?;
    }
    let archive_sha1 = spec
        .rendered_templates_archive
        .as_ref()
        .map(|a| a.sha1.as_str());
    let mut jobs = Vec::new();
    if let (Some(job), Some(sha1)) = (&spec.job, archive_sha1) {
        for t in &job.templates {
            let bundle = job_bundle(layout, &t.name, &t.version, sha1);
            for pkg in spec.packages.values() {
                replace_symlink(
                    &package_bundle(layout, pkg),
                    &bundle.join("packages").join(&pkg.name),
                )?;
            }
            replace_symlink(&bundle, &layout.job(&t.name))?;
            for dir in [
                layout.job_log_dir(&t.name),
                layout.job_run_dir(&t.name),
                layout.data().join(&t.name),
            ] {
                std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            }
            remove_other_bundles(&layout.job_bundles(&t.name), &bundle);
            jobs.push(t.name.clone());
        }
    }
    replace_symlink(&layout.data_sys(), &layout.sys())?;
    let pkgs: Vec<String> = spec.packages.values().map(|p| p.name.clone()).collect();
    uninstall_others(&layout.jobs(), &layout.data().join("jobs"), &jobs);
    uninstall_others(&layout.packages(), &layout.data().join("packages"), &pkgs);
    for pkg in spec.packages.values() {
        remove_other_bundles(
            &layout.package_bundles(&pkg.name),
            &package_bundle(layout, pkg),
        );
    }
    Ok(())
}

fn remove_other_bundles(dir: &Path, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.flatten() {
        if entry.path() != keep {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn uninstall_others(links: &Path, bundles: &Path, keep: &[String]) {
    let Ok(rd) = std::fs::read_dir(links) else {
        return;
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            tracing::info!(%name, "uninstalling");
            let _ = std::fs::remove_file(entry.path());
            let _ = std::fs::remove_dir_all(bundles.join(&name));
        }
    }
}
