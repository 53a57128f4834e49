//! `POST /releases?rebase=true`: a dev release is stored as the next dev version after the
//! latest one on the director, its jobs and packages deduplicated as usual; with `fix` it also
//! restores missing blobs; a final release is refused. Driven over HTTPS against a director
//! started in-process on port 0.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bosh_director::config::{DirectorConfig, UserConfig};
use bosh_director::server::{DirectorOptions, RunningDirector, director_start};
use serde_json::Value;

const PASSWORD: &str = "rebase-test-password";

fn kv_expected(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/kv-release-expected")
        .join(name)
}

struct Director {
    running: Option<RunningDirector>,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Director {
    async fn start() -> Director {
        let dir = common::data_dir();
        let config = DirectorConfig {
            users: vec![UserConfig {
                name: "admin".to_owned(),
                password: PASSWORD.to_owned(),
            }],
            ..DirectorConfig::default()
        };
        let opts = DirectorOptions::new(dir.path().to_owned(), "127.0.0.1:0", "sim", config);
        let running = director_start(opts).await.expect("director starts");
        let ca = std::fs::read(&running.ca_cert_path).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Director {
            running: Some(running),
            client,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.as_ref().unwrap().url)
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(self.url(path))
            .basic_auth("admin", Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// Uploads a tarball as a raw body with `query`; returns the finished task.
    async fn upload(&self, tarball: &Path, query: &str) -> Value {
        let body = tokio::fs::read(tarball).await.unwrap();
        let resp = self
            .client
            .post(self.url(&format!("/releases{query}")))
            .basic_auth("admin", Some(PASSWORD))
            .header("Content-Type", "application/x-compressed")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let task = self.json(&location).await;
            if ["done", "error", "cancelled"].contains(&task["state"].as_str().unwrap()) {
                return task;
            }
            assert!(Instant::now() < deadline, "task stuck: {task}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn upload_ok(&self, tarball: &Path, query: &str) -> String {
        let task = self.upload(tarball, query).await;
        assert_eq!(task["state"], "done", "{task}");
        task["result"].as_str().unwrap().to_owned()
    }

    async fn versions(&self, name: &str) -> Vec<String> {
        let releases = self.json("/releases").await;
        releases
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == name)
            .flat_map(|r| r["release_versions"].as_array().unwrap().clone())
            .map(|v| v["version"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Blob files in the local blobstore.
    fn blobs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for prefix in std::fs::read_dir(self.dir.path().join("blobstore")).unwrap() {
            let prefix = prefix.unwrap();
            if prefix.file_name() != ".tmp" {
                for f in std::fs::read_dir(prefix.path()).unwrap() {
                    out.push(f.unwrap().path());
                }
            }
        }
        out.sort();
        out
    }

    async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A copy of `src` whose `release.MF` says `version`.
fn tarball_with_version(src: &Path, version: &str, work: &Path) -> PathBuf {
    let dir = work.join(format!("unpacked-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(src)
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let mf = dir.join("release.MF");
    let text: Vec<String> = std::fs::read_to_string(&mf)
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {version}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(&mf, text.join("\n") + "\n").unwrap();
    let out = work.join(format!("kv-{version}.tgz"));
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

fn package_blob_ids(inspect: &Value) -> Vec<String> {
    let mut ids: Vec<String> = inspect["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["blobstore_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn rebase_stores_the_next_dev_version_and_shares_blobs() {
    let d = Director::start().await;
    let dev1 = kv_expected("kv-0+dev.1.tgz");

    // Nothing stored yet: the uploaded dev version's post-release becomes dev.1.
    let dev7 = tarball_with_version(&dev1, "0+dev.7", d.dir.path());
    assert_eq!(
        d.upload_ok(&dev7, "?rebase=true").await,
        "Created release 'kv/0+dev.1'"
    );
    let blobs = d.blobs();
    assert!(!blobs.is_empty());

    // The same tarball again: the next dev version, no new blob.
    assert_eq!(
        d.upload_ok(&dev1, "?rebase=true").await,
        "Created release 'kv/0+dev.2'"
    );
    assert_eq!(d.versions("kv").await, ["0+dev.1", "0+dev.2"]);
    assert_eq!(d.blobs(), blobs, "a rebased upload stored duplicate blobs");
    let first = d.json("/releases/kv?version=0%2Bdev.1").await;
    let second = d.json("/releases/kv?version=0%2Bdev.2").await;
    assert_eq!(package_blob_ids(&first), package_blob_ids(&second));

    // Without rebase the same tarball is its own version, already stored: nothing new.
    d.upload_ok(&dev1, "").await;
    assert_eq!(d.versions("kv").await, ["0+dev.1", "0+dev.2"]);

    // A final version is the latest of its release segment: a dev on top gets `+dev.1`.
    d.upload_ok(&kv_expected("kv-1.0.0.tgz"), "").await;
    let on_final = tarball_with_version(&dev1, "1.0.0+dev.9", d.dir.path());
    assert_eq!(
        d.upload_ok(&on_final, "?rebase=true").await,
        "Created release 'kv/1.0.0+dev.1'"
    );
    // Other release segments do not count.
    assert_eq!(
        d.upload_ok(&dev7, "?rebase=true").await,
        "Created release 'kv/0+dev.3'"
    );
    assert_eq!(
        d.versions("kv").await,
        ["0+dev.1", "0+dev.2", "0+dev.3", "1.0.0", "1.0.0+dev.1"]
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebase_with_fix_restores_missing_blobs() {
    let d = Director::start().await;
    let dev1 = kv_expected("kv-0+dev.1.tgz");
    d.upload_ok(&dev1, "").await;
    let inspect = d.json("/releases/kv?version=0%2Bdev.1").await;
    let id = package_blob_ids(&inspect)[0].clone();
    let lost = d
        .blobs()
        .into_iter()
        .find(|p| p.file_name().unwrap() == id.as_str())
        .expect("the package blob is in the local blobstore");
    std::fs::remove_file(&lost).unwrap();

    // Rebase alone reuses the stored package as it is: the blob stays missing.
    assert_eq!(
        d.upload_ok(&dev1, "?rebase=true").await,
        "Created release 'kv/0+dev.2'"
    );
    assert!(!lost.exists());

    // With fix the blob comes back, under the same id, and the version still moves on.
    assert_eq!(
        d.upload_ok(&dev1, "?rebase=true&fix=true").await,
        "Created release 'kv/0+dev.3'"
    );
    assert!(lost.is_file(), "fix did not restore {}", lost.display());
    let third = d.json("/releases/kv?version=0%2Bdev.3").await;
    assert_eq!(package_blob_ids(&third), package_blob_ids(&inspect));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rebase_of_a_final_release_is_refused() {
    let d = Director::start().await;
    d.upload_ok(&kv_expected("kv-0+dev.1.tgz"), "").await;
    let task = d.upload(&kv_expected("kv-1.0.0.tgz"), "?rebase=true").await;
    assert_eq!(task["state"], "error", "{task}");
    let message = task["result"].as_str().unwrap();
    assert!(
        message.contains("'1.0.0' is a final version") && message.contains("Rebase"),
        "{message}"
    );
    assert_eq!(d.versions("kv").await, ["0+dev.1"]);
    d.shutdown().await;
}
