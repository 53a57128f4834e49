//! The release blobstore of `config/final.yml` (+ `private.yml` options). Only the `local`
//! provider is implemented; `s3`, `gcs` and `dav` are recognised and refused with a clear
//! error at the moment they would be used, as a missing configuration is.

// Errors carry paths and names for their messages; they only occur on cold paths.
#![allow(clippy::result_large_err)]

use crate::release_dir::ReleaseDir;
use bosh_types::digest::{DigestError, DigestString};
use bosh_yaml::Value;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobstoreError {
    #[error("Release blobstore provider '{0}' is not supported yet by bosh-rs (only 'local' is)")]
    Unsupported(String),
    #[error("{0}")]
    NotConfigured(String),
    #[error("Getting blob '{id}' from local blobstore '{dir}'")]
    Get {
        id: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Creating blob in local blobstore '{dir}'")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Blob '{id}' does not have the expected digest")]
    Digest {
        id: String,
        #[source]
        source: DigestError,
    },
}

#[derive(Debug, Clone)]
pub enum Blobstore {
    /// `provider: local`, files named by blob id under `blobstore_path`.
    Local { dir: PathBuf },
    /// A provider we know of but do not implement yet.
    Unsupported { provider: String },
    /// No usable configuration; the message says why.
    NotConfigured { message: String },
}

impl Blobstore {
    /// The blobstore configured for a release directory. Configuration problems surface
    /// only when the blobstore is used.
    pub fn for_release_dir(dir: &ReleaseDir) -> Blobstore {
        let cfg = match dir.config() {
            Ok(cfg) => cfg,
            Err(e) => {
                return Blobstore::NotConfigured {
                    message: e.to_string(),
                };
            }
        };
        match cfg.provider.as_str() {
            "" => Blobstore::NotConfigured {
                message: format!(
                    "Expected non-empty 'blobstore.provider' in config '{}'",
                    dir.final_yml().display()
                ),
            },
            "local" => match cfg
                .options
                .get(&Value::from("blobstore_path"))
                .and_then(Value::as_str)
            {
                Some(p) if !p.is_empty() => {
                    let p = Path::new(p);
                    let dir = if p.is_absolute() {
                        p.to_path_buf()
                    } else {
                        dir.path().join(p)
                    };
                    Blobstore::Local { dir }
                }
                _ => Blobstore::NotConfigured {
                    message: "Expected local blobstore option 'blobstore_path' to be set".into(),
                },
            },
            "s3" | "gcs" | "dav" => Blobstore::Unsupported {
                provider: cfg.provider,
            },
            _ => Blobstore::NotConfigured {
                message: "Expected release blobstore to be configured".into(),
            },
        }
    }

    fn local_dir(&self) -> Result<&Path, BlobstoreError> {
        match self {
            Blobstore::Local { dir } => Ok(dir),
            Blobstore::Unsupported { provider } => {
                Err(BlobstoreError::Unsupported(provider.clone()))
            }
            Blobstore::NotConfigured { message } => {
                Err(BlobstoreError::NotConfigured(message.clone()))
            }
        }
    }

    /// Downloads blob `id` to `dst`, verifying `digest`. Nothing is left at `dst` on error.
    pub fn get(&self, id: &str, digest: &DigestString, dst: &Path) -> Result<(), BlobstoreError> {
        let dir = self.local_dir()?;
        let get_err = |source| BlobstoreError::Get {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            source,
        };
        if id.is_empty() || id.contains('/') || id.contains('\\') || id == "." || id == ".." {
            return Err(get_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "invalid blob id",
            )));
        }
        let src = dir.join(id);
        let file = fs::File::open(&src).map_err(get_err)?;
        digest
            .verify_reader(std::io::BufReader::new(file))
            .map_err(|source| BlobstoreError::Digest {
                id: id.to_string(),
                source,
            })?;
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(get_err)?;
        }
        fs::copy(&src, dst).map_err(get_err)?;
        Ok(())
    }

    /// Stores the file at `src` and returns its new blob id.
    pub fn create(&self, src: &Path) -> Result<String, BlobstoreError> {
        let dir = self.local_dir()?;
        let create_err = |source| BlobstoreError::Create {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(create_err)?;
        let id = uuid::Uuid::new_v4().to_string();
        fs::copy(src, dir.join(&id)).map_err(create_err)?;
        Ok(id)
    }
}
