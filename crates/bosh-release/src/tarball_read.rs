//! Opening release tarballs made by us or by the reference CLI (formats.md §5).
//!
//! The outer tarball is extracted with [`crate::archive`]'s checks into a temporary
//! directory; then every archive that `release.MF` lists is verified against its digest
//! string (strongest algorithm), each job archive's `job.MF` is checked the way the director
//! checks it on upload (§5.6), and the package dependency graph is checked for unknown
//! names and cycles. Package archives are opaque here: they may legitimately hold symlinks
//! and are unpacked only on compilation VMs.
//!
//! A *trimmed* tarball (the CLI leaves out packages the director already has) lists
//! packages in `release.MF` without their archives; with [`ReadOptions::allow_missing_packages`]
//! those come back with `path: None`.

use crate::archive::{self, ArchiveError, EntryKind, ExtractLimits};
use bosh_types::digest::{DigestError, DigestString};
use bosh_types::release::{
    CompiledPackageRef, JobRef, JobSpec, LicenseRef, PackageRef, ReleaseManifest, SpecError,
};
use bosh_yaml::Value;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Largest `release.MF` / `job.MF` we read into memory.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// How to read a release tarball.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub limits: ExtractLimits,
    /// Accept packages and compiled packages listed in `release.MF` whose archives are not
    /// in the tarball (a trimmed upload); their `path` is `None`.
    pub allow_missing_packages: bool,
}

/// Why a release tarball was refused. Each variant names the tarball entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseTarballError {
    #[error("extracting release tarball {tarball}")]
    Extract {
        tarball: PathBuf,
        #[source]
        source: ArchiveError,
    },
    #[error("release tarball {tarball} has no release.MF")]
    MissingManifest { tarball: PathBuf },
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("release.MF is not valid UTF-8")]
    ManifestEncoding,
    #[error("release.MF is invalid")]
    Manifest {
        #[source]
        source: SpecError,
    },
    #[error("release.MF: missing release {field}")]
    MissingField { field: &'static str },
    #[error("release.MF lists '{archive}' but the tarball does not contain it")]
    MissingArchive { archive: String },
    #[error("'{archive}' has an invalid digest string '{digest}' in release.MF")]
    BadDigest {
        archive: String,
        digest: String,
        #[source]
        source: DigestError,
    },
    #[error("'{archive}' does not match its digest in release.MF")]
    DigestMismatch {
        archive: String,
        #[source]
        source: DigestError,
    },
    #[error("reading job archive '{archive}'")]
    JobArchive {
        archive: String,
        #[source]
        source: ArchiveError,
    },
    #[error("job archive '{archive}' has no job.MF")]
    MissingJobManifest { archive: String },
    #[error("job.MF in '{archive}' is invalid")]
    JobSpec {
        archive: String,
        #[source]
        source: SpecError,
    },
    #[error("job.MF in '{archive}' names job '{actual}', but release.MF names it '{expected}'")]
    JobNameMismatch {
        archive: String,
        expected: String,
        actual: String,
    },
    #[error("job archive '{archive}' is missing template 'templates/{template}'")]
    MissingTemplate { archive: String, template: String },
    #[error("job archive '{archive}' has no monit file")]
    MissingMonit { archive: String },
    #[error("job '{job}' needs package '{package}', which is not in release.MF")]
    UnknownJobPackage { job: String, package: String },
}

/// A job of the release: its `release.MF` entry, verified archive and parsed spec.
#[derive(Debug, Clone)]
pub struct JobArchive {
    pub reference: JobRef,
    pub spec: JobSpec,
    pub path: PathBuf,
}

/// A source package; `path` is `None` when a trimmed tarball left the archive out.
#[derive(Debug, Clone)]
pub struct PackageArchive {
    pub reference: PackageRef,
    pub path: Option<PathBuf>,
}

/// A compiled package; `path` is `None` when a trimmed tarball left the archive out.
#[derive(Debug, Clone)]
pub struct CompiledPackageArchive {
    pub reference: CompiledPackageRef,
    pub path: Option<PathBuf>,
}

/// The release license archive (`license.tgz`).
#[derive(Debug, Clone)]
pub struct LicenseArchive {
    pub reference: LicenseRef,
    pub path: PathBuf,
}

/// A verified release tarball, extracted into a temporary directory that lives as long as
/// this value.
#[derive(Debug)]
pub struct ReleaseTarball {
    pub manifest: ReleaseManifest,
    /// `release.MF` exactly as it was in the tarball.
    pub manifest_text: String,
    pub jobs: Vec<JobArchive>,
    pub packages: Vec<PackageArchive>,
    pub compiled_packages: Vec<CompiledPackageArchive>,
    pub license: Option<LicenseArchive>,
    dir: tempfile::TempDir,
}

impl ReleaseTarball {
    /// Where the tarball was extracted.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<name>/<version>`.
    pub fn slug(&self) -> String {
        format!("{}/{}", self.manifest.name, self.manifest.version)
    }
}

/// Opens, extracts and verifies a release tarball with default options.
pub fn read_release_tarball(tarball: &Path) -> Result<ReleaseTarball, ReleaseTarballError> {
    read_release_tarball_with(tarball, &ReadOptions::default())
}

/// Opens, extracts and verifies a release tarball.
pub fn read_release_tarball_with(
    tarball: &Path,
    opts: &ReadOptions,
) -> Result<ReleaseTarball, ReleaseTarballError> {
    let dir = tempfile::Builder::new()
        .prefix("bosh-release-")
        .tempdir()
        .map_err(|source| ReleaseTarballError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let entries = archive::extract(tarball, dir.path(), &opts.limits).map_err(|source| {
        ReleaseTarballError::Extract {
            tarball: tarball.to_path_buf(),
            source,
        }
    })?;
    let files: HashSet<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.path.clone())
        .collect();
    if !files.contains("release.MF") {
        return Err(ReleaseTarballError::MissingManifest {
            tarball: tarball.to_path_buf(),
        });
    }
    let mf_path = dir.path().join("release.MF");
    let manifest_text = read_small(&mf_path)?;
    let manifest = parse_release_manifest(&manifest_text)?;

    // Every digest is verified before any archive content is trusted.
    let mut job_paths = Vec::new();
    for job in &manifest.jobs {
        let archive = format!("jobs/{}.tgz", job.name);
        let path = require(&files, dir.path(), &archive)?;
        verify_digest(&archive, &job.sha1, &path)?;
        job_paths.push((archive, path));
    }

    let mut packages = Vec::new();
    for pkg in &manifest.packages {
        let archive = format!("packages/{}.tgz", pkg.name);
        let path = optional_package(&files, dir.path(), &archive, opts)?;
        if let Some(p) = &path {
            verify_digest(&archive, &pkg.sha1, p)?;
        }
        packages.push(PackageArchive {
            reference: pkg.clone(),
            path,
        });
    }

    let mut compiled_packages = Vec::new();
    for pkg in &manifest.compiled_packages {
        let archive = format!("compiled_packages/{}.tgz", pkg.name);
        let path = optional_package(&files, dir.path(), &archive, opts)?;
        if let Some(p) = &path {
            verify_digest(&archive, &pkg.sha1, p)?;
        }
        compiled_packages.push(CompiledPackageArchive {
            reference: pkg.clone(),
            path,
        });
    }

    // Old CLIs listed a license but shipped only the extracted LICENSE file; like the
    // reference CLI, a missing license.tgz means no license archive.
    let license = match &manifest.license {
        Some(l) if files.contains("license.tgz") => {
            let archive = "license.tgz";
            let path = dir.path().join(archive);
            verify_digest(archive, &l.sha1, &path)?;
            Some(LicenseArchive {
                reference: l.clone(),
                path,
            })
        }
        _ => None,
    };

    let mut jobs = Vec::new();
    for (job, (archive, path)) in manifest.jobs.iter().zip(job_paths) {
        let spec = check_job_archive(&archive, &job.name, &path, &opts.limits)?;
        jobs.push(JobArchive {
            reference: job.clone(),
            spec,
            path,
        });
    }

    // Jobs may only need packages the release provides (source or compiled).
    let known: HashSet<&str> = manifest
        .packages
        .iter()
        .map(|p| p.name.as_str())
        .chain(manifest.compiled_packages.iter().map(|p| p.name.as_str()))
        .collect();
    for job in &jobs {
        let needed = job
            .spec
            .packages
            .iter()
            .chain(job.reference.packages.iter());
        for package in needed {
            if !known.contains(package.as_str()) {
                return Err(ReleaseTarballError::UnknownJobPackage {
                    job: job.reference.name.clone(),
                    package: package.clone(),
                });
            }
        }
    }

    Ok(ReleaseTarball {
        manifest,
        manifest_text,
        jobs,
        packages,
        compiled_packages,
        license,
        dir,
    })
}

/// Parses and validates `release.MF`: name and version first (old manifests that lack them
/// are otherwise malformed in other ways too), then the typed decode and §5.6 checks.
pub fn parse_release_manifest(text: &str) -> Result<ReleaseManifest, ReleaseTarballError> {
    let (value, marks) =
        bosh_yaml::parse_marked(text).map_err(|source| ReleaseTarballError::Manifest {
            source: SpecError::Yaml {
                what: "release.MF",
                source,
            },
        })?;
    for field in ["name", "version"] {
        let present = match value.get(field) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        };
        if !present {
            return Err(ReleaseTarballError::MissingField { field });
        }
    }
    let manifest = ReleaseManifest::from_yaml_marked(&value, &marks)
        .map_err(|source| ReleaseTarballError::Manifest { source })?;
    manifest
        .validate()
        .map_err(|source| ReleaseTarballError::Manifest { source })?;
    Ok(manifest)
}

fn read_small(path: &Path) -> Result<String, ReleaseTarballError> {
    let meta = fs::metadata(path).map_err(|source| ReleaseTarballError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ReleaseTarballError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("larger than {MAX_MANIFEST_BYTES} bytes")),
        });
    }
    let bytes = fs::read(path).map_err(|source| ReleaseTarballError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ReleaseTarballError::ManifestEncoding)
}

fn require(
    files: &HashSet<String>,
    dir: &Path,
    archive: &str,
) -> Result<PathBuf, ReleaseTarballError> {
    if files.contains(archive) {
        Ok(dir.join(archive))
    } else {
        Err(ReleaseTarballError::MissingArchive {
            archive: archive.to_string(),
        })
    }
}

fn optional_package(
    files: &HashSet<String>,
    dir: &Path,
    archive: &str,
    opts: &ReadOptions,
) -> Result<Option<PathBuf>, ReleaseTarballError> {
    match require(files, dir, archive) {
        Ok(p) => Ok(Some(p)),
        Err(_) if opts.allow_missing_packages => Ok(None),
        Err(e) => Err(e),
    }
}

/// Verifies a file against a `release.MF` digest string with its strongest algorithm.
pub fn verify_digest(archive: &str, digest: &str, path: &Path) -> Result<(), ReleaseTarballError> {
    let expected =
        DigestString::parse(digest).map_err(|source| ReleaseTarballError::BadDigest {
            archive: archive.to_string(),
            digest: digest.to_string(),
            source,
        })?;
    let file = fs::File::open(path).map_err(|source| ReleaseTarballError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    expected
        .verify_reader(std::io::BufReader::new(file))
        .map_err(|source| ReleaseTarballError::DigestMismatch {
            archive: archive.to_string(),
            source,
        })
}

/// Reads a job archive without extracting it: hostile entries are refused, `job.MF` must
/// exist and name the job, every template must exist, and a monit file must be present.
pub fn check_job_archive(
    archive: &str,
    expected_name: &str,
    path: &Path,
    limits: &ExtractLimits,
) -> Result<JobSpec, ReleaseTarballError> {
    let job_err = |source| ReleaseTarballError::JobArchive {
        archive: archive.to_string(),
        source,
    };
    let file = archive::open(path).map_err(job_err)?;
    let mut files = HashSet::new();
    let mut job_mf: Option<Vec<u8>> = None;
    archive::scan(file, limits, |info, content| {
        if info.kind != EntryKind::File {
            return Ok(());
        }
        files.insert(info.path.clone());
        if info.path == "job.MF" {
            if info.size > MAX_MANIFEST_BYTES {
                return Err(ArchiveError::TooLarge {
                    entry: info.path.clone(),
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            let mut buf = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(content, MAX_MANIFEST_BYTES),
                &mut buf,
            )
            .map_err(|source| ArchiveError::EntryRead {
                entry: info.path.clone(),
                source,
            })?;
            job_mf = Some(buf);
        }
        Ok(())
    })
    .map_err(job_err)?;
    let Some(job_mf) = job_mf else {
        return Err(ReleaseTarballError::MissingJobManifest {
            archive: archive.to_string(),
        });
    };
    let text = String::from_utf8_lossy(&job_mf);
    let spec = JobSpec::parse(&text).map_err(|source| ReleaseTarballError::JobSpec {
        archive: archive.to_string(),
        source,
    })?;
    if spec.name != expected_name {
        return Err(ReleaseTarballError::JobNameMismatch {
            archive: archive.to_string(),
            expected: expected_name.to_string(),
            actual: spec.name.clone(),
        });
    }
    for template in spec.templates.keys() {
        if !files.contains(&format!("templates/{template}")) {
            return Err(ReleaseTarballError::MissingTemplate {
                archive: archive.to_string(),
                template: template.clone(),
            });
        }
    }
    let has_monit = files.contains("monit")
        || files
            .iter()
            .any(|f| !f.contains('/') && f.ends_with(".monit"));
    if !has_monit {
        return Err(ReleaseTarballError::MissingMonit {
            archive: archive.to_string(),
        });
    }
    Ok(spec)
}
