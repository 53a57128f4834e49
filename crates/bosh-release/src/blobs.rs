//! `config/blobs.yml` and the `blobs/` directory (formats.md §1.2): `add-blob`,
//! `remove-blob`, `blobs`, and the blob sync that `create-release` runs first.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::blobstore::{Blobstore, BlobstoreError};
use crate::release_dir::DIGEST_ALGO;
use bosh_types::digest::{Digest, DigestError, DigestString};
use bosh_yaml::{Mapping, Value};
use std::fs;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobsError {
    #[error("{action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Unmarshalling blobs index '{path}': {message}")]
    Index { path: PathBuf, message: String },
    #[error("Invalid blob path '{0}': must be a safe local path")]
    UnsafePath(String),
    #[error(
        "Bailing because symlinks found in blobs directory. If switching from CLI v1, please use \
         the `reset-release` command."
    )]
    Symlinks,
    #[error("Getting blob '{id}' for path '{path}'")]
    Download {
        id: String,
        path: String,
        #[source]
        source: BlobstoreError,
    },
    #[error("Generating multi digest for blob '{id}' for path '{path}' with digest string '{sha}'")]
    BadDigest {
        id: String,
        path: String,
        sha: String,
        #[source]
        source: DigestError,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BlobsError + use<> {
    let path = path.to_path_buf();
    move |source| BlobsError::Io {
        action,
        path,
        source,
    }
}

/// One `config/blobs.yml` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Path relative to `blobs/`.
    pub path: String,
    pub size: u64,
    /// Blobstore id; empty until uploaded.
    pub object_id: String,
    /// Digest string of the content.
    pub sha: String,
}

#[derive(Debug, Clone)]
pub struct BlobsDir {
    index_path: PathBuf,
    dir: PathBuf,
}

impl BlobsDir {
    pub fn new(release_dir: &Path) -> BlobsDir {
        BlobsDir {
            index_path: release_dir.join("config").join("blobs.yml"),
            dir: release_dir.join("blobs"),
        }
    }

    /// Writes an empty index (`--- {}`).
    pub fn init(&self) -> Result<(), BlobsError> {
        if let Some(parent) = self.index_path.parent() {
            fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
        }
        fs::write(&self.index_path, "--- {}\n").map_err(io_err("Initing", &self.index_path))
    }

    /// The index entries sorted by path. A missing index is empty.
    pub fn blobs(&self) -> Result<Vec<Blob>, BlobsError> {
        let text = match fs::read_to_string(&self.index_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("Reading blobs index", &self.index_path)(e)),
        };
        let index_err = |message: String| BlobsError::Index {
            path: self.index_path.clone(),
            message,
        };
        let map = match bosh_yaml::parse(&text).map_err(|e| index_err(e.to_string()))? {
            Value::Map(m) => m,
            Value::Null => Mapping::new(),
            other => return Err(index_err(format!("expected a map, got {}", other.kind()))),
        };
        let mut blobs = Vec::new();
        for (k, v) in &map {
            let path = match k {
                Value::String(s) => s.clone(),
                other => {
                    return Err(index_err(format!(
                        "blob path must be a string, got {}",
                        other.kind()
                    )));
                }
            };
            safe_join(&self.dir, &path)?;
            let text = |key: &str| match v.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Int(i)) => i.to_string(),
                _ => String::new(),
            };
            let size = v.get("size").and_then(Value::as_i64).unwrap_or(0).max(0) as u64;
            blobs.push(Blob {
                size,
                object_id: text("object_id"),
                sha: text("sha"),
                path,
            });
        }
        blobs.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(blobs)
    }

    fn save(&self, blobs: &[Blob]) -> Result<(), BlobsError> {
        let mut sorted: Vec<&Blob> = blobs.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let mut map = Mapping::new();
        for b in sorted {
            let mut entry = Mapping::new();
            entry.insert("size".into(), Value::Int(b.size as i64));
            if !b.object_id.is_empty() {
                entry.insert("object_id".into(), b.object_id.clone().into());
            }
            entry.insert("sha".into(), b.sha.clone().into());
            map.insert(b.path.clone().into(), Value::Map(entry));
        }
        fs::write(&self.index_path, bosh_yaml::to_string(&Value::Map(map)))
            .map_err(io_err("Writing blobs index", &self.index_path))
    }

    /// `add-blob`: copies `src` to `blobs/<path>` and records its size and digest (no id).
    pub fn track_blob(&self, src: &Path, path: &str) -> Result<Blob, BlobsError> {
        let dst = safe_join(&self.dir, path)?;
        let file = fs::File::open(src).map_err(io_err("Opening blob", src))?;
        let size = file.metadata().map_err(io_err("Opening blob", src))?.len();
        let digest = Digest::compute_reader(DIGEST_ALGO, std::io::BufReader::new(file))
            .map_err(io_err("Calculating digest of", src))?;
        let mut blobs = self.blobs()?;
        let blob = Blob {
            path: path.to_string(),
            size,
            object_id: String::new(),
            sha: digest.to_string(),
        };
        match blobs.iter_mut().find(|b| b.path == path) {
            Some(existing) => *existing = blob.clone(),
            None => blobs.push(blob.clone()),
        }
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io_err("Creating subdirs in", parent))?;
        }
        fs::copy(src, &dst).map_err(io_err("Copying blob to", &dst))?;
        self.save(&blobs)?;
        Ok(blob)
    }

    /// `remove-blob`: deletes `blobs/<path>` and its index entry.
    pub fn untrack_blob(&self, path: &str) -> Result<(), BlobsError> {
        let target = safe_join(&self.dir, path)?;
        let mut blobs = self.blobs()?;
        match fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("Removing blob from blobs/", &target)(e)),
        }
        let before = blobs.len();
        blobs.retain(|b| b.path != path);
        if blobs.len() != before {
            self.save(&blobs)?;
        }
        Ok(())
    }

    /// Makes `blobs/` match the index: refuses symlinks, deletes unknown files, downloads
    /// entries with an id whose local copy is missing or fails verification.
    pub fn sync(&self, blobstore: &Blobstore) -> Result<(), BlobsError> {
        let blobs = self.blobs()?;
        let mut files = Vec::new();
        if self.dir.is_dir() {
            for entry in walkdir::WalkDir::new(&self.dir).min_depth(1) {
                let entry = entry.map_err(|e| {
                    let path = e.path().unwrap_or(&self.dir).to_path_buf();
                    BlobsError::Io {
                        action: "Checking for unknown blobs in",
                        path,
                        source: e.into(),
                    }
                })?;
                if entry.file_type().is_symlink() {
                    return Err(BlobsError::Symlinks);
                }
                if entry.file_type().is_file() {
                    files.push(entry.into_path());
                }
            }
        }
        for file in files {
            if !blobs.iter().any(|b| self.dir.join(&b.path) == file) {
                tracing::info!(
                    "Deleting blob at '{}' that is not in the blob index.",
                    file.display()
                );
                fs::remove_file(&file).map_err(io_err("Removing unknown blob", &file))?;
            }
        }
        for blob in blobs.iter().filter(|b| !b.object_id.is_empty()) {
            let dst = safe_join(&self.dir, &blob.path)?;
            let digest =
                DigestString::parse(&blob.sha).map_err(|source| BlobsError::BadDigest {
                    id: blob.object_id.clone(),
                    path: blob.path.clone(),
                    sha: blob.sha.clone(),
                    source,
                })?;
            let present = fs::File::open(&dst)
                .ok()
                .is_some_and(|f| digest.verify_reader(std::io::BufReader::new(f)).is_ok());
            if present {
                continue;
            }
            blobstore
                .get(&blob.object_id, &digest, &dst)
                .map_err(|source| BlobsError::Download {
                    id: blob.object_id.clone(),
                    path: blob.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// `root/rel`, refusing absolute paths and any `..` that would leave `root`.
pub fn safe_join(root: &Path, rel: &str) -> Result<PathBuf, BlobsError> {
    let p = Path::new(rel);
    let ok = !rel.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().any(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(root.join(p))
    } else {
        Err(BlobsError::UnsafePath(rel.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_untrack_round_trip_keeps_index_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobsDir::new(tmp.path());
        dir.init().unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("config/blobs.yml")).unwrap(),
            "--- {}\n"
        );
        let src = tmp.path().join("src.bin");
        fs::write(&src, b"hello\n").unwrap();
        dir.track_blob(&src, "z/b.bin").unwrap();
        dir.track_blob(&src, "a.bin").unwrap();
        let text = fs::read_to_string(tmp.path().join("config/blobs.yml")).unwrap();
        let sha = Digest::compute_bytes(DIGEST_ALGO, b"hello\n");
        assert_eq!(
            text,
            format!("a.bin:\n  size: 6\n  sha: {sha}\nz/b.bin:\n  size: 6\n  sha: {sha}\n")
        );
        assert_eq!(
            fs::read(tmp.path().join("blobs/z/b.bin")).unwrap(),
            b"hello\n"
        );
        dir.untrack_blob("a.bin").unwrap();
        assert!(!tmp.path().join("blobs/a.bin").exists());
        assert_eq!(dir.blobs().unwrap().len(), 1);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let root = Path::new("/r");
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "."] {
            assert!(safe_join(root, bad).is_err(), "{bad}");
        }
        assert_eq!(safe_join(root, "a/b").unwrap(), Path::new("/r/a/b"));
    }

    #[test]
    fn sync_removes_unknown_files_and_refuses_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = BlobsDir::new(tmp.path());
        dir.init().unwrap();
        fs::create_dir_all(tmp.path().join("blobs/x")).unwrap();
        fs::write(tmp.path().join("blobs/x/stray"), b"?").unwrap();
        let bs = Blobstore::NotConfigured {
            message: "none".into(),
        };
        dir.sync(&bs).unwrap();
        assert!(!tmp.path().join("blobs/x/stray").exists());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hosts", tmp.path().join("blobs/link")).unwrap();
            assert!(matches!(dir.sync(&bs), Err(BlobsError::Symlinks)));
        }
    }
}
