//! Blob downloads for apply/prepare: the `dav` layout (`<endpoint>/<2 hex>/<id>`, basic
//! auth), a `local` directory, or a signed URL; every download is checked against its
//! multi-digest before use.

use bosh_agent_protocol::settings::BlobstoreSettings;
use bosh_types::digest::DigestString;
use sha1::{Digest as _, Sha1};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum BlobstoreError {
    #[error("blobstore provider '{0}' is not supported")]
    Provider(String),
    #[error("blobstore option '{0}' is missing")]
    Option(&'static str),
    #[error("Getting blob {id}")]
    Http {
        id: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Getting blob {id}: HTTP status {status}")]
    Status { id: String, status: u16 },
    #[error("Getting blob {id}")]
    Io {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Checking downloaded blob '{id}'")]
    Digest {
        id: String,
        #[source]
        source: bosh_types::digest::DigestError,
    },
    #[error("Putting blob {id}")]
    PutHttp {
        id: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Putting blob {id}: HTTP status {status}")]
    PutStatus { id: String, status: u16 },
    #[error("Putting blob {id}")]
    PutIo {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
}

#[derive(Debug, Clone)]
enum Provider {
    Dav {
        endpoint: String,
        user: Option<String>,
        password: Option<String>,
    },
    Local {
        path: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct BlobstoreClient {
    provider: Provider,
    http: reqwest::Client,
    /// Directories read before the provider (sensitive blobs, local blobs): the real agent's
    /// blobstore cascade.
    local_dirs: Vec<PathBuf>,
}

/// The object path of `id` in a dav blobstore: first byte of sha1(id) in hex, then the id.
pub fn dav_path(id: &str) -> String {
    let digest = Sha1::digest(id.as_bytes());
    format!("{:02x}/{id}", digest[0])
}

impl BlobstoreClient {
    pub fn from_settings(settings: &BlobstoreSettings) -> Result<BlobstoreClient, BlobstoreError> {
        let opt = |k: &str| {
            settings
                .options
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let mut http = reqwest::Client::builder().use_rustls_tls();
        // Newer dav CLIs accept a CA for a self-signed blobstore endpoint.
        if let Some(ca) = settings
            .options
            .get("tls")
            .and_then(|t| t.pointer("/cert/ca"))
            .and_then(|v| v.as_str())
        {
            let cert =
                reqwest::Certificate::from_pem(ca.as_bytes()).map_err(BlobstoreError::Client)?;
            http = http.add_root_certificate(cert);
        }
        let http = http.build().map_err(BlobstoreError::Client)?;
        let provider = match settings.provider.as_str() {
            "dav" => Provider::Dav {
                endpoint: opt("endpoint").ok_or(BlobstoreError::Option("endpoint"))?,
                user: opt("user"),
                password: opt("password"),
            },
            "local" => Provider::Local {
                path: opt("blobstore_path")
                    .ok_or(BlobstoreError::Option("blobstore_path"))?
                    .into(),
            },
            other => return Err(BlobstoreError::Provider(other.to_owned())),
        };
        Ok(BlobstoreClient {
            provider,
            http,
            local_dirs: Vec::new(),
        })
    }

    /// Serves blobs found in `dirs` (by id) before asking the provider.
    pub fn with_local_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.local_dirs = dirs;
        self
    }

    /// Uploads `src` under a new UUID blob id; returns the id.
    pub async fn put(&self, src: &Path) -> Result<String, BlobstoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let io = |source| BlobstoreError::PutIo {
            id: id.clone(),
            source,
        };
        match &self.provider {
            Provider::Local { path } => {
                tokio::fs::create_dir_all(path).await.map_err(io)?;
                tokio::fs::copy(src, path.join(&id)).await.map_err(io)?;
            }
            Provider::Dav {
                endpoint,
                user,
                password,
            } => {
                let body = tokio::fs::read(src).await.map_err(io)?;
                let url = format!("{}/{}", endpoint.trim_end_matches('/'), dav_path(&id));
                let mut req = self.http.put(url).body(body);
                if let Some(u) = user {
                    req = req.basic_auth(u, password.clone());
                }
                let resp = req.send().await.map_err(|source| BlobstoreError::PutHttp {
                    id: id.clone(),
                    source,
                })?;
                let status = resp.status().as_u16();
                if status != 201 && status != 204 {
                    return Err(BlobstoreError::PutStatus { id, status });
                }
            }
        }
        Ok(id)
    }

    /// Downloads blob `id` to `dest` and verifies it against `digest`.
    pub async fn fetch(&self, id: &str, digest: &str, dest: &Path) -> Result<(), BlobstoreError> {
        let local = self
            .local_dirs
            .iter()
            .map(|d| d.join(id))
            .find(|p| !id.is_empty() && !id.contains('/') && p.is_file());
        if let Some(local) = local {
            tokio::fs::copy(&local, dest)
                .await
                .map_err(|source| BlobstoreError::Io {
                    id: id.to_owned(),
                    source,
                })?;
            return verify(id, digest, dest).await;
        }
        match &self.provider {
            Provider::Local { path } => {
                let io = |source| BlobstoreError::Io {
                    id: id.to_owned(),
                    source,
                };
                tokio::fs::copy(path.join(id), dest).await.map_err(io)?;
            }
            Provider::Dav {
                endpoint,
                user,
                password,
            } => {
                let url = format!("{}/{}", endpoint.trim_end_matches('/'), dav_path(id));
                let mut req = self.http.get(url);
                if let Some(u) = user {
                    req = req.basic_auth(u, password.clone());
                }
                download(req, id, dest).await?;
            }
        }
        verify(id, digest, dest).await
    }

    /// Downloads a signed URL (with the director's extra headers) and verifies it.
    pub async fn fetch_url(
        &self,
        id: &str,
        url: &str,
        headers: &BTreeMap<String, String>,
        digest: &str,
        dest: &Path,
    ) -> Result<(), BlobstoreError> {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        download(req, id, dest).await?;
        verify(id, digest, dest).await
    }
}

async fn download(
    req: reqwest::RequestBuilder,
    id: &str,
    dest: &Path,
) -> Result<(), BlobstoreError> {
    let http = |source| BlobstoreError::Http {
        id: id.to_owned(),
        source,
    };
    let io = |source| BlobstoreError::Io {
        id: id.to_owned(),
        source,
    };
    let mut resp = req.send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(BlobstoreError::Status {
            id: id.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)
}

pub(crate) async fn verify(id: &str, digest: &str, path: &Path) -> Result<(), BlobstoreError> {
    let (id, digest, path) = (id.to_owned(), digest.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        let parsed = DigestString::parse(&digest).map_err(|source| BlobstoreError::Digest {
            id: id.clone(),
            source,
        })?;
        let file = std::fs::File::open(&path).map_err(|source| BlobstoreError::Io {
            id: id.clone(),
            source,
        })?;
        parsed
            .verify_reader(std::io::BufReader::new(file))
            .map_err(|source| BlobstoreError::Digest { id, source })
    })
    .await
    .unwrap_or_else(|e| {
        Err(BlobstoreError::Io {
            id: String::new(),
            source: std::io::Error::other(e),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dav_paths_use_the_first_sha1_byte() {
        // sha1("abc") = a9993e36...
        assert_eq!(dav_path("abc"), "a9/abc");
    }

    #[tokio::test]
    async fn local_blobs_are_verified() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b1"), b"abc").unwrap();
        let settings: BlobstoreSettings = serde_json::from_value(
            json!({"provider": "local", "options": {"blobstore_path": dir.path()}}),
        )
        .unwrap();
        let bs = BlobstoreClient::from_settings(&settings).unwrap();
        let dest = dir.path().join("out");
        bs.fetch("b1", "a9993e364706816aba3e25717850c26c9cd0d89d", &dest)
            .await
            .unwrap();
        let err = bs.fetch("b1", "sha256:00", &dest).await.unwrap_err();
        assert!(matches!(err, BlobstoreError::Digest { .. }), "{err:?}");
        let err = BlobstoreClient::from_settings(&BlobstoreSettings {
            provider: "s3".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "blobstore provider 's3' is not supported");
    }
}
