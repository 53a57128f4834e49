//! `create-release` (formats.md §2): build a release from the directory (or assemble one
//! from an existing release manifest), record it as a dev release, optionally finalize it,
//! and optionally write the tarball.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::blobs::{BlobsDir, BlobsError};
use crate::blobstore::Blobstore;
use crate::build::{BuildContext, BuildError, BuiltResource, build_resource};
use crate::index::{ArchiveCache, IndexError, ReleaseIndex};
use crate::release_dir::{ReleaseDir, ReleaseDirError, Resource, ResourceKind, error_chain};
use crate::tarball_write::{ReleaseTarball, TarballWriteError, write_release_tarball};
use bosh_types::release::{JobRef, LicenseRef, PackageRef, ReleaseManifest};
use bosh_types::version::{Version, VersionError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Dir(#[from] ReleaseDirError),
    #[error("Building a release from directory '{dir}':\n{messages}")]
    Read { dir: PathBuf, messages: String },
    #[error(transparent)]
    Blobs(#[from] BlobsError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Tarball(#[from] TarballWriteError),
    #[error("Incrementing last {which} version")]
    Version {
        which: &'static str,
        #[source]
        source: VersionError,
    },
    #[error("Release '{name}' version '{version}' already exists")]
    ReleaseExists { name: String, version: String },
    #[error("Reading release manifest '{path}': {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("Finalizing compiled releases is not supported")]
    Compiled,
    #[error("Reading release tarball '{path}': {message}")]
    TarballRead { path: PathBuf, message: String },
}

/// `create-release` options.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub version: Option<Version>,
    pub timestamp_version: bool,
    pub final_: bool,
    pub force: bool,
    /// Concurrent builds (the reference's `--parallel`, default 5).
    pub parallel: usize,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            name: None,
            version: None,
            timestamp_version: false,
            final_: false,
            force: false,
            parallel: 5,
        }
    }
}

/// A release whose job/package/license archives are all at hand.
#[derive(Debug, Clone)]
pub struct AssembledRelease {
    pub name: String,
    pub version: String,
    pub commit_hash: String,
    pub uncommitted_changes: bool,
    pub no_compression: bool,
    pub jobs: Vec<BuiltResource>,
    pub packages: Vec<BuiltResource>,
    pub license: Option<BuiltResource>,
}

impl AssembledRelease {
    /// `release.MF` / `<name>-<version>.yml` content.
    pub fn manifest(&self) -> ReleaseManifest {
        ReleaseManifest {
            name: self.name.clone(),
            version: self.version.clone(),
            commit_hash: self.commit_hash.clone(),
            uncommitted_changes: self.uncommitted_changes,
            jobs: self
                .jobs
                .iter()
                .map(|j| JobRef {
                    name: j.name.clone(),
                    version: j.fingerprint.clone(),
                    fingerprint: j.fingerprint.clone(),
                    sha1: j.sha1.clone(),
                    packages: j.dependencies.clone(),
                })
                .collect(),
            packages: self
                .packages
                .iter()
                .map(|p| PackageRef {
                    name: p.name.clone(),
                    version: p.fingerprint.clone(),
                    fingerprint: p.fingerprint.clone(),
                    sha1: p.sha1.clone(),
                    dependencies: p.dependencies.clone(),
                })
                .collect(),
            compiled_packages: Vec::new(),
            license: self.license.as_ref().map(|l| LicenseRef {
                version: l.fingerprint.clone(),
                fingerprint: l.fingerprint.clone(),
                sha1: l.sha1.clone(),
            }),
            no_compression: self.no_compression,
        }
    }

    /// `commit_hash` with `+` appended when there were uncommitted changes (summary table).
    pub fn commit_hash_with_mark(&self) -> String {
        if self.uncommitted_changes {
            format!("{}+", self.commit_hash)
        } else {
            self.commit_hash.clone()
        }
    }

    /// Writes the release tarball at `dst`.
    pub fn write_tarball(&self, dst: &Path) -> Result<(), CreateError> {
        let manifest = self.manifest();
        let list = |v: &[BuiltResource]| {
            v.iter()
                .map(|r| (r.name.clone(), r.archive_path.clone()))
                .collect()
        };
        let t = ReleaseTarball {
            manifest: &manifest,
            jobs: list(&self.jobs),
            packages: list(&self.packages),
            compiled_packages: Vec::new(),
            license: self.license.as_ref().map(|l| l.archive_path.clone()),
        };
        write_release_tarball(&t, dst)?;
        Ok(())
    }
}

/// `--tarball` destination with `((name))` and `((version))` expanded.
pub fn expand_tarball_path(template: &str, name: &str, version: &str) -> PathBuf {
    PathBuf::from(
        template
            .replace("((name))", name)
            .replace("((version))", version),
    )
}

/// The context builds use for a release directory.
pub fn build_context(dir: &ReleaseDir, cache: ArchiveCache) -> BuildContext {
    BuildContext {
        release_dir: dir.path().to_path_buf(),
        cache,
        blobstore: Blobstore::for_release_dir(dir),
    }
}

/// Next dev version: after the greater of the last dev and last final versions.
pub fn next_dev_version(
    dir: &ReleaseDir,
    name: &str,
    timestamp: bool,
) -> Result<Version, CreateError> {
    let last_dev = ReleaseIndex::dev(dir.path()).last_version(name)?;
    let last_final = ReleaseIndex::final_(dir.path()).last_version(name)?;
    let last = match (last_dev, last_final) {
        (Some(d), Some(f)) => Some(if f > d { f } else { d }),
        (d, f) => d.or(f),
    };
    let ver = if timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Version::next_dev_timestamped(last.as_ref(), secs)
    } else {
        Version::next_dev(last.as_ref())
    };
    ver.map_err(|source| CreateError::Version {
        which: "dev",
        source,
    })
}

/// Next final version: last final with its release segment incremented, or `1`.
pub fn next_final_version(dir: &ReleaseDir, name: &str) -> Result<Version, CreateError> {
    let last = ReleaseIndex::final_(dir.path()).last_version(name)?;
    Version::next_final(last.as_ref()).map_err(|source| CreateError::Version {
        which: "final",
        source,
    })
}

/// Runs `f` over `items` on up to `parallel` threads; results come back in input order.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = parallel.max(1).min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

/// Built jobs, packages and license.
pub(crate) type BuiltSet = (
    Vec<BuiltResource>,
    Vec<BuiltResource>,
    Option<BuiltResource>,
);

/// Builds every resource (jobs then packages in parallel, then the license), printing the
/// collected progress lines in that order.
pub(crate) fn build_all(
    ctx: &BuildContext,
    jobs: &[Resource],
    packages: &[Resource],
    license: Option<&Resource>,
    parallel: usize,
    out: &mut dyn FnMut(&str),
) -> Result<BuiltSet, CreateError> {
    let all: Vec<&Resource> = jobs.iter().chain(packages.iter()).collect();
    let results = parallel_map(&all, parallel, |res| {
        let mut log = Vec::new();
        let r = build_resource(ctx, res, &mut log);
        (log, r)
    });
    let mut built = Vec::new();
    let mut first_err = None;
    for (log, r) in results {
        for line in &log {
            out(line);
        }
        match r {
            Ok(b) => built.push(b),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e.into());
    }
    let built_packages = built.split_off(jobs.len());
    let built_license = match license {
        Some(l) => {
            let mut log = Vec::new();
            let r = build_resource(ctx, l, &mut log);
            for line in &log {
                out(line);
            }
            Some(r?)
        }
        None => None,
    };
    Ok((built, built_packages, built_license))
}

/// `create-release` without a manifest argument: steps 1–8 of formats.md §2 B.
pub fn create_release(
    dir: &ReleaseDir,
    cache: ArchiveCache,
    opts: &CreateOptions,
    out: &mut dyn FnMut(&str),
) -> Result<AssembledRelease, CreateError> {
    let name = match &opts.name {
        Some(n) if !n.is_empty() => n.clone(),
        _ => dir.default_name()?,
    };
    let version = match &opts.version {
        Some(v) => v.clone(),
        None => next_dev_version(dir, &name, opts.timestamp_version)?,
    };

    let dirty = dir.must_not_be_dirty(opts.force)?;
    let commit_hash = dir.last_commit_sha()?;
    let ctx = build_context(dir, cache);
    BlobsDir::new(dir.path()).sync(&ctx.blobstore)?;

    let contents = dir.read_contents().map_err(|errs| CreateError::Read {
        dir: dir.path().to_path_buf(),
        messages: errs
            .iter()
            .map(|e| format!("- {}", error_chain(e)))
            .collect::<Vec<_>>()
            .join("\n"),
    })?;
    let (jobs, packages, license) = build_all(
        &ctx,
        &contents.jobs,
        &contents.packages,
        contents.license.as_ref(),
        opts.parallel,
        out,
    )?;
    let no_compression = dir.config().map(|c| c.no_compression).unwrap_or(false);
    let mut release = AssembledRelease {
        name,
        version: version.to_string(),
        commit_hash,
        uncommitted_changes: dirty,
        no_compression,
        jobs,
        packages,
        license,
    };
    let dev = ReleaseIndex::dev(dir.path());
    add_release(&dev, &release.manifest(), out)?;

    let mismatched = dir.no_compression_mismatch();
    if !mismatched.is_empty() {
        out(&format!(
            "Warning: The following packages have no_compression: true in their spec files, but \
             final.yml does not have no_compression: true. Consider setting no_compression: true \
             in final.yml to avoid compression on the outer release tarball: {}",
            mismatched.join(", ")
        ));
    }

    if opts.final_ {
        if opts.version.is_none() {
            release.version = next_final_version(dir, &release.name)?.to_string();
        }
        release = crate::finalize::finalize(dir, &ctx, release, opts.force, opts.parallel, out)?;
    }
    Ok(release)
}

/// Adds a release to a release index, printing `Added dev release 'name/version'`.
pub(crate) fn add_release(
    index: &ReleaseIndex,
    manifest: &ReleaseManifest,
    out: &mut dyn FnMut(&str),
) -> Result<(), CreateError> {
    let desc = format!("{}/{}", manifest.name, manifest.version);
    match index.add(manifest) {
        Ok(()) => {
            out(&format!("Added {} release '{desc}'", index.word()));
            Ok(())
        }
        Err(e) => {
            out(&format!("Failed adding {} release '{desc}'", index.word()));
            Err(e.into())
        }
    }
}

/// `create-release PATH`: assemble a release from an existing release manifest whose
/// archives are in the dev or final index. Nothing is built or indexed.
pub fn release_from_manifest(
    dir: &ReleaseDir,
    cache: ArchiveCache,
    manifest_path: &Path,
    out: &mut dyn FnMut(&str),
) -> Result<AssembledRelease, CreateError> {
    let manifest_err = |message: String| CreateError::Manifest {
        path: manifest_path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(manifest_path).map_err(|e| manifest_err(e.to_string()))?;
    let m = ReleaseManifest::parse(&text).map_err(|e| manifest_err(error_chain(&e)))?;
    let existing = |kind, name: &str, fp: &str, deps: &[String]| Resource {
        kind,
        name: name.to_string(),
        fingerprint: fp.to_string(),
        files: Vec::new(),
        prep_files: Vec::new(),
        follow_symlinks: false,
        chunks: Vec::new(),
        no_compression: false,
        dependencies: deps.to_vec(),
        expect_to_exist: true,
    };
    let jobs: Vec<Resource> = m
        .jobs
        .iter()
        .map(|j| existing(ResourceKind::Job, &j.name, &j.fingerprint, &j.packages))
        .collect();
    let packages: Vec<Resource> = m
        .packages
        .iter()
        .map(|p| {
            existing(
                ResourceKind::Package,
                &p.name,
                &p.fingerprint,
                &p.dependencies,
            )
        })
        .collect();
    let license = m
        .license
        .as_ref()
        .map(|l| existing(ResourceKind::License, "license", &l.fingerprint, &[]));
    let ctx = build_context(dir, cache);
    let (jobs, packages, license) = build_all(&ctx, &jobs, &packages, license.as_ref(), 5, out)?;
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
