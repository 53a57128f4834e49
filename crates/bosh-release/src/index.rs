//! Build indexes (`.dev_builds` / `.final_builds`, formats.md §1.3), release indexes
//! (`dev_releases` / `releases`, §1.4) and the content-addressed archive cache
//! `~/.bosh/cache/<digest string>`.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::blobstore::{Blobstore, BlobstoreError};
use crate::release_dir::ResourceKind;
use bosh_types::digest::{DigestError, DigestString};
use bosh_types::release::ReleaseManifest;
use bosh_types::version::{Version, VersionError};
use bosh_yaml::{Mapping, Value};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Unmarshalling index '{path}': {message}")]
    Parse { path: PathBuf, message: String },
    #[error("Parsing release versions in '{path}'")]
    Version {
        path: PathBuf,
        #[source]
        source: VersionError,
    },
    #[error("Release version '{0}' already exists")]
    ReleaseExists(String),
    #[error("Trying to add duplicate index entry '{name}/{fingerprint}'")]
    Duplicate { name: String, fingerprint: String },
    #[error("Invalid blob SHA1 '{0}': must be a safe local path")]
    UnsafeDigest(String),
    #[error("Local copy ('{path}') of blob '{id}' digest verification error")]
    CacheCorrupt {
        path: PathBuf,
        id: String,
        #[source]
        source: DigestError,
    },
    #[error("Invalid digest '{digest}' in index for '{name}'")]
    BadDigest {
        name: String,
        digest: String,
        #[source]
        source: DigestError,
    },
    #[error("Downloading blob '{id}' with digest string '{digest}'")]
    Download {
        id: String,
        digest: String,
        #[source]
        source: BlobstoreError,
    },
    #[error("Creating blob for path '{path}'")]
    Upload {
        path: PathBuf,
        #[source]
        source: BlobstoreError,
    },
    #[error("Cannot find blob named '{name}' with SHA1 '{digest}'")]
    NotCached { name: String, digest: String },
    #[error("Manifest '{path}': {message}")]
    Manifest { path: PathBuf, message: String },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + use<> {
    let path = path.to_path_buf();
    move |source| IndexError::Io {
        action,
        path,
        source,
    }
}

/// The archive cache, `$HOME/.bosh/cache`.
#[derive(Debug, Clone)]
pub struct ArchiveCache {
    dir: PathBuf,
}

impl ArchiveCache {
    pub fn new(dir: impl Into<PathBuf>) -> ArchiveCache {
        ArchiveCache { dir: dir.into() }
    }

    /// `$HOME/.bosh/cache` (falls back to `./.bosh/cache` when `HOME` is unset).
    pub fn from_home() -> ArchiveCache {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        ArchiveCache::new(home.join(".bosh").join("cache"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where an archive with this digest string lives.
    pub fn path_for(&self, digest: &str) -> Result<PathBuf, IndexError> {
        let name = if cfg!(windows) {
            digest.replace(':', "_")
        } else {
            digest.to_string()
        };
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\\');
        if !ok {
            return Err(IndexError::UnsafeDigest(digest.to_string()));
        }
        Ok(self.dir.join(name))
    }

    /// Copies `src` into the cache unless already there; returns the cached path.
    pub fn add(&self, src: &Path, digest: &str) -> Result<PathBuf, IndexError> {
        let dst = self.path_for(digest)?;
        if !dst.exists() {
            fs::create_dir_all(&self.dir).map_err(io_err("Creating cache directory", &self.dir))?;
            // Copy to a temp name then rename, so concurrent readers never see half a file.
            let tmp = self.dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
            fs::copy(src, &tmp).map_err(io_err("Copying file into cache", src))?;
            fs::rename(&tmp, &dst).map_err(io_err("Copying file into cache", &dst))?;
        }
        Ok(dst)
    }

    /// The cached archive for `digest`, verified; downloaded from `blobstore` by `blob_id`
    /// when missing. `downloaded` is set when a download happened.
    pub fn get(
        &self,
        name: &str,
        blob_id: &str,
        digest: &str,
        blobstore: Option<&Blobstore>,
        downloaded: &mut bool,
    ) -> Result<PathBuf, IndexError> {
        let dst = self.path_for(digest)?;
        let parsed = DigestString::parse(digest).map_err(|source| IndexError::BadDigest {
            name: name.to_string(),
            digest: digest.to_string(),
            source,
        })?;
        if dst.exists() {
            let f = fs::File::open(&dst).map_err(io_err("Reading cached blob", &dst))?;
            parsed
                .verify_reader(std::io::BufReader::new(f))
                .map_err(|source| IndexError::CacheCorrupt {
                    path: dst.clone(),
                    id: blob_id.to_string(),
                    source,
                })?;
            return Ok(dst);
        }
        match blobstore {
            Some(bs) if !blob_id.is_empty() => {
                fs::create_dir_all(&self.dir)
                    .map_err(io_err("Creating cache directory", &self.dir))?;
                let tmp = self.dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
                let res = bs.get(blob_id, &parsed, &tmp);
                if let Err(source) = res {
                    let _ = fs::remove_file(&tmp);
                    return Err(IndexError::Download {
                        id: blob_id.to_string(),
                        digest: digest.to_string(),
                        source,
                    });
                }
                fs::rename(&tmp, &dst).map_err(io_err("Moving blob into cache", &dst))?;
                *downloaded = true;
                Ok(dst)
            }
            _ => Err(IndexError::NotCached {
                name: name.to_string(),
                digest: digest.to_string(),
            }),
        }
    }
}

/// One build index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildEntry {
    pub key: String,
    pub version: String,
    pub blobstore_id: String,
    pub sha1: String,
}

/// `.dev_builds/<kind>s/<name>/index.yml` or `.final_builds/...` (the license index has no
/// per-name directory).
#[derive(Debug, Clone)]
pub struct BuildIndex {
    dir: PathBuf,
    kind: ResourceKind,
    is_final: bool,
}

impl BuildIndex {
    pub fn dev(release_dir: &Path, kind: ResourceKind) -> BuildIndex {
        BuildIndex {
            dir: release_dir.join(".dev_builds").join(kind_dir(kind)),
            kind,
            is_final: false,
        }
    }

    pub fn final_(release_dir: &Path, kind: ResourceKind) -> BuildIndex {
        BuildIndex {
            dir: release_dir.join(".final_builds").join(kind_dir(kind)),
            kind,
            is_final: true,
        }
    }

    pub fn is_final(&self) -> bool {
        self.is_final
    }

    pub fn index_path(&self, name: &str) -> PathBuf {
        match self.kind {
            ResourceKind::License => self.dir.join("index.yml"),
            _ => self.dir.join(name).join("index.yml"),
        }
    }

    pub fn entries(&self, name: &str) -> Result<Vec<BuildEntry>, IndexError> {
        let path = self.index_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("Reading index", &path)(e)),
        };
        // The Ruby CLI wrote a non-standard tag; read it as the standard binary tag.
        let text = text.replace(" !binary ", " !!binary ");
        let parse_err = |message: String| IndexError::Parse {
            path: path.clone(),
            message,
        };
        let doc = bosh_yaml::parse(&text).map_err(|e| parse_err(e.to_string()))?;
        let mut out = Vec::new();
        if let Some(builds) = doc.get("builds").and_then(Value::as_map) {
            for (k, v) in builds {
                out.push(BuildEntry {
                    key: scalar(k),
                    version: v.get("version").map(scalar).unwrap_or_default(),
                    blobstore_id: v.get("blobstore_id").map(scalar).unwrap_or_default(),
                    sha1: v.get("sha1").map(scalar).unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    pub fn find(&self, name: &str, fingerprint: &str) -> Result<Option<BuildEntry>, IndexError> {
        Ok(self
            .entries(name)?
            .into_iter()
            .find(|e| e.version == fingerprint))
    }

    /// Adds an entry keyed by fingerprint; refuses duplicates.
    pub fn add(&self, name: &str, entry: BuildEntry) -> Result<(), IndexError> {
        let mut entries = self.entries(name)?;
        if entries.iter().any(|e| e.version == entry.version) {
            return Err(IndexError::Duplicate {
                name: name.into(),
                fingerprint: entry.version,
            });
        }
        entries.push(entry);
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let mut builds = Mapping::new();
        for e in entries {
            let mut m = Mapping::new();
            m.insert("version".into(), e.version.into());
            if !e.blobstore_id.is_empty() {
                m.insert("blobstore_id".into(), e.blobstore_id.into());
            }
            m.insert("sha1".into(), e.sha1.into());
            builds.insert(e.key.into(), Value::Map(m));
        }
        let mut doc = Mapping::new();
        doc.insert("builds".into(), Value::Map(builds));
        doc.insert("format-version".into(), "2".into());
        let path = self.index_path(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
        }
        fs::write(&path, bosh_yaml::to_string(&Value::Map(doc)))
            .map_err(io_err("Writing index", &path))
    }
}

fn kind_dir(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Job => "jobs",
        ResourceKind::Package => "packages",
        ResourceKind::License => "license",
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `dev_releases/<name>/index.yml` or `releases/<name>/index.yml` and the manifests beside.
#[derive(Debug, Clone)]
pub struct ReleaseIndex {
    dir: PathBuf,
    /// `dev` or `final`, as printed in `Added dev release '...'`.
    word: &'static str,
}

impl ReleaseIndex {
    pub fn dev(release_dir: &Path) -> ReleaseIndex {
        ReleaseIndex {
            dir: release_dir.join("dev_releases"),
            word: "dev",
        }
    }

    pub fn final_(release_dir: &Path) -> ReleaseIndex {
        ReleaseIndex {
            dir: release_dir.join("releases"),
            word: "final",
        }
    }

    pub fn word(&self) -> &'static str {
        self.word
    }

    pub fn index_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("index.yml")
    }

    pub fn manifest_path(&self, name: &str, version: &str) -> PathBuf {
        self.dir.join(name).join(format!("{name}-{version}.yml"))
    }

    /// `(key, version)` pairs in file order.
    fn builds(&self, name: &str) -> Result<Mapping, IndexError> {
        let path = self.index_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Mapping::new()),
            Err(e) => return Err(io_err("Reading index", &path)(e)),
        };
        let doc = bosh_yaml::parse(&text).map_err(|e| IndexError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(doc
            .get("builds")
            .and_then(Value::as_map)
            .cloned()
            .unwrap_or_default())
    }

    pub fn versions(&self, name: &str) -> Result<Vec<String>, IndexError> {
        Ok(self
            .builds(name)?
            .values()
            .map(|v| v.get("version").map(scalar).unwrap_or_default())
            .collect())
    }

    /// The greatest version by semi-semantic order.
    pub fn last_version(&self, name: &str) -> Result<Option<Version>, IndexError> {
        let path = self.index_path(name);
        let mut best: Option<Version> = None;
        for v in self.versions(name)? {
            let v = Version::parse(&v).map_err(|source| IndexError::Version {
                path: path.clone(),
                source,
            })?;
            if best.as_ref().is_none_or(|b| v > *b) {
                best = Some(v);
            }
        }
        Ok(best)
    }

    pub fn contains(&self, name: &str, version: &str) -> Result<bool, IndexError> {
        Ok(self.versions(name)?.iter().any(|v| v == version))
    }

    /// Writes `<name>-<version>.yml` and adds a random-UUID-keyed index entry.
    pub fn add(&self, manifest: &ReleaseManifest) -> Result<(), IndexError> {
        let (name, version) = (&manifest.name, &manifest.version);
        let mut builds = self.builds(name)?;
        if builds
            .values()
            .any(|v| v.get("version").map(scalar).as_deref() == Some(version))
        {
            return Err(IndexError::ReleaseExists(version.clone()));
        }
        let mut entry = Mapping::new();
        entry.insert("version".into(), version.clone().into());
        builds.insert(uuid::Uuid::new_v4().to_string().into(), Value::Map(entry));
        builds.sort_by(|k1, _, k2, _| scalar(k1).cmp(&scalar(k2)));

        let manifest_path = self.manifest_path(name, version);
        if let Some(parent) = manifest_path.parent() {
            fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
        }
        fs::write(&manifest_path, manifest.to_yaml())
            .map_err(io_err("Writing manifest", &manifest_path))?;
        let mut doc = Mapping::new();
        doc.insert("builds".into(), Value::Map(builds));
        doc.insert("format-version".into(), "2".into());
        let path = self.index_path(name);
        fs::write(&path, bosh_yaml::to_string(&Value::Map(doc)))
            .map_err(io_err("Writing index", &path))
    }

    /// Reads a release manifest of this index.
    pub fn read_manifest(&self, name: &str, version: &str) -> Result<ReleaseManifest, IndexError> {
        let path = self.manifest_path(name, version);
        let text = fs::read_to_string(&path).map_err(io_err("Reading manifest", &path))?;
        ReleaseManifest::parse(&text).map_err(|e| IndexError::Manifest {
            path,
            message: crate::release_dir::error_chain(&e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_index_written_like_the_reference() {
        let tmp = tempfile::tempdir().unwrap();
        let idx = BuildIndex::final_(tmp.path(), ResourceKind::Job);
        let fp = "8615f26e3180682fcc62cb9e7199dffebe8841a6831834f7614b3f90341572b4";
        idx.add(
            "kv-server",
            BuildEntry {
                key: fp.into(),
                version: fp.into(),
                blobstore_id: "a49a4089-8195-41af-671b-2bfd6332247a".into(),
                sha1: "sha256:fb6812768f3d7adeba383380281419be73c62472b9d6c57a5b54cbb7bd136c34"
                    .into(),
            },
        )
        .unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/kv-release/.final_builds/jobs/kv-server/index.yml");
        assert_eq!(
            fs::read_to_string(idx.index_path("kv-server")).unwrap(),
            fs::read_to_string(fixture).unwrap()
        );
        assert!(idx.find("kv-server", fp).unwrap().is_some());
        let dup = BuildEntry {
            key: fp.into(),
            version: fp.into(),
            blobstore_id: "x".into(),
            sha1: "y".into(),
        };
        assert!(matches!(
            idx.add("kv-server", dup),
            Err(IndexError::Duplicate { .. })
        ));
    }

    #[test]
    fn release_index_reads_fixture_and_refuses_existing_versions() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/kv-release");
        let idx = ReleaseIndex::final_(&fixture);
        assert_eq!(
            idx.last_version("kv").unwrap().map(|v| v.to_string()),
            Some("1.0.0".into())
        );
        assert!(idx.contains("kv", "1.0.0").unwrap());
        let m = idx.read_manifest("kv", "1.0.0").unwrap();
        assert_eq!(m.jobs.len(), 2);

        let tmp = tempfile::tempdir().unwrap();
        let dev = ReleaseIndex::dev(tmp.path());
        let mut m = ReleaseManifest {
            name: "kv".into(),
            version: "0+dev.1".into(),
            ..Default::default()
        };
        dev.add(&m).unwrap();
        m.version = "0+dev.2".into();
        dev.add(&m).unwrap();
        assert_eq!(
            dev.last_version("kv").unwrap().map(|v| v.to_string()),
            Some("0+dev.2".into())
        );
        assert!(matches!(dev.add(&m), Err(IndexError::ReleaseExists(_))));
        let text = fs::read_to_string(dev.index_path("kv")).unwrap();
        assert!(
            text.starts_with("builds:\n") && text.ends_with("format-version: \"2\"\n"),
            "{text}"
        );
    }
}
