//! The S3 blobstore against a real S3-compatible server run in-process (`s3s` with the
//! `s3s-fs` file-system backend, SigV4 authentication on): single and multipart puts,
//! streamed gets, deletes, credential errors, and a director configured with `provider: s3`
//! that stores release blobs in the bucket and still serves them to agents over DAV.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosh_director::blobstore::{BlobReader, Blobstore, BlobstoreError, S3Blobstore};
use bosh_director::config::{BlobstoreConfig, DirectorConfig, S3Config, S3Credentials, UserConfig};
use bosh_director::server::{DirectorOptions, director_start};
use tokio::io::AsyncReadExt;

const ACCESS_KEY: &str = "bosh-rs-test-access";
const SECRET_KEY: &str = "bosh-rs-test-secret-0123456789";
const BUCKET: &str = "bosh-blobs";

/// An S3 server on 127.0.0.1:0 storing objects as files under `root/<bucket>/<key>`.
struct S3Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let http =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        S3Server { addr, root, task }
    }

    fn config(&self, secret: &str) -> S3Config {
        S3Config {
            bucket_name: BUCKET.to_owned(),
            region: "us-east-1".to_owned(),
            endpoint: Some(format!("http://{}", self.addr)),
            force_path_style: true,
            ssl_verify_peer: true,
            credentials: S3Credentials::Static {
                access_key_id: ACCESS_KEY.to_owned(),
                secret_access_key: secret.to_owned(),
            },
        }
    }

    /// Where the server keeps object `key`.
    fn object_path(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
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

#[tokio::test(flavor = "multi_thread")]
async fn s3_put_get_delete_single_and_multipart() {
    let server = S3Server::start().await;
    let store = S3Blobstore::new(&server.config(SECRET_KEY)).unwrap();

    let small = b"hello from bosh-rs".to_vec();
    let n = store
        .put("small-blob", Box::pin(std::io::Cursor::new(small.clone())))
        .await
        .unwrap();
    assert_eq!(n, small.len() as u64);
    assert_eq!(
        std::fs::read(server.object_path("small-blob")).unwrap(),
        small
    );
    assert_eq!(
        read_all(store.get("small-blob").await.unwrap()).await,
        small
    );

    // Larger than two parts: a multipart upload, reassembled by the server.
    let part = bosh_director::blobstore::S3_PART_SIZE;
    let big = pseudo_random(2 * part + 4321, 7);
    let n = store
        .put("big-blob", Box::pin(std::io::Cursor::new(big.clone())))
        .await
        .unwrap();
    assert_eq!(n, big.len() as u64);
    let on_server = std::fs::read(server.object_path("big-blob")).unwrap();
    assert!(on_server == big, "the server holds other bytes");
    assert!(read_all(store.get("big-blob").await.unwrap()).await == big);

    // A file, the way release jobs and packages are stored.
    let file = server.root.path().join("upload.bin");
    std::fs::write(&file, &small).unwrap();
    let id = store.put_file(&file).await.unwrap();
    assert!(store.exists(&id).await.unwrap());

    assert!(store.delete("small-blob").await.unwrap());
    assert!(!store.exists("small-blob").await.unwrap());
    assert!(!store.delete("small-blob").await.unwrap());
    assert!(matches!(
        store.get("small-blob").await,
        Err(BlobstoreError::NotFound(_))
    ));
    assert!(!server.object_path("small-blob").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_bad_credentials_fail_without_showing_the_secret() {
    let server = S3Server::start().await;
    let secret = "not-the-right-secret-value";
    let store = S3Blobstore::new(&server.config(secret)).unwrap();
    let err = store
        .put("blob", Box::pin(std::io::Cursor::new(b"x".to_vec())))
        .await
        .unwrap_err();
    assert!(matches!(err, BlobstoreError::S3 { .. }), "{err:?}");
    let text = bosh_director::error::error_chain(&err);
    assert!(
        text.contains("uploading 'blob'") && text.contains(BUCKET),
        "{text}"
    );
    assert!(!text.contains(secret) && !format!("{err:?}").contains(secret));
    assert!(!server.object_path("blob").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn director_with_s3_blobstore_stores_release_blobs_and_serves_them_over_dav() {
    let server = S3Server::start().await;
    let dir = common::data_dir();
    let password = "s3-director-password";
    let config = DirectorConfig {
        users: vec![UserConfig {
            name: "admin".to_owned(),
            password: password.to_owned(),
        }],
        blobstore: BlobstoreConfig::S3(server.config(SECRET_KEY)),
        ..DirectorConfig::default()
    };
    let opts = DirectorOptions::new(dir.path().to_owned(), "127.0.0.1:0", "sim", config);
    let running = director_start(opts).await.unwrap();
    let ca = std::fs::read(&running.ca_cert_path).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", running.url);

    let tarball = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/kv-release-expected/kv-0+dev.1.tgz");
    let resp = client
        .post(url("/releases"))
        .basic_auth("admin", Some(password))
        .header("Content-Type", "application/x-compressed")
        .body(std::fs::read(&tarball).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let task: serde_json::Value = loop {
        let task: serde_json::Value = client
            .get(url(&location))
            .basic_auth("admin", Some(password))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ["done", "error"].contains(&task["state"].as_str().unwrap()) {
            break task;
        }
        assert!(Instant::now() < deadline, "upload stuck: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task["state"], "done", "{task}");

    let inspect: serde_json::Value = client
        .get(url("/releases/kv?version=0%2Bdev.1"))
        .basic_auth("admin", Some(password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dav = &running.state.dav;
    let mut checked = 0;
    for item in inspect["packages"]
        .as_array()
        .unwrap()
        .iter()
        .chain(inspect["jobs"].as_array().unwrap())
    {
        let id = item["blobstore_id"].as_str().unwrap();
        // In the bucket, not in the data dir.
        assert!(server.object_path(id).is_file(), "{id} not in the bucket");
        // Agents fetch it from the director's DAV endpoint, streamed from S3.
        let prefix = bosh_director::blobstore::blob_prefix(id);
        let resp = client
            .get(url(&format!("/blobstore/{prefix}/{id}")))
            .basic_auth(&dav.user, Some(&dav.password))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "DAV GET {id}");
        let body = resp.bytes().await.unwrap();
        let digest =
            bosh_types::digest::DigestString::parse(item["sha1"].as_str().unwrap()).unwrap();
        digest
            .verify_reader(std::io::Cursor::new(body.to_vec()))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} blobs checked");
    let local = dir.path().join("blobstore");
    let local_files = std::fs::read_dir(&local)
        .map(|d| {
            d.filter(|e| e.as_ref().unwrap().file_name() != ".tmp")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(local_files, 0, "blobs leaked into {}", local.display());

    // A missing blob is a 404 over DAV, not a server error.
    let resp = client
        .get(url(&format!(
            "/blobstore/{}/no-such-blob",
            bosh_director::blobstore::blob_prefix("no-such-blob")
        )))
        .basic_auth(&dav.user, Some(&dav.password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    running.shutdown().await;
}
