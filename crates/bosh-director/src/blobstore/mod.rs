//! The director's blobstore: one [`Blobstore`] trait with two backends, chosen by the
//! `blobstore` block of the director config ([`crate::config::BlobstoreConfig`]):
//!
//! - [`LocalBlobstore`] (the default): files under `DATA_DIR/blobstore` in the `dav` layout.
//! - [`S3Blobstore`]: any S3-compatible bucket through `object_store`, streamed both ways.
//!
//! Whatever the backend, agents fetch blobs from the director's DAV endpoint
//! (`/blobstore/<2 hex>/<id>`, see `api::blobstore`), which streams from the trait; the real
//! director would instead hand S3 agents the bucket settings, which this director does not do.

mod local;
mod s3;

pub use local::LocalBlobstore;
pub use s3::{PART_SIZE as S3_PART_SIZE, S3Blobstore};

use async_trait::async_trait;
use sha1::{Digest as _, Sha1};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::config::BlobstoreConfig;

#[derive(Debug, thiserror::Error)]
pub enum BlobstoreError {
    #[error("invalid blob id '{0}'")]
    InvalidId(String),
    #[error("blob '{0}' not found")]
    NotFound(String),
    #[error("blobstore I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An S3 request failed; the message names the operation and blob, never a credential.
    #[error("S3 blobstore: {op} '{id}' in bucket '{bucket}'")]
    S3 {
        op: &'static str,
        id: String,
        bucket: String,
        /// Boxed: `object_store::Error` is large and every blobstore result carries it.
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("S3 blobstore: invalid settings")]
    S3Setup(#[source] Box<object_store::Error>),
}

pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Storage for release, compiled-package, rendered-template and log blobs.
#[async_trait]
pub trait Blobstore: Send + Sync {
    /// Stores `reader`'s bytes under `id`, replacing any blob with that id.
    async fn put(&self, id: &str, reader: BlobReader) -> Result<u64, BlobstoreError>;
    async fn get(&self, id: &str) -> Result<BlobReader, BlobstoreError>;
    /// Whether a blob was removed.
    async fn delete(&self, id: &str) -> Result<bool, BlobstoreError>;
    async fn exists(&self, id: &str) -> Result<bool, BlobstoreError>;

    /// Stores a file under a fresh UUID and returns the id.
    async fn put_file(&self, path: &Path) -> Result<String, BlobstoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.put_file_as(&id, path).await?;
        Ok(id)
    }

    async fn put_file_as(&self, id: &str, path: &Path) -> Result<(), BlobstoreError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| BlobstoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        self.put(id, Box::pin(file)).await?;
        Ok(())
    }

    /// Copies a blob into `dest`.
    async fn get_to_file(&self, id: &str, dest: &Path) -> Result<u64, BlobstoreError> {
        let mut reader = self.get(id).await?;
        let io = |source| BlobstoreError::Io {
            path: dest.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let n = tokio::io::copy(&mut reader, &mut file).await.map_err(io)?;
        file.flush().await.map_err(io)?;
        Ok(n)
    }
}

/// Blob ids are UUIDs from us or the agents; anything else could escape the root.
pub fn blob_id_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The DAV directory of a blob id: the first byte of SHA-1(id) in hex.
pub fn blob_prefix(id: &str) -> String {
    let digest = Sha1::digest(id.as_bytes());
    format!("{:02x}", digest[0])
}

/// The backend the config names; the local one lives in `DATA_DIR/blobstore` unless the config
/// gives another directory.
pub fn blobstore_open(
    config: &BlobstoreConfig,
    data_dir: &Path,
) -> Result<Arc<dyn Blobstore>, BlobstoreError> {
    Ok(match config {
        BlobstoreConfig::Local { path } => Arc::new(LocalBlobstore::new(
            path.clone().unwrap_or_else(|| data_dir.join("blobstore")),
        )?),
        BlobstoreConfig::S3(s3) => Arc::new(S3Blobstore::new(s3)?),
    })
}

/// Credentials agents use for the DAV endpoint: generated once, kept in
/// `DIR/blobstore-credentials.yml` (0600), separate from the admin user.
#[derive(Clone)]
pub struct DavCredentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for DavCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl DavCredentials {
    pub const FILE: &'static str = "blobstore-credentials.yml";

    pub fn ensure(data_dir: &Path) -> Result<DavCredentials, BlobstoreError> {
        let path = data_dir.join(Self::FILE);
        let existing = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| bosh_yaml::parse(&t).ok())
            .and_then(|v| {
                let user = v.get("username")?.as_str()?.to_owned();
                let password = v.get("password")?.as_str()?.to_owned();
                Some(DavCredentials { user, password })
            });
        if let Some(c) = existing {
            return Ok(c);
        }
        let creds = DavCredentials {
            user: "agent".to_owned(),
            password: crate::auth::password_generate(),
        };
        let text = format!("username: {}\npassword: {}\n", creds.user, creds.password);
        crate::private_file::private_file_write(&path, &text)
            .map_err(|source| BlobstoreError::Io { path, source })?;
        Ok(creds)
    }
}
