//! Building one job/package/license archive (formats.md §2 B.5) and putting it into the dev
//! or final index, reusing an existing build with the same fingerprint when there is one.
//! Each step appends the reference CLI's progress lines to a log the caller prints, so that
//! parallel builds still print in a fixed order.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::blobstore::Blobstore;
use crate::fingerprint::{FingerprintError, fingerprint, is_owner_executable};
use crate::index::{ArchiveCache, BuildEntry, BuildIndex, IndexError};
use crate::release_dir::{DIGEST_ALGO, Resource, ResourceKind};
use crate::tarball_write::{TarballWriteError, write_dir_archive};
use bosh_types::digest::Digest;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Expected source ('{expected}') and staging ('{actual}') fingerprints to match")]
    StagingMismatch { expected: String, actual: String },
    #[error("Running prep scripts: '{script}' exited with {status}:\n{output}")]
    PrepScript {
        script: PathBuf,
        status: String,
        output: String,
    },
    #[error("Expected to find '{name}/{fingerprint}'")]
    Missing { name: String, fingerprint: String },
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Archive(#[from] TarballWriteError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + use<> {
    let path = path.to_path_buf();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}

/// Where builds are looked up and stored.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub release_dir: PathBuf,
    pub cache: ArchiveCache,
    pub blobstore: Blobstore,
}

impl BuildContext {
    pub fn dev_index(&self, kind: ResourceKind) -> BuildIndex {
        BuildIndex::dev(&self.release_dir, kind)
    }

    pub fn final_index(&self, kind: ResourceKind) -> BuildIndex {
        BuildIndex::final_(&self.release_dir, kind)
    }
}

/// A resource with its archive: a path (in the cache) and the archive's digest string.
#[derive(Debug, Clone)]
pub struct BuiltResource {
    pub kind: ResourceKind,
    pub name: String,
    pub fingerprint: String,
    pub dependencies: Vec<String>,
    pub archive_path: PathBuf,
    pub sha1: String,
}

impl BuiltResource {
    fn from_resource(res: &Resource, archive_path: PathBuf, sha1: String) -> Self {
        BuiltResource {
            kind: res.kind,
            name: res.name.clone(),
            fingerprint: res.fingerprint.clone(),
            dependencies: res.dependencies.clone(),
            archive_path,
            sha1,
        }
    }
}

/// Finds `name/fingerprint` in `index`, making sure the archive is in the cache.
fn find_in(
    ctx: &BuildContext,
    index: &BuildIndex,
    name: &str,
    fingerprint: &str,
    log: &mut Vec<String>,
) -> Result<Option<(PathBuf, String)>, BuildError> {
    let Some(entry) = index.find(name, fingerprint)? else {
        return Ok(None);
    };
    let blob_name = format!("{name}/{}", entry.version);
    let blobstore = index.is_final().then_some(&ctx.blobstore);
    let mut downloaded = false;
    let path = ctx.cache.get(
        &blob_name,
        &entry.blobstore_id,
        &entry.sha1,
        blobstore,
        &mut downloaded,
    );
    if downloaded || (path.is_err() && blobstore.is_some() && !entry.blobstore_id.is_empty()) {
        let desc = format!("sha1={}", entry.sha1);
        log.push(format!("-- Started downloading '{blob_name}' ({desc})"));
        log.push(match &path {
            Ok(_) => format!("-- Finished downloading '{blob_name}' ({desc})"),
            Err(_) => format!("-- Failed downloading '{blob_name}' ({desc})"),
        });
    }
    Ok(Some((path?, entry.sha1)))
}

/// `create-release` step 5: reuse from the dev then final index, else build and add to the
/// dev index (and cache).
pub fn build_resource(
    ctx: &BuildContext,
    res: &Resource,
    log: &mut Vec<String>,
) -> Result<BuiltResource, BuildError> {
    let dev = ctx.dev_index(res.kind);
    let fin = ctx.final_index(res.kind);
    for index in [&dev, &fin] {
        if let Some((path, sha1)) = find_in(ctx, index, &res.name, &res.fingerprint, log)? {
            return Ok(BuiltResource::from_resource(res, path, sha1));
        }
    }
    if res.expect_to_exist {
        return Err(BuildError::Missing {
            name: res.name.clone(),
            fingerprint: res.fingerprint.clone(),
        });
    }

    let work = tempfile::Builder::new()
        .prefix("bosh-resource-archive")
        .tempdir()
        .map_err(io_err(
            "Creating staging directory in",
            &std::env::temp_dir(),
        ))?;
    let archive = work.path().join("archive.tgz");
    build_archive(ctx, res, work.path(), &archive)?;
    let f = fs::File::open(&archive).map_err(io_err("Reading archive", &archive))?;
    let sha1 = Digest::compute_reader(DIGEST_ALGO, std::io::BufReader::new(f))
        .map_err(io_err("Calculating archive SHA1 of", &archive))?
        .to_string();

    let desc = format!("{}/{}", res.name, res.fingerprint);
    log.push(format!("Adding {} '{desc}'...", res.kind.word()));
    let cached = ctx.cache.add(&archive, &sha1)?;
    let entry = BuildEntry {
        key: res.fingerprint.clone(),
        version: res.fingerprint.clone(),
        blobstore_id: String::new(),
        sha1: sha1.clone(),
    };
    match dev.add(&res.name, entry) {
        Ok(()) => {}
        // Someone else added it meanwhile: use theirs.
        Err(IndexError::Duplicate { .. }) => {
            if let Some((path, sha1)) = find_in(ctx, &dev, &res.name, &res.fingerprint, log)? {
                return Ok(BuiltResource::from_resource(res, path, sha1));
            }
        }
        Err(e) => {
            log.push(format!("Failed adding {} '{desc}'", res.kind.word()));
            return Err(e.into());
        }
    }
    log.push(format!("Added {} '{desc}'", res.kind.word()));
    Ok(BuiltResource::from_resource(res, cached, sha1))
}

/// Finalizing: reuse the final index entry if there is one, else upload the archive to the
/// blobstore and add a final index entry with its blob id.
pub fn finalize_resource(
    ctx: &BuildContext,
    built: &BuiltResource,
    log: &mut Vec<String>,
) -> Result<BuiltResource, BuildError> {
    let fin = ctx.final_index(built.kind);
    if let Some((path, sha1)) = find_in(ctx, &fin, &built.name, &built.fingerprint, log)? {
        return Ok(BuiltResource {
            archive_path: path,
            sha1,
            ..built.clone()
        });
    }
    let desc = format!("{}/{}", built.name, built.fingerprint);
    let word = built.kind.word();
    log.push(format!("Adding {word} '{desc}'..."));
    ctx.cache.add(&built.archive_path, &built.sha1)?;
    let sha_desc = format!("sha1={}", built.sha1);
    log.push(format!("-- Started uploading '{desc}' ({sha_desc})"));
    let blob_id = match ctx.blobstore.create(&built.archive_path) {
        Ok(id) => id,
        Err(source) => {
            log.push(format!("-- Failed uploading '{desc}' ({sha_desc})"));
            log.push(format!("Failed adding {word} '{desc}'"));
            return Err(IndexError::Upload {
                path: built.archive_path.clone(),
                source,
            }
            .into());
        }
    };
    log.push(format!("-- Finished uploading '{desc}' ({sha_desc})"));
    let entry = BuildEntry {
        key: built.fingerprint.clone(),
        version: built.fingerprint.clone(),
        blobstore_id: blob_id,
        sha1: built.sha1.clone(),
    };
    match fin.add(&built.name, entry) {
        Ok(()) | Err(IndexError::Duplicate { .. }) => {}
        Err(e) => {
            log.push(format!("Failed adding {word} '{desc}'"));
            return Err(e.into());
        }
    }
    log.push(format!("Added {word} '{desc}'"));
    Ok(built.clone())
}

/// Copies the resource's files into a staging dir, checks the staged fingerprint, runs
/// `pre_packaging`, and archives the result at `dst`.
fn build_archive(
    ctx: &BuildContext,
    res: &Resource,
    work: &Path,
    dst: &Path,
) -> Result<(), BuildError> {
    let staging = work.join("staging");
    fs::create_dir_all(&staging).map_err(io_err("Creating staging directory", &staging))?;
    for file in &res.files {
        stage_file(
            &file.path,
            &staging.join(&file.relative_path),
            res.follow_symlinks,
        )?;
    }
    let staged: Vec<_> = res.files.iter().map(|f| f.rebased(&staging)).collect();
    let staged_fp = fingerprint(&staged, &res.chunks, res.follow_symlinks, DIGEST_ALGO)?;
    if staged_fp != res.fingerprint {
        return Err(BuildError::StagingMismatch {
            expected: res.fingerprint.clone(),
            actual: staged_fp,
        });
    }
    for prep in &res.prep_files {
        run_prep_script(&prep.path, &staging, &ctx.release_dir)?;
        let staged_script = staging.join(&prep.relative_path);
        fs::remove_file(&staged_script).map_err(io_err("Removing prep script", &staged_script))?;
    }
    let primary = match res.kind {
        ResourceKind::Job => Some("job.MF"),
        ResourceKind::Package => Some("packaging"),
        ResourceKind::License => None,
    };
    write_dir_archive(&staging, primary, dst, !res.no_compression)?;
    Ok(())
}

fn stage_file(src: &Path, dst: &Path, follow_symlinks: bool) -> Result<(), BuildError> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
    }
    let meta = fs::symlink_metadata(src).map_err(io_err("Reading", src))?;
    if meta.file_type().is_symlink() && !follow_symlinks {
        let target = fs::read_link(src).map_err(io_err("Reading link", src))?;
        return make_symlink(&target, dst);
    }
    fs::copy(src, dst).map_err(io_err("Copying into staging directory", src))?;
    // Only the owner-exec bit of the source (lstat) decides: 0755 or 0644.
    set_mode(
        dst,
        if is_owner_executable(&meta) {
            0o755
        } else {
            0o644
        },
    )
}

#[cfg(unix)]
fn make_symlink(target: &Path, dst: &Path) -> Result<(), BuildError> {
    std::os::unix::fs::symlink(target, dst).map_err(io_err("Creating symlink", dst))
}

#[cfg(not(unix))]
fn make_symlink(target: &Path, dst: &Path) -> Result<(), BuildError> {
    fs::copy(target, dst)
        .map(|_| ())
        .map_err(io_err("Copying", dst))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("Chmoding", path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), BuildError> {
    Ok(())
}

fn run_prep_script(script: &Path, staging: &Path, release_dir: &Path) -> Result<(), BuildError> {
    let release_dir =
        std::path::absolute(release_dir).unwrap_or_else(|_| release_dir.to_path_buf());
    let out = Command::new("bash")
        .arg("-x")
        .arg(script)
        .current_dir(staging)
        .env("BUILD_DIR", staging)
        .env("RELEASE_DIR", &release_dir)
        .output()
        .map_err(io_err("Running prep script", script))?;
    if out.status.success() {
        return Ok(());
    }
    Err(BuildError::PrepScript {
        script: script.to_path_buf(),
        status: out.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
