//! A release directory (formats.md §1): its config, the generators behind `init-release`,
//! `generate-job`, `generate-package` and `reset-release`, git state, and reading its jobs,
//! packages and license into fingerprinted [`Resource`]s.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::fingerprint::{FingerprintError, FingerprintFile, fingerprint};
use bosh_types::digest::DigestAlgo;
use bosh_types::release::{JobSpec, PackageSpec};
use bosh_yaml::{Mapping, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The algorithm the current CLI uses for file digests, fingerprints and archive digests.
pub const DIGEST_ALGO: DigestAlgo = DigestAlgo::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseDirError {
    #[error("{action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Unmarshalling config '{path}': {message}")]
    Config { path: PathBuf, message: String },
    #[error("Expected non-empty 'name' in config '{0}'")]
    NoName(PathBuf),
    #[error("Expected 'name' or 'final_name' but not both in config '{0}'")]
    BothNames(PathBuf),
    #[error("Job '{name}' at '{path}' already exists")]
    JobExists { name: String, path: PathBuf },
    #[error("Package '{name}' at '{path}' already exists")]
    PackageExists { name: String, path: PathBuf },
    #[error("Invalid name '{0}': expected letters, digits, '-', '_', '+' or '.'")]
    InvalidName(String),
    #[error("Reading job from '{path}': {message}")]
    Job { path: PathBuf, message: String },
    #[error("Reading package from '{path}': {message}")]
    Package { path: PathBuf, message: String },
    #[error("Expected to find package '{package}' since it's a dependency of {kind} '{of}'")]
    MissingDependency {
        package: String,
        kind: &'static str,
        of: String,
    },
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    #[error(transparent)]
    Blobs(#[from] crate::blobs::BlobsError),
    #[error("Running git in '{dir}'")]
    GitSpawn {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Checking last commit SHA: {0}")]
    GitCommit(String),
    #[error("Checking status: {0}")]
    GitStatus(String),
    #[error("Git repository has local modifications:\n\n{0}")]
    Dirty(String),
    #[error("Initing git repo: {0}")]
    GitInit(String),
}

fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ReleaseDirError + use<> {
    let path = path.to_path_buf();
    move |source| ReleaseDirError::Io {
        action,
        path,
        source,
    }
}

/// `config/final.yml` merged with `config/private.yml`.
#[derive(Debug, Clone, Default)]
pub struct ReleaseConfig {
    pub name: Option<String>,
    pub final_name: Option<String>,
    /// `blobstore.provider`, empty when not configured.
    pub provider: String,
    /// `blobstore.options`, private options merged over public ones.
    pub options: Mapping,
    pub no_compression: bool,
}

/// What kind of build a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Job,
    Package,
    License,
}

impl ResourceKind {
    /// The word the reference CLI uses in index messages and paths.
    pub fn word(self) -> &'static str {
        match self {
            ResourceKind::Job => "job",
            ResourceKind::Package => "package",
            ResourceKind::License => "license",
        }
    }
}

/// A job, package or license read from the directory, with its fingerprint.
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: ResourceKind,
    pub name: String,
    pub fingerprint: String,
    /// Files that go into the archive (and into the fingerprint).
    pub files: Vec<FingerprintFile>,
    /// `pre_packaging`, run in the staging directory and then removed.
    pub prep_files: Vec<FingerprintFile>,
    pub follow_symlinks: bool,
    pub chunks: Vec<String>,
    /// Package `no_compression: true`: archive written as plain tar.
    pub no_compression: bool,
    /// Job `packages` or package `dependencies`.
    pub dependencies: Vec<String>,
    /// Vendored (`spec.lock`): the archive must already be in an index.
    pub expect_to_exist: bool,
}

/// The jobs, packages (both sorted by name) and license of a release directory.
#[derive(Debug, Clone, Default)]
pub struct DirContents {
    pub jobs: Vec<Resource>,
    pub packages: Vec<Resource>,
    pub license: Option<Resource>,
}

#[derive(Debug, Clone)]
pub struct ReleaseDir {
    path: PathBuf,
}

impl ReleaseDir {
    pub fn new(path: impl Into<PathBuf>) -> ReleaseDir {
        ReleaseDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn final_yml(&self) -> PathBuf {
        self.path.join("config").join("final.yml")
    }

    pub fn private_yml(&self) -> PathBuf {
        self.path.join("config").join("private.yml")
    }

    /// Reads `config/final.yml` and `config/private.yml` (each optional).
    pub fn config(&self) -> Result<ReleaseConfig, ReleaseDirError> {
        let public = read_yaml_map(&self.final_yml())?;
        let private = read_yaml_map(&self.private_yml())?;
        let text = |m: &Mapping, k: &str| {
            m.get(&Value::from(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let blobstore = |m: &Mapping| {
            m.get(&Value::from("blobstore"))
                .and_then(Value::as_map)
                .cloned()
        };
        let mut cfg = ReleaseConfig {
            name: text(&public, "name"),
            final_name: text(&public, "final_name"),
            no_compression: public
                .get(&Value::from("no_compression"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            ..ReleaseConfig::default()
        };
        if let Some(bs) = blobstore(&public) {
            cfg.provider = text(&bs, "provider").unwrap_or_default();
            if let Some(opts) = bs.get(&Value::from("options")).and_then(Value::as_map) {
                cfg.options = opts.clone();
            }
        }
        if let Some(opts) = blobstore(&private).and_then(|bs| {
            bs.get(&Value::from("options"))
                .and_then(Value::as_map)
                .cloned()
        }) {
            for (k, v) in opts {
                cfg.options.insert(k, v);
            }
        }
        Ok(cfg)
    }

    /// The release name from config (`name`, or legacy `final_name`).
    pub fn default_name(&self) -> Result<String, ReleaseDirError> {
        let cfg = self.config()?;
        match (cfg.name, cfg.final_name) {
            (Some(_), Some(_)) => Err(ReleaseDirError::BothNames(self.final_yml())),
            (Some(n), None) | (None, Some(n)) => Ok(n),
            (None, None) => Err(ReleaseDirError::NoName(self.final_yml())),
        }
    }

    /// `init-release`: dirs, `config/final.yml` name, `config/blobs.yml`, optionally git.
    pub fn init(&self, git: bool) -> Result<(), ReleaseDirError> {
        for name in ["jobs", "packages", "src"] {
            let p = self.path.join(name);
            fs::create_dir_all(&p).map_err(io_err("Creating", &p))?;
        }
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        let base = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = base.strip_suffix("-release").unwrap_or(&base).to_string();
        self.save_name(&name)?;
        crate::blobs::BlobsDir::new(&self.path).init()?;
        if git {
            self.git_init()?;
        }
        Ok(())
    }

    /// Writes `name` into `config/final.yml`, keeping its other settings.
    fn save_name(&self, name: &str) -> Result<(), ReleaseDirError> {
        let path = self.final_yml();
        let old = read_yaml_map(&path)?;
        let mut out = Mapping::new();
        out.insert("name".into(), name.into());
        for key in ["blobstore", "no_compression"] {
            if let Some(v) = old.get(&Value::from(key)) {
                out.insert(key.into(), v.clone());
            }
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
        }
        fs::write(&path, bosh_yaml::to_string(&Value::Map(out)))
            .map_err(io_err("Writing config", &path))
    }

    /// `generate-job NAME`.
    pub fn generate_job(&self, name: &str) -> Result<(), ReleaseDirError> {
        check_name(name)?;
        let dir = self.path.join("jobs").join(name);
        if dir.exists() {
            return Err(ReleaseDirError::JobExists {
                name: name.into(),
                path: dir,
            });
        }
        let templates = dir.join("templates");
        fs::create_dir_all(&templates).map_err(io_err("Creating", &templates))?;
        let spec =
            format!("---\nname: {name}\n\ntemplates: {{}}\n\npackages: []\n\nproperties: {{}}\n");
        fs::write(dir.join("spec"), spec).map_err(io_err("Creating", &dir.join("spec")))?;
        fs::write(dir.join("monit"), "").map_err(io_err("Creating", &dir.join("monit")))
    }

    /// `generate-package NAME`.
    pub fn generate_package(&self, name: &str) -> Result<(), ReleaseDirError> {
        check_name(name)?;
        let dir = self.path.join("packages").join(name);
        if dir.exists() {
            return Err(ReleaseDirError::PackageExists {
                name: name.into(),
                path: dir,
            });
        }
        fs::create_dir_all(&dir).map_err(io_err("Creating", &dir))?;
        let spec = format!("---\nname: {name}\n\ndependencies: []\n\nfiles: []\n");
        fs::write(dir.join("spec"), spec).map_err(io_err("Creating", &dir.join("spec")))?;
        fs::write(dir.join("packaging"), "set -e\n")
            .map_err(io_err("Creating", &dir.join("packaging")))
    }

    /// `reset-release`: removes dev builds, dev releases and local blobs.
    pub fn reset(&self) -> Result<(), ReleaseDirError> {
        for name in [".dev_builds", "dev_releases", ".blobs", "blobs"] {
            let p = self.path.join(name);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("Removing", &p)(e)),
            }
        }
        Ok(())
    }

    fn git(&self, args: &[&str]) -> Result<std::process::Output, ReleaseDirError> {
        Command::new("git")
            .args(args)
            .current_dir(&self.path)
            .output()
            .map_err(|source| ReleaseDirError::GitSpawn {
                dir: self.path.clone(),
                source,
            })
    }

    fn git_init(&self) -> Result<(), ReleaseDirError> {
        let out = self.git(&["init", "."])?;
        if !out.status.success() {
            return Err(ReleaseDirError::GitInit(
                String::from_utf8_lossy(&out.stderr).into(),
            ));
        }
        let path = self.path.join(".gitignore");
        fs::write(&path, GITIGNORE).map_err(io_err("Creating .gitignore file", &path))
    }

    /// No `.git` here and git does not see a repository either (or git is not installed).
    fn is_not_git_repo(&self) -> bool {
        if self.path.join(".git").exists() {
            return false;
        }
        !matches!(self.git(&["rev-parse", "--git-dir"]), Ok(o) if o.status.success())
    }

    /// `commit_hash` of a new release: short HEAD, `non-git` or `empty`.
    pub fn last_commit_sha(&self) -> Result<String, ReleaseDirError> {
        let out = match self.git(&["rev-parse", "--short", "HEAD"]) {
            Ok(out) => out,
            Err(_) if self.is_not_git_repo() => return Ok("non-git".into()),
            Err(e) => return Err(e),
        };
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if self.is_not_git_repo() {
            Ok("non-git".into())
        } else if stderr.contains("Needed a single revision") || stderr.contains("unknown revision")
        {
            Ok("empty".into())
        } else {
            Err(ReleaseDirError::GitCommit(stderr.trim().into()))
        }
    }

    /// Whether the working copy has changes; an error when it does and `force` is false.
    pub fn must_not_be_dirty(&self, force: bool) -> Result<bool, ReleaseDirError> {
        let out = match self.git(&["status", "--porcelain=1"]) {
            Ok(out) => out,
            Err(_) if self.is_not_git_repo() => return Ok(false),
            Err(e) => return Err(e),
        };
        if !out.status.success() {
            if self.is_not_git_repo() {
                return Ok(false);
            }
            return Err(ReleaseDirError::GitStatus(
                String::from_utf8_lossy(&out.stderr).trim().into(),
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if stdout.is_empty() {
            Ok(false)
        } else if force {
            Ok(true)
        } else {
            Err(ReleaseDirError::Dirty(stdout))
        }
    }

    /// Names of packages whose spec says `no_compression: true` while final.yml does not.
    pub fn no_compression_mismatch(&self) -> Vec<String> {
        if self.config().map(|c| c.no_compression).unwrap_or(false) {
            return Vec::new();
        }
        let mut names = Vec::new();
        for dir in sorted_subdirs(&self.path.join("packages")) {
            if let Ok(text) = fs::read_to_string(dir.join("spec"))
                && let Ok(spec) = PackageSpec::parse(&text)
                && spec.no_compression
            {
                names.push(spec.name);
            }
        }
        names
    }

    /// Reads every package, job and the license, fingerprinting each. Errors of all
    /// resources are collected so one run reports them all.
    pub fn read_contents(&self) -> Result<DirContents, Vec<ReleaseDirError>> {
        let mut errs = Vec::new();
        let mut packages = Vec::new();
        for dir in sorted_subdirs(&self.path.join("packages")) {
            match self.read_package(&dir) {
                Ok(p) => packages.push(p),
                Err(e) => errs.push(e),
            }
        }
        let pkg_names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        for p in &packages {
            for d in &p.dependencies {
                if !pkg_names.contains(&d.as_str()) {
                    errs.push(ReleaseDirError::MissingDependency {
                        package: d.clone(),
                        kind: "package",
                        of: p.name.clone(),
                    });
                }
            }
        }
        let mut jobs = Vec::new();
        for dir in sorted_subdirs(&self.path.join("jobs")) {
            match self.read_job(&dir) {
                Ok(j) => {
                    for d in &j.dependencies {
                        if !pkg_names.contains(&d.as_str()) {
                            errs.push(ReleaseDirError::MissingDependency {
                                package: d.clone(),
                                kind: "job",
                                of: j.name.clone(),
                            });
                        }
                    }
                    jobs.push(j);
                }
                Err(e) => errs.push(e),
            }
        }
        let license = match self.read_license() {
            Ok(l) => l,
            Err(e) => {
                errs.push(e);
                None
            }
        };
        if !errs.is_empty() {
            return Err(errs);
        }
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(DirContents {
            jobs,
            packages,
            license,
        })
    }

    fn read_job(&self, dir: &Path) -> Result<Resource, ReleaseDirError> {
        let job_err = |message: String| ReleaseDirError::Job {
            path: dir.to_path_buf(),
            message,
        };
        let spec_path = dir.join("spec");
        let text = fs::read_to_string(&spec_path)
            .map_err(|e| job_err(format!("Reading job spec '{}': {e}", spec_path.display())))?;
        let spec = JobSpec::parse(&text).map_err(|e| job_err(error_chain(&e)))?;
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if dir_name != spec.name {
            return Err(job_err(format!(
                "Job directory '{dir_name}' does not match job name '{}' in spec",
                spec.name
            )));
        }
        let mut files = vec![FingerprintFile::new(&spec_path, "job.MF")];
        for extra in ["monit", "properties_schema.json"] {
            let p = dir.join(extra);
            if p.exists() {
                files.push(FingerprintFile::new(p, extra));
            }
        }
        for src in spec.templates.keys() {
            let rel = format!("templates/{src}");
            let p = dir.join(&rel);
            if !p.exists() {
                return Err(job_err(format!(
                    "Expected template '{}' to exist",
                    p.display()
                )));
            }
            files.push(FingerprintFile::new(p, rel));
        }
        let fp = fingerprint(&files, &[], true, DIGEST_ALGO)?;
        Ok(Resource {
            kind: ResourceKind::Job,
            name: spec.name,
            fingerprint: fp,
            files,
            prep_files: Vec::new(),
            follow_symlinks: true,
            chunks: Vec::new(),
            no_compression: false,
            dependencies: spec.packages,
            expect_to_exist: false,
        })
    }

    fn read_package(&self, dir: &Path) -> Result<Resource, ReleaseDirError> {
        let pkg_err = |message: String| ReleaseDirError::Package {
            path: dir.to_path_buf(),
            message,
        };
        let lock_path = dir.join("spec.lock");
        if lock_path.exists() {
            return read_spec_lock(&lock_path).map_err(pkg_err);
        }
        let spec_path = dir.join("spec");
        let text = fs::read_to_string(&spec_path).map_err(|e| {
            pkg_err(format!(
                "Reading package spec '{}': {e}",
                spec_path.display()
            ))
        })?;
        let spec = PackageSpec::parse(&text).map_err(|e| pkg_err(error_chain(&e)))?;

        let packaging = dir.join("packaging");
        if !packaging.is_file() {
            return Err(pkg_err(format!(
                "Expected to find '{}' for package '{}'",
                packaging.display(),
                spec.name
            )));
        }
        let mut files = vec![FingerprintFile::new(&packaging, "packaging").exclude_mode()];
        let mut prep_files = Vec::new();
        let pre = dir.join("pre_packaging");
        if pre.is_file() {
            let f = FingerprintFile::new(&pre, "pre_packaging").exclude_mode();
            files.push(f.clone());
            prep_files.push(f);
        }

        let src = self.path.join("src");
        let blobs = self.path.join("blobs");
        let src_files = list_files(&src);
        let blob_files = list_files(&blobs);
        let mut matched: indexmap::IndexMap<String, PathBuf> = indexmap::IndexMap::new();
        for pattern in &spec.files {
            let glob = compile_glob(pattern).map_err(pkg_err)?;
            let mut found = false;
            for (root, list) in [(&src, &src_files), (&blobs, &blob_files)] {
                for rel in list.iter().filter(|rel| glob.is_match(rel.as_str())) {
                    found = true;
                    matched.entry(rel.clone()).or_insert_with(|| root.join(rel));
                }
            }
            if !found {
                return Err(pkg_err(format!("Missing files for pattern '{pattern}'")));
            }
        }
        for pattern in &spec.excluded_files {
            let glob = compile_glob(pattern).map_err(pkg_err)?;
            matched.retain(|rel, _| !glob.is_match(rel.as_str()));
        }
        for special in ["packaging", "pre_packaging"] {
            if matched.contains_key(special) {
                return Err(pkg_err(format!(
                    "Expected special '{special}' file to not be included via 'files' key for \
                     package '{}'",
                    spec.name
                )));
            }
        }
        files.extend(
            matched
                .into_iter()
                .map(|(rel, path)| FingerprintFile::new(path, rel)),
        );
        let fp = fingerprint(&files, &spec.dependencies, false, DIGEST_ALGO)?;
        Ok(Resource {
            kind: ResourceKind::Package,
            name: spec.name,
            fingerprint: fp,
            files,
            prep_files,
            follow_symlinks: false,
            chunks: spec.dependencies.clone(),
            no_compression: spec.no_compression,
            dependencies: spec.dependencies,
            expect_to_exist: false,
        })
    }

    fn read_license(&self) -> Result<Option<Resource>, ReleaseDirError> {
        let entries = fs::read_dir(&self.path).map_err(io_err("Reading", &self.path))?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("LICENSE") || n.starts_with("NOTICE"))
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        // LICENSE* files first, then NOTICE*, each group sorted (as two globs would list them).
        names.sort_by_key(|n| (!n.starts_with("LICENSE"), n.clone()));
        let files: Vec<FingerprintFile> = names
            .iter()
            .map(|n| {
                FingerprintFile::new(self.path.join(n), n.clone())
                    .use_basename()
                    .exclude_mode()
            })
            .collect();
        let fp = fingerprint(&files, &[], false, DIGEST_ALGO)?;
        Ok(Some(Resource {
            kind: ResourceKind::License,
            name: "license".into(),
            fingerprint: fp,
            files,
            prep_files: Vec::new(),
            follow_symlinks: false,
            chunks: Vec::new(),
            no_compression: false,
            dependencies: Vec::new(),
            expect_to_exist: false,
        }))
    }
}

const GITIGNORE: &str = "config/private.yml
blobs
dev_releases
releases/*.tgz
releases/**/*.tgz
.dev_builds
.final_builds/jobs/**/*.tgz
.final_builds/packages/**/*.tgz
.DS_Store
.idea
*.swp
*~
*#
#*
";

fn check_name(name: &str) -> Result<(), ReleaseDirError> {
    if bosh_types::release::is_valid_identifier(name) {
        Ok(())
    } else {
        Err(ReleaseDirError::InvalidName(name.into()))
    }
}

/// An error and its sources on one line, for messages that embed a library error.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn read_yaml_map(path: &Path) -> Result<Mapping, ReleaseDirError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Mapping::new()),
        Err(e) => return Err(io_err("Reading config", path)(e)),
    };
    let cfg_err = |message: String| ReleaseDirError::Config {
        path: path.to_path_buf(),
        message,
    };
    match bosh_yaml::parse(&text).map_err(|e| cfg_err(error_chain(&e)))? {
        Value::Map(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        other => Err(cfg_err(format!("expected a map, got {}", other.kind()))),
    }
}

fn read_spec_lock(path: &Path) -> Result<Resource, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("Reading '{}': {e}", path.display()))?;
    let v = bosh_yaml::parse(&text).map_err(|e| error_chain(&e))?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let fp = v
        .get("fingerprint")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || fp.is_empty() {
        return Err(format!(
            "Expected 'name' and 'fingerprint' in '{}'",
            path.display()
        ));
    }
    let deps: Vec<String> = v
        .get("dependencies")
        .and_then(Value::as_seq)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(Resource {
        kind: ResourceKind::Package,
        name,
        fingerprint: fp,
        files: Vec::new(),
        prep_files: Vec::new(),
        follow_symlinks: false,
        chunks: deps.clone(),
        no_compression: false,
        dependencies: deps,
        expect_to_exist: true,
    })
}

pub(crate) fn sorted_subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Every non-directory under `root` (symlinks to files included, symlinked dirs not
/// descended), as `/`-separated paths relative to `root`, sorted.
fn list_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return out;
    }
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            continue;
        }
        if entry.file_type().is_symlink() && entry.path().is_dir() {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(root) {
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
    out
}

/// Doublestar-style globs: `**` spans whole path segments, `*` stays within one, dot files
/// match.
fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("Invalid file pattern '{pattern}': {e}"))
}
