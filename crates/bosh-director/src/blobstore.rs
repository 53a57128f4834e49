//! The director's blobstore: a [`Blobstore`] trait and the local-directory backend.
//!
//! Blobs live at `ROOT/<2 hex>/<id>`, where the prefix is the first byte of SHA-1(id): the
//! layout of the `dav` provider agents use, so the DAV server maps a URL path straight to a
//! file. Writes go to a temporary file first and are renamed into place, so a reader never
//! sees half a blob.

use async_trait::async_trait;
use sha1::{Digest as _, Sha1};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWriteExt};

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

/// Blobs as files under one directory.
#[derive(Debug, Clone)]
pub struct LocalBlobstore {
    root: PathBuf,
}

impl LocalBlobstore {
    pub fn new(root: PathBuf) -> Result<LocalBlobstore, BlobstoreError> {
        std::fs::create_dir_all(root.join(".tmp")).map_err(|source| BlobstoreError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(LocalBlobstore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `id` lives.
    pub fn path(&self, id: &str) -> Result<PathBuf, BlobstoreError> {
        if !blob_id_valid(id) {
            return Err(BlobstoreError::InvalidId(id.to_owned()));
        }
        Ok(self.root.join(blob_prefix(id)).join(id))
    }
}

#[async_trait]
impl Blobstore for LocalBlobstore {
    async fn put(&self, id: &str, mut reader: BlobReader) -> Result<u64, BlobstoreError> {
        let dest = self.path(id)?;
        let tmp = self
            .root
            .join(".tmp")
            .join(format!("{id}.{}", uuid::Uuid::new_v4()));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| BlobstoreError::Io { path, source }
        };
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(io(&tmp))?;
            let n = tokio::io::copy(&mut reader, &mut file)
                .await
                .map_err(io(&tmp))?;
            file.sync_all().await.map_err(io(&tmp))?;
            if let Some(dir) = dest.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
            }
            tokio::fs::rename(&tmp, &dest).await.map_err(io(&dest))?;
            Ok(n)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn get(&self, id: &str) -> Result<BlobReader, BlobstoreError> {
        let path = self.path(id)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::pin(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobstoreError::NotFound(id.to_owned()))
            }
            Err(source) => Err(BlobstoreError::Io { path, source }),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, BlobstoreError> {
        let path = self.path(id)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BlobstoreError::Io { path, source }),
        }
    }

    async fn exists(&self, id: &str) -> Result<bool, BlobstoreError> {
        let path = self.path(id)?;
        Ok(tokio::fs::try_exists(&path).await.unwrap_or(false))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_put_get_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobstore::new(dir.path().to_owned()).unwrap();
        let id = "0b9f6b5e-1b1e-4f5e-9c1a-000000000001";
        store
            .put(id, Box::pin(std::io::Cursor::new(b"hello".to_vec())))
            .await
            .unwrap();
        assert!(store.exists(id).await.unwrap());
        assert!(dir.path().join(blob_prefix(id)).join(id).is_file());
        let out = dir.path().join("out");
        assert_eq!(store.get_to_file(id, &out).await.unwrap(), 5);
        assert!(store.delete(id).await.unwrap());
        assert!(!store.exists(id).await.unwrap());
        assert!(matches!(
            store.get(id).await,
            Err(BlobstoreError::NotFound(_))
        ));
        assert!(matches!(
            store.path("../etc/passwd"),
            Err(BlobstoreError::InvalidId(_))
        ));
    }
}
