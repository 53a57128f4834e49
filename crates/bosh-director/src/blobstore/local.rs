//! The local-directory backend.
//!
//! Blobs live at `ROOT/<2 hex>/<id>`, where the prefix is the first byte of SHA-1(id): the
//! layout of the `dav` provider agents use, so the DAV server maps a URL path straight to a
//! file. Writes go to a temporary file first and are renamed into place, so a reader never
//! sees half a blob.

use async_trait::async_trait;
use std::path::{Path, PathBuf};

use super::{BlobReader, Blobstore, BlobstoreError, blob_id_valid, blob_prefix};

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

    /// A plain file copy on a blocking thread (the kernel's copy where it can), not a
    /// buffered async stream: release blobs can be gigabytes.
    async fn put_file_as(&self, id: &str, path: &Path) -> Result<(), BlobstoreError> {
        let dest = self.path(id)?;
        let tmp = self
            .root
            .join(".tmp")
            .join(format!("{id}.{}", uuid::Uuid::new_v4()));
        let src = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let io = |path: &Path| {
                let path = path.to_owned();
                move |source| BlobstoreError::Io { path, source }
            };
            let result = (|| {
                std::fs::copy(&src, &tmp).map_err(io(&src))?;
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&tmp))?;
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                std::fs::rename(&tmp, &dest).map_err(io(&dest))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
        .map_err(|e| BlobstoreError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?
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
