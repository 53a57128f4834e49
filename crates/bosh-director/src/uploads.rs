//! Getting an uploaded artifact onto local disk: a raw request body streamed to a file with a
//! size cap (never held in memory), or a `{location, sha1}` fetched from `file://` or
//! `http(s)://` and checked against its digest.

use axum::body::Body;
use bosh_types::digest::DigestString;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Bodies larger than this are refused (the reference nginx allows 10000m; we allow more).
pub const MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the upload body")]
    Body(#[source] axum::Error),
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported location '{0}' (expected file://, http:// or https://)")]
    Scheme(String),
    #[error("downloading '{location}'")]
    Download {
        location: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("downloading '{location}': HTTP {status}")]
    DownloadStatus { location: String, status: u16 },
    #[error("invalid digest '{digest}'")]
    BadDigest {
        digest: String,
        #[source]
        source: bosh_types::digest::DigestError,
    },
    #[error("'{location}' does not match the expected digest")]
    DigestMismatch {
        location: String,
        #[source]
        source: bosh_types::digest::DigestError,
    },
}

/// `DIR/tmp/uploads`, where upload bodies wait for their task.
pub fn upload_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tmp").join("uploads")
}

/// A fresh path under the upload directory.
pub fn upload_path(data_dir: &Path, suffix: &str) -> PathBuf {
    upload_dir(data_dir).join(format!("{}{suffix}", uuid::Uuid::new_v4()))
}

/// Streams `body` into `dest` chunk by chunk, refusing more than `limit` bytes. The file is
/// removed when anything fails.
pub async fn body_to_file(body: Body, dest: &Path, limit: u64) -> Result<u64, UploadError> {
    let io = |source| UploadError::Io {
        path: dest.to_owned(),
        source,
    };
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let result = async {
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut stream = body.into_data_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(UploadError::Body)?;
            total += chunk.len() as u64;
            if total > limit {
                return Err(UploadError::TooLarge { limit });
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        Ok(total)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

/// Fetches `location` into `dest` (streamed), then checks `digest` when one is given.
pub async fn location_fetch(
    location: &str,
    digest: Option<&str>,
    dest: &Path,
) -> Result<(), UploadError> {
    let io = |source| UploadError::Io {
        path: dest.to_owned(),
        source,
    };
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    if let Some(path) = location.strip_prefix("file://") {
        tokio::fs::copy(path, dest)
            .await
            .map_err(|source| UploadError::Io {
                path: PathBuf::from(path),
                source,
            })?;
    } else if location.starts_with("http://") || location.starts_with("https://") {
        let download = |source| UploadError::Download {
            location: location.to_owned(),
            source,
        };
        let resp = reqwest::get(location).await.map_err(download)?;
        if !resp.status().is_success() {
            return Err(UploadError::DownloadStatus {
                location: location.to_owned(),
                status: resp.status().as_u16(),
            });
        }
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut stream = resp.bytes_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(download)?;
            total += chunk.len() as u64;
            if total > MAX_UPLOAD_BYTES {
                return Err(UploadError::TooLarge {
                    limit: MAX_UPLOAD_BYTES,
                });
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
    } else {
        return Err(UploadError::Scheme(location.to_owned()));
    }
    if let Some(digest) = digest.filter(|d| !d.is_empty()) {
        digest_check(location, digest, dest).await?;
    }
    Ok(())
}

/// Verifies a file against a digest string (bare SHA-1 hex or `sha256:…`, several joined
/// by `;`), reading it on a blocking thread.
pub async fn digest_check(what: &str, digest: &str, path: &Path) -> Result<(), UploadError> {
    let parsed = DigestString::parse(digest).map_err(|source| UploadError::BadDigest {
        digest: digest.to_owned(),
        source,
    })?;
    let path = path.to_owned();
    let what = what.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|source| UploadError::Io {
            path: path.clone(),
            source,
        })?;
        parsed
            .verify_reader(std::io::BufReader::new(file))
            .map_err(|source| UploadError::DigestMismatch {
                location: what,
                source,
            })
    })
    .await
    .map_err(|e| UploadError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}

/// SHA-256 of a file as `sha256:<hex>`: the content key of the blob index.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}
