//! The S3 backend, through `object_store`: any S3-compatible service.
//!
//! Objects are keyed by the bare blob id at the bucket root, as the real director's S3
//! blobstore keys them. Uploads stream: a blob that fits in one part goes up in a single PUT,
//! a larger one as a multipart upload of [`PART_SIZE`] parts with at most
//! [`PARTS_IN_FLIGHT`] in flight, so a put holds at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE`
//! bytes whatever the blob's size. Gets stream the response body.

use async_trait::async_trait;
use bytes::BytesMut;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_util::io::StreamReader;

use super::{BlobReader, Blobstore, BlobstoreError, blob_id_valid};
use crate::config::{S3Config, S3Credentials};

/// Multipart part size: above S3's 5 MiB minimum, small enough to keep a put's memory flat.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Blobs in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Blobstore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
}

impl S3Blobstore {
    /// A client for the configured bucket. Nothing is contacted until the first request.
    pub fn new(config: &S3Config) -> Result<S3Blobstore, BlobstoreError> {
        let mut builder = match &config.credentials {
            // AWS_ACCESS_KEY_ID and friends, else the instance profile (object_store's chain).
            S3Credentials::EnvOrProfile => AmazonS3Builder::from_env(),
            _ => AmazonS3Builder::new(),
        }
        .with_bucket_name(&config.bucket_name)
        .with_region(&config.region);
        match &config.credentials {
            S3Credentials::Static {
                access_key_id,
                secret_access_key,
            } => {
                builder = builder
                    .with_access_key_id(access_key_id)
                    .with_secret_access_key(secret_access_key);
            }
            S3Credentials::None => builder = builder.with_skip_signature(true),
            S3Credentials::EnvOrProfile => {}
        }
        let plain_http = config
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(if config.force_path_style {
                endpoint.clone()
            } else {
                // object_store wants the bucket already in a virtual-hosted endpoint.
                virtual_hosted_endpoint(endpoint, &config.bucket_name)
            });
        }
        let client = ClientOptions::new()
            .with_allow_http(plain_http)
            .with_allow_invalid_certificates(!config.ssl_verify_peer)
            .with_connect_timeout(Duration::from_secs(10))
            // The whole request, body included: room for a multi-GiB blob on a slow link.
            .with_timeout(Duration::from_secs(3600));
        let store = builder
            .with_virtual_hosted_style_request(!config.force_path_style)
            .with_client_options(client)
            .build()
            .map_err(|e| BlobstoreError::S3Setup(Box::new(e)))?;
        Ok(S3Blobstore {
            store: Arc::new(store),
            bucket: config.bucket_name.clone(),
        })
    }

    /// Any `object_store` backend under this blobstore's streaming and error rules (tests use
    /// the in-memory store to check the multipart path without a server).
    pub fn with_store(store: Arc<dyn ObjectStore>, bucket: &str) -> S3Blobstore {
        S3Blobstore {
            store,
            bucket: bucket.to_owned(),
        }
    }

    fn key(&self, id: &str) -> Result<ObjectPath, BlobstoreError> {
        if !blob_id_valid(id) {
            return Err(BlobstoreError::InvalidId(id.to_owned()));
        }
        Ok(ObjectPath::from(id))
    }

    fn error(&self, op: &'static str, id: &str, source: object_store::Error) -> BlobstoreError {
        match source {
            object_store::Error::NotFound { .. } => BlobstoreError::NotFound(id.to_owned()),
            source => BlobstoreError::S3 {
                op,
                id: id.to_owned(),
                bucket: self.bucket.clone(),
                source: Box::new(source),
            },
        }
    }

    async fn put_multipart(
        &self,
        id: &str,
        key: &ObjectPath,
        first: bytes::Bytes,
        reader: &mut BlobReader,
    ) -> Result<u64, BlobstoreError> {
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.error("starting the upload of", id, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut total = first.len() as u64;
        writer.put(first);
        let result: Result<(), BlobstoreError> = async {
            loop {
                let part = part_read(reader, id).await?;
                if part.is_empty() {
                    return Ok(());
                }
                total += part.len() as u64;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.error("uploading a part of", id, e))?;
                writer.put(part.freeze());
            }
        }
        .await;
        if let Err(e) = result {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(blob = %id, error = %crate::error::error_chain(&abort),
                    "cannot abort a failed multipart upload");
            }
            return Err(e);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.error("completing the upload of", id, e))?;
        Ok(total)
    }
}

/// Reads up to one part: fewer bytes only at the end of the blob.
async fn part_read(reader: &mut BlobReader, id: &str) -> Result<BytesMut, BlobstoreError> {
    let mut buf = BytesMut::with_capacity(PART_SIZE);
    while buf.len() < PART_SIZE {
        let n = reader
            .read_buf(&mut buf)
            .await
            .map_err(|source| BlobstoreError::Io {
                path: id.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
    }
    Ok(buf)
}

/// `scheme://bucket.host[:port]` from `scheme://host[:port]`.
fn virtual_hosted_endpoint(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

#[async_trait]
impl Blobstore for S3Blobstore {
    async fn put(&self, id: &str, mut reader: BlobReader) -> Result<u64, BlobstoreError> {
        let key = self.key(id)?;
        let first = part_read(&mut reader, id).await?;
        if first.len() < PART_SIZE {
            let n = first.len() as u64;
            self.store
                .put(&key, PutPayload::from(first.freeze()))
                .await
                .map_err(|e| self.error("uploading", id, e))?;
            return Ok(n);
        }
        self.put_multipart(id, &key, first.freeze(), &mut reader)
            .await
    }

    async fn get(&self, id: &str) -> Result<BlobReader, BlobstoreError> {
        let key = self.key(id)?;
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|e| self.error("downloading", id, e))?;
        let stream = result.into_stream().map_err(std::io::Error::other);
        Ok(Box::pin(StreamReader::new(stream)))
    }

    async fn delete(&self, id: &str) -> Result<bool, BlobstoreError> {
        // S3 answers a DELETE of a missing key with success; ask first to report it.
        if !self.exists(id).await? {
            return Ok(false);
        }
        let key = self.key(id)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(self.error("deleting", id, e)),
        }
    }

    async fn exists(&self, id: &str) -> Result<bool, BlobstoreError> {
        let key = self.key(id)?;
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("looking up", id, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    async fn read_all(mut r: BlobReader) -> Vec<u8> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    // object_store's in-memory backend, not an S3 server: this checks our part splitting
    // and error mapping; tests/blobstore_s3.rs checks the S3 wire against s3s.
    #[tokio::test]
    async fn in_memory_single_and_multipart_round_trip() {
        let store = S3Blobstore::with_store(Arc::new(InMemory::new()), "mem");
        for (id, len) in [
            ("small", 10),
            ("exact-part", PART_SIZE),
            ("three-parts", 2 * PART_SIZE + 12345),
        ] {
            let data = bytes(len, len as u64);
            let n = store
                .put(id, Box::pin(std::io::Cursor::new(data.clone())))
                .await
                .unwrap();
            assert_eq!(n, len as u64, "{id}");
            assert!(store.exists(id).await.unwrap());
            assert!(read_all(store.get(id).await.unwrap()).await == data, "{id}");
        }
        assert!(store.delete("small").await.unwrap());
        assert!(!store.delete("small").await.unwrap());
        assert!(matches!(
            store.get("small").await,
            Err(BlobstoreError::NotFound(_))
        ));
        assert!(matches!(
            store
                .put("../x", Box::pin(std::io::Cursor::new(vec![])))
                .await,
            Err(BlobstoreError::InvalidId(_))
        ));
    }

    #[test]
    fn virtual_hosted_endpoint_puts_the_bucket_in_the_host() {
        assert_eq!(
            virtual_hosted_endpoint("https://minio.example:9000", "b"),
            "https://b.minio.example:9000"
        );
    }
}
