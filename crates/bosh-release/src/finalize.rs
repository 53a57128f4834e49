//! Finalizing a release (formats.md §2 B.8): every job/package/license goes into
//! `.final_builds` (uploaded to the release blobstore unless already there), then the
//! manifest into `releases/`. Used by `create-release --final` and `finalize-release`.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::build::{BuildContext, BuiltResource, finalize_resource};
use crate::create::{
    AssembledRelease, CreateError, add_release, build_context, next_final_version, parallel_map,
};
use crate::index::{ArchiveCache, ReleaseIndex};
use crate::release_dir::{ReleaseDir, ResourceKind, error_chain};
use bosh_types::digest::DigestString;
use bosh_types::release::ReleaseManifest;
use bosh_types::version::Version;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Finalizes an assembled release under its current name and version.
pub fn finalize(
    dir: &ReleaseDir,
    ctx: &BuildContext,
    release: AssembledRelease,
    force: bool,
    parallel: usize,
    out: &mut dyn FnMut(&str),
) -> Result<AssembledRelease, CreateError> {
    dir.must_not_be_dirty(force)?;
    let finals = ReleaseIndex::final_(dir.path());
    if finals.contains(&release.name, &release.version)? {
        return Err(CreateError::ReleaseExists {
            name: release.name,
            version: release.version,
        });
    }
    let all: Vec<&BuiltResource> = release.jobs.iter().chain(release.packages.iter()).collect();
    let results = parallel_map(&all, parallel, |b| {
        let mut log = Vec::new();
        let r = finalize_resource(ctx, b, &mut log);
        (log, r)
    });
    let mut done = Vec::new();
    let mut first_err = None;
    for (log, r) in results {
        for line in &log {
            out(line);
        }
        match r {
            Ok(b) => done.push(b),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e.into());
    }
    let packages = done.split_off(release.jobs.len());
    let license = match &release.license {
        Some(l) => {
            let mut log = Vec::new();
            let r = finalize_resource(ctx, l, &mut log);
            for line in &log {
                out(line);
            }
            Some(r?)
        }
        None => None,
    };
    let release = AssembledRelease {
        jobs: done,
        packages,
        license,
        ..release
    };
    add_release(&finals, &release.manifest(), out)?;
    Ok(release)
}

/// `finalize-release TARBALL [--name] [--version] [--force]`.
pub fn finalize_release_tarball(
    dir: &ReleaseDir,
    cache: ArchiveCache,
    tarball: &Path,
    name: Option<&str>,
    version: Option<&Version>,
    force: bool,
    out: &mut dyn FnMut(&str),
) -> Result<AssembledRelease, CreateError> {
    let work = tempfile::Builder::new()
        .prefix("bosh-release")
        .tempdir()
        .map_err(|e| tar_err(tarball, format!("creating a temporary directory: {e}")))?;
    let mut release = read_release_tarball(tarball, work.path())?;
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        release.name = n.to_string();
    }
    release.version = match version {
        Some(v) => v.to_string(),
        None => next_final_version(dir, &release.name)?.to_string(),
    };
    let ctx = build_context(dir, cache);
    finalize(dir, &ctx, release, force, 5, out)
}

fn tar_err(path: &Path, message: String) -> CreateError {
    CreateError::TarballRead {
        path: path.to_path_buf(),
        message,
    }
}

/// Reads a source release tarball: `release.MF` and the archives it names, each verified
/// against its digest, extracted under `work`. Entry names are never used as paths.
pub fn read_release_tarball(tarball: &Path, work: &Path) -> Result<AssembledRelease, CreateError> {
    let err = |m: String| tar_err(tarball, m);
    let mut magic = [0u8; 2];
    let is_gzip = fs::File::open(tarball)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| err(e.to_string()))?
        == 2
        && magic == [0x1f, 0x8b];
    let file = std::io::BufReader::new(fs::File::open(tarball).map_err(|e| err(e.to_string()))?);
    let reader: Box<dyn Read> = if is_gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let mut manifest_text = None;
    // Archives are stored under numbered names in `work`, keyed by their entry name.
    let mut stored: Vec<(String, PathBuf)> = Vec::new();
    for entry in archive.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| err(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let name = raw.trim_start_matches("./").to_string();
        if name == "release.MF" {
            let mut s = String::new();
            entry
                .read_to_string(&mut s)
                .map_err(|e| err(format!("reading release.MF: {e}")))?;
            manifest_text = Some(s);
        } else if name.starts_with("jobs/")
            || name.starts_with("packages/")
            || name == "license.tgz"
        {
            let dst = work.join(format!("entry-{}", stored.len()));
            let mut f = fs::File::create(&dst).map_err(|e| err(e.to_string()))?;
            std::io::copy(&mut entry, &mut f)
                .map_err(|e| err(format!("extracting '{name}': {e}")))?;
            stored.push((name, dst));
        }
    }
    let text = manifest_text.ok_or_else(|| err("missing release.MF".into()))?;
    let m = ReleaseManifest::parse(&text).map_err(|e| err(error_chain(&e)))?;
    m.validate().map_err(|e| err(error_chain(&e)))?;
    if m.is_compiled() {
        return Err(CreateError::Compiled);
    }
    let take = |entry_name: &str, res_name: &str, fp: &str, sha1: &str, kind, deps: &[String]| {
        let path = stored
            .iter()
            .find(|(n, _)| n == entry_name)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| err(format!("missing '{entry_name}'")))?;
        let digest = DigestString::parse(sha1).map_err(|e| err(format!("'{entry_name}': {e}")))?;
        let f = fs::File::open(&path).map_err(|e| err(e.to_string()))?;
        digest
            .verify_reader(std::io::BufReader::new(f))
            .map_err(|e| err(format!("'{entry_name}': {e}")))?;
        Ok::<_, CreateError>(BuiltResource {
            kind,
            name: res_name.to_string(),
            fingerprint: fp.to_string(),
            dependencies: deps.to_vec(),
            archive_path: path,
            sha1: sha1.to_string(),
        })
    };
    let mut jobs = Vec::new();
    for j in &m.jobs {
        jobs.push(take(
            &format!("jobs/{}.tgz", j.name),
            &j.name,
            &j.fingerprint,
            &j.sha1,
            ResourceKind::Job,
            &j.packages,
        )?);
    }
    let mut packages = Vec::new();
    for p in &m.packages {
        packages.push(take(
            &format!("packages/{}.tgz", p.name),
            &p.name,
            &p.fingerprint,
            &p.sha1,
            ResourceKind::Package,
            &p.dependencies,
        )?);
    }
    let license = match &m.license {
        Some(l) => Some(take(
            "license.tgz",
            "license",
            &l.fingerprint,
            &l.sha1,
            ResourceKind::License,
            &[],
        )?),
        None => None,
    };
    Ok(AssembledRelease {
        name: m.name,
        version: m.version,
        commit_hash: m.commit_hash,
        uncommitted_changes: m.uncommitted_changes,
        no_compression: m.no_compression,
        jobs,
        packages,
        license,
    })
}
