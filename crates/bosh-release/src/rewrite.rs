//! `sha1ify-release` / `sha2ify-release`: rewrite a release tarball so that every archive
//! digest in `release.MF` (jobs, packages, compiled packages, license) uses one algorithm.
//! Fingerprints and versions are left alone; only the `sha1:` fields change.
//!
//! The source tarball is read with all its checks first, so a corrupt archive is never
//! re-signed with a fresh digest.

use crate::archive::{self, ExtractLimits};
use crate::tarball_read::{
    ReadOptions, ReleaseTarball, ReleaseTarballError, read_release_tarball_with,
};
use bosh_types::digest::{Digest, DigestAlgo};
use bosh_types::release::ReleaseManifest;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a tarball could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("reading release tarball {tarball}")]
    Read {
        tarball: PathBuf,
        #[source]
        source: Box<ReleaseTarballError>,
    },
    #[error("hashing '{archive}'")]
    Hash {
        archive: String,
        #[source]
        source: io::Error,
    },
    #[error("writing release tarball {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads `src`, recomputes its archive digests with `algo`, and writes the result to `dest`
/// (replacing it atomically). Returns the new manifest.
pub fn redigest_release(
    src: &Path,
    dest: &Path,
    algo: DigestAlgo,
) -> Result<ReleaseManifest, RewriteError> {
    let opts = ReadOptions {
        limits: ExtractLimits::default(),
        allow_missing_packages: false,
    };
    let release = read_release_tarball_with(src, &opts).map_err(|source| RewriteError::Read {
        tarball: src.to_path_buf(),
        source: Box::new(source),
    })?;
    let manifest = redigest_manifest(&release, algo)?;
    write_release_tarball(&release, &manifest, dest).map_err(|source| RewriteError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    Ok(manifest)
}

/// The release's manifest with every archive digest recomputed with `algo`.
pub fn redigest_manifest(
    release: &ReleaseTarball,
    algo: DigestAlgo,
) -> Result<ReleaseManifest, RewriteError> {
    let digest_of = |archive: String, path: &Path| -> Result<String, RewriteError> {
        let hash_err = |source| RewriteError::Hash {
            archive: archive.clone(),
            source,
        };
        let file = fs::File::open(path).map_err(hash_err)?;
        let d = Digest::compute_reader(algo, io::BufReader::new(file)).map_err(hash_err)?;
        Ok(d.to_string())
    };
    let mut manifest = release.manifest.clone();
    for (job, archive) in manifest.jobs.iter_mut().zip(&release.jobs) {
        job.sha1 = digest_of(format!("jobs/{}.tgz", job.name), &archive.path)?;
    }
    for (pkg, archive) in manifest.packages.iter_mut().zip(&release.packages) {
        if let Some(path) = &archive.path {
            pkg.sha1 = digest_of(format!("packages/{}.tgz", pkg.name), path)?;
        }
    }
    for (pkg, archive) in manifest
        .compiled_packages
        .iter_mut()
        .zip(&release.compiled_packages)
    {
        if let Some(path) = &archive.path {
            pkg.sha1 = digest_of(format!("compiled_packages/{}.tgz", pkg.name), path)?;
        }
    }
    if let (Some(license), Some(archive)) = (manifest.license.as_mut(), &release.license) {
        license.sha1 = digest_of("license.tgz".to_string(), &archive.path)?;
    }
    Ok(manifest)
}

/// Writes a release tarball in the Go CLI's layout (no `./` prefix; `release.MF`, `jobs/`,
/// `packages/`, `compiled_packages/`, `license.tgz`, then root `LICENSE*`/`NOTICE*` files),
/// gzipped unless the manifest says `no_compression`.
fn write_release_tarball(
    release: &ReleaseTarball,
    manifest: &ReleaseManifest,
    dest: &Path,
) -> io::Result<()> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(&parent)?;
    let file = io::BufWriter::new(tmp.as_file().try_clone()?);
    if manifest.no_compression {
        let mut tar = tar::Builder::new(file);
        append_release_entries(&mut tar, release, manifest)?;
        tar.into_inner()?.flush()?;
    } else {
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        append_release_entries(&mut tar, release, manifest)?;
        tar.into_inner()?.finish()?.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// A directory of the tarball and its `(name, archive path)` entries; `None` when a trimmed
/// release left the archive out.
type ArchiveGroup<'a> = (&'a str, Vec<(&'a str, Option<&'a Path>)>);

fn append_release_entries<W: Write>(
    tar: &mut tar::Builder<W>,
    release: &ReleaseTarball,
    manifest: &ReleaseManifest,
) -> io::Result<()> {
    append_bytes(tar, "release.MF", manifest.to_yaml().as_bytes())?;
    let groups: [ArchiveGroup<'_>; 3] = [
        (
            "jobs",
            release
                .jobs
                .iter()
                .map(|j| (j.reference.name.as_str(), Some(j.path.as_path())))
                .collect(),
        ),
        (
            "packages",
            release
                .packages
                .iter()
                .map(|p| (p.reference.name.as_str(), p.path.as_deref()))
                .collect(),
        ),
        (
            "compiled_packages",
            release
                .compiled_packages
                .iter()
                .map(|p| (p.reference.name.as_str(), p.path.as_deref()))
                .collect(),
        ),
    ];
    for (dir, items) in groups {
        if items.is_empty() {
            continue;
        }
        append_dir(tar, dir)?;
        for (name, path) in items {
            if let Some(path) = path {
                append_file(tar, &format!("{dir}/{name}.tgz"), path)?;
            }
        }
    }
    if let Some(license) = &release.license {
        append_file(tar, "license.tgz", &license.path)?;
        // The copies of the license files that the writer extracted into the root.
        let mut extras: Vec<PathBuf> = fs::read_dir(release.dir())?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("LICENSE") || n.starts_with("NOTICE"))
            })
            .collect();
        extras.sort();
        for p in extras {
            if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                append_file(tar, name, &p)?;
            }
        }
    }
    Ok(())
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(data.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, data)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, format!("{name}/"), io::empty())
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, path: &Path) -> io::Result<()> {
    let file = fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut h = header(size, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, name, file)
}

/// Lists the entry paths of a release tarball (for tests and diagnostics).
pub fn entry_paths(tarball: &Path) -> Result<Vec<String>, archive::ArchiveError> {
    Ok(archive::list(tarball, &ExtractLimits::default())?
        .into_iter()
        .map(|e| e.path)
        .collect())
}
