//! Stemcells, releases, package matching, events, resources and the agents' DAV blobstore,
//! against the real `bosh-director` binary (SQLite; PostgreSQL too when
//! `BOSH_RS_TEST_POSTGRES_URL` is set).

mod common;
use common::*;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn upstream(name: &str) -> PathBuf {
    fixtures().join("upstream").join(name)
}

struct Director {
    child: Child,
    url: String,
    dir: PathBuf,
    client: reqwest::Client,
    password: String,
}

impl Drop for Director {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn director_spawn(dir: &Path, config: Option<&str>) -> Director {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosh-director"));
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--cpi", "sim"]);
    if let Some(text) = config {
        let path = dir.join("director.yml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let url = line
        .strip_prefix("Director listening on ")
        .unwrap()
        .to_owned();
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let creds = std::fs::read_to_string(dir.join("credentials.yml")).unwrap_or_default();
    let password = creds
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap_or("")
        .to_owned();
    Director {
        child,
        url,
        dir: dir.to_owned(),
        client,
        password,
    }
}

impl Director {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .basic_auth("admin", Some(&self.password))
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self.req(reqwest::Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    async fn task_id(resp: reqwest::Response) -> i64 {
        let status = resp.status();
        if status != 302 {
            panic!("expected 302, got {status}: {}", resp.text().await.unwrap());
        }
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        loc.strip_prefix("/tasks/").unwrap().parse().unwrap()
    }

    async fn task_wait(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let task = self.json(&format!("/tasks/{id}")).await;
            let state = task["state"].as_str().unwrap().to_owned();
            if ["done", "error", "cancelled"].contains(&state.as_str()) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} stuck in {state}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Uploads a tarball as a raw body; returns the finished task.
    async fn upload(&self, what: &str, tarball: &Path, query: &str) -> Value {
        let file = tokio::fs::File::open(tarball).await.unwrap();
        let len = file.metadata().await.unwrap().len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let resp = self
            .req(reqwest::Method::POST, &format!("/{what}{query}"))
            .header("Content-Type", "application/x-compressed")
            .header("Content-Length", len)
            .body(body)
            .send()
            .await
            .unwrap();
        let id = Self::task_id(resp).await;
        self.task_wait(id).await
    }

    async fn upload_ok(&self, what: &str, tarball: &Path) -> Value {
        let task = self.upload(what, tarball, "").await;
        assert_eq!(task["state"], "done", "{}: {task}", tarball.display());
        task
    }

    async fn upload_refused(&self, what: &str, tarball: &Path, needle: &str) {
        let task = self.upload(what, tarball, "").await;
        assert_eq!(task["state"], "error", "{}: {task}", tarball.display());
        let result = task["result"].as_str().unwrap();
        assert!(
            result.contains(needle),
            "{}: error '{result}' should name '{needle}'",
            tarball.display()
        );
    }

    async fn start(&self, method: reqwest::Method, path: &str) -> Value {
        let resp = self.req(method, path).send().await.unwrap();
        let id = Self::task_id(resp).await;
        self.task_wait(id).await
    }

    /// Files in the local blobstore (the agents' DAV layout).
    fn blob_count(&self) -> usize {
        let root = self.dir.join("blobstore");
        let mut n = 0;
        for prefix in std::fs::read_dir(&root).unwrap() {
            let prefix = prefix.unwrap();
            if prefix.file_name() == ".tmp" {
                continue;
            }
            n += std::fs::read_dir(prefix.path()).unwrap().count();
        }
        n
    }
}

fn versions_of(releases: &Value, name: &str) -> Vec<String> {
    releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| {
            r["release_versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn releases_scenario(d: &Director) {
    // Everything the upstream director's own tests upload.
    for name in [
        "test_release.tgz",
        "sha1_release.tgz",
        "dummy-release.tgz",
        "bosh-release-0+dev.1.tgz",
        "unsorted-release-0+dev.1.tgz",
        "release-test_release-1-on-centos-7-stemcell-3001.tgz",
        "release-test_release-1-on-centos-7-stemcell-3001_without_dot_slash_prefix.tgz",
        "test_release_with_modified_fingerprint_for_pkg_1.tgz",
    ] {
        d.upload_ok("releases", &upstream(name)).await;
    }
    let kv = fixtures().join("kv-release-expected");
    d.upload_ok("releases", &kv.join("kv-0+dev.1.tgz")).await;
    let blobs_before_kv1 = d.blob_count();
    d.upload_ok("releases", &kv.join("kv-1.0.0.tgz")).await;
    // kv 1.0.0 shares every package and job with 0+dev.1: no new blob.
    assert_eq!(
        d.blob_count(),
        blobs_before_kv1,
        "second kv version stored duplicate blobs"
    );

    let releases = d.json("/releases").await;
    assert_eq!(versions_of(&releases, "test_release"), ["1"]);
    assert_eq!(versions_of(&releases, "dummy"), ["0.2-dev"]);
    assert_eq!(versions_of(&releases, "bosh-release"), ["0+dev.1"]);
    assert_eq!(versions_of(&releases, "unsorted-release"), ["0+dev.1"]);
    assert_eq!(versions_of(&releases, "kv"), ["0+dev.1", "1.0.0"]);
    assert_eq!(
        versions_of(
            &releases,
            "test_release_with_modified_fingerprint_for_pkg_1"
        ),
        ["2"]
    );
    let kv_entry = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "kv")
        .unwrap();
    let v = &kv_entry["release_versions"][1];
    assert_eq!(v["currently_deployed"], false);
    assert!(v["uncommitted_changes"].is_boolean());
    let mut jobs: Vec<&str> = v["job_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    jobs.sort();
    assert_eq!(jobs, ["kv-server", "kv-smoke"]);

    // pkg_1 of test_release keeps its fingerprint and blob; compiled packages were added.
    let inspect = d.json("/releases/test_release?version=1").await;
    let pkg1 = inspect["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pkg_1")
        .unwrap();
    assert_eq!(
        pkg1["fingerprint"],
        "16b4c8ef1574b3f98303307caad40227c208371f"
    );
    assert!(!pkg1["blobstore_id"].as_str().unwrap().is_empty());
    assert_eq!(pkg1["compiled_packages"][0]["stemcell"], "centos-7/3001");
    let modified = d
        .json("/releases/test_release_with_modified_fingerprint_for_pkg_1?version=2")
        .await;
    let mpkg1 = modified["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pkg_1")
        .unwrap();
    assert_eq!(
        mpkg1["fingerprint"],
        "this-is-a-made-up-fingerprint-for-test"
    );
    let kv_inspect = d.json("/releases/kv?version=1.0.0").await;
    let server = kv_inspect["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "kv-server")
        .unwrap();
    assert_eq!(server["provides"][0]["name"], "kv");

    // Refused tarballs name what is wrong.
    d.upload_refused(
        "releases",
        &upstream("release_invalid_checksum.tgz"),
        "digest",
    )
    .await;
    d.upload_refused("releases", &upstream("release_invalid_jobs.tgz"), "job")
        .await;
    d.upload_refused("releases", &upstream("release_no_name.tgz"), "name")
        .await;
    d.upload_refused("releases", &upstream("release_no_version.tgz"), "version")
        .await;

    // Package matching, then a trimmed upload (the packages left out of the tarball).
    let mf = std::fs::read_to_string(kv.join("release-1.0.0.MF")).unwrap();
    let resp = d
        .req(reqwest::Method::POST, "/packages/matches")
        .header("Content-Type", "text/yaml")
        .body(mf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let matches: Vec<String> = resp.json().await.unwrap();
    assert_eq!(matches.len(), 3, "{matches:?}");
    let trimmed = trimmed_kv_tarball(&d.dir, "9.9.9");
    d.upload_ok("releases", &trimmed).await;
    assert_eq!(
        versions_of(&d.json("/releases").await, "kv"),
        ["0+dev.1", "1.0.0", "9.9.9"]
    );
    let inspect = d.json("/releases/kv?version=9.9.9").await;
    for p in inspect["packages"].as_array().unwrap() {
        assert!(!p["blobstore_id"].as_str().unwrap().is_empty(), "{p}");
    }

    // Delete one version, then the whole release; blobs shared with other versions stay.
    let blobs = d.blob_count();
    let task = d
        .start(reqwest::Method::DELETE, "/releases/kv?version=9.9.9")
        .await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(d.blob_count(), blobs);
    let task = d.start(reqwest::Method::DELETE, "/releases/kv").await;
    assert_eq!(task["state"], "done", "{task}");
    assert!(versions_of(&d.json("/releases").await, "kv").is_empty());
    assert!(d.blob_count() < blobs, "deleting kv freed no blob");
    let resp = d
        .req(reqwest::Method::DELETE, "/releases/kv")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Events: the uploads and deletes were recorded.
    let events = d.json("/events?object_type=release&action=delete").await;
    let events = events.as_array().unwrap();
    assert!(events.len() >= 4, "{events:?}");
    assert!(events[0]["id"].is_string() && events[0]["task"].is_string());
    assert!(events[0]["timestamp"].is_i64());
    assert_eq!(events[0]["user"], "admin");
    let created = d
        .json("/events?object_type=release&object_name=kv&action=create")
        .await;
    assert!(!created.as_array().unwrap().is_empty());
    // Begin events are named too, once the tarball told the name.
    for e in created.as_array().unwrap() {
        if let Some(parent) = e["parent_id"].as_str() {
            let begin = d.json(&format!("/events/{parent}")).await;
            assert_eq!(begin["object_name"], "kv", "{begin}");
        }
    }
    let failed = d.json("/events?object_type=release").await;
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["error"].as_str().is_some_and(|m| m.contains("digest")))
    );
}

/// kv 1.0.0 renamed to `version` with every package archive left out, as the CLI sends
/// after `/packages/matches`.
fn trimmed_kv_tarball(dir: &Path, version: &str) -> PathBuf {
    let src = fixtures().join("kv-release-expected/kv-1.0.0.tgz");
    let work = dir.join("trim");
    std::fs::create_dir_all(&work).unwrap();
    let ok = Command::new("tar")
        .arg("xzf")
        .arg(&src)
        .arg("-C")
        .arg(&work)
        .status()
        .unwrap();
    assert!(ok.success());
    let mf = work.join("release.MF");
    let text = std::fs::read_to_string(&mf).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                format!("version: {version}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&mf, text + "\n").unwrap();
    std::fs::remove_dir_all(work.join("packages")).unwrap();
    let out = dir.join(format!("kv-{version}-trimmed.tgz"));
    let ok = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&work)
        .args(["release.MF", "jobs"])
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

async fn stemcells_scenario(d: &Director) {
    let resp = d
        .req(reqwest::Method::POST, "/stemcell_uploads")
        .json(&serde_json::json!({"stemcell": {"name": "ubuntu-stemcell", "version": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["needed"], true);

    let task = d
        .upload_ok("stemcells", &upstream("valid_stemcell.tgz"))
        .await;
    // The task's CPI log has the CPI request and response (`bosh task N --cpi`).
    let cpi_log = d
        .req(
            reqwest::Method::GET,
            &format!("/tasks/{}/output?type=cpi", task["id"]),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        cpi_log.contains(r#"request: {"method":"create_stemcell","arguments":["#)
            && cpi_log.contains(r#"response: {"result":""#),
        "{cpi_log}"
    );
    d.upload_ok(
        "stemcells",
        &upstream("light-bosh-stemcell-3001-aws-xen-centos-7-go_agent.tgz"),
    )
    .await;
    d.upload_refused(
        "stemcells",
        &upstream("stemcell_invalid_mf.tgz"),
        "stemcell.MF",
    )
    .await;
    d.upload_refused("stemcells", &upstream("stemcell_no_image.tgz"), "image")
        .await;
    // The same stemcell again is refused, and accepted with fix.
    d.upload_refused(
        "stemcells",
        &upstream("valid_stemcell.tgz"),
        "already exists",
    )
    .await;
    let fixed = d
        .upload("stemcells", &upstream("valid_stemcell.tgz"), "?fix=true")
        .await;
    assert_eq!(fixed["state"], "done", "{fixed}");

    let list = d.json("/stemcells").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    for s in list {
        assert!(s["version"].is_string() && s["id"].is_i64(), "{s}");
        assert!(!s["cid"].as_str().unwrap().is_empty());
        assert_eq!(s["deployments"], serde_json::json!([]));
        // The sim CPI recorded the stemcell under its root.
        let cid = s["cid"].as_str().unwrap();
        assert!(d.dir.join("sim-cpi/stemcells").join(cid).is_dir(), "{cid}");
    }
    let (name, version) = (
        list[0]["name"].as_str().unwrap().to_owned(),
        list[0]["version"].as_str().unwrap().to_owned(),
    );
    let resp = d
        .req(reqwest::Method::POST, "/stemcell_uploads")
        .json(&serde_json::json!({"stemcell": {"name": name, "version": version}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["needed"], false);

    // Upload by location (file://) with a wrong digest is refused.
    let resp = d
        .req(reqwest::Method::POST, "/stemcells")
        .json(&serde_json::json!({
            "location": format!("file://{}", upstream("valid_stemcell.tgz").display()),
            "sha1": "0000000000000000000000000000000000000000"
        }))
        .send()
        .await
        .unwrap();
    let task = d.task_wait(Director::task_id(resp).await).await;
    assert_eq!(task["state"], "error", "{task}");

    let task = d
        .start(
            reqwest::Method::DELETE,
            &format!("/stemcells/{name}/{version}"),
        )
        .await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(d.json("/stemcells").await.as_array().unwrap().len(), 1);
    let resp = d
        .req(
            reqwest::Method::DELETE,
            &format!("/stemcells/{name}/{version}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 50003);

    let events = d.json("/events?object_type=stemcell").await;
    assert!(events.as_array().unwrap().len() >= 6, "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_upload_list_match_trim_delete_sqlite() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    releases_scenario(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_and_stemcells_in_use_are_not_deleted() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    d.upload_ok("releases", &upstream("dummy-release.tgz"))
        .await;
    d.upload_ok("stemcells", &upstream("valid_stemcell.tgz"))
        .await;
    let stemcell = d.json("/stemcells").await[0].clone();
    let (os, version) = (
        stemcell["operating_system"].as_str().unwrap().to_owned(),
        stemcell["version"].as_str().unwrap().to_owned(),
    );
    let db = bosh_director::db::Db::open_sqlite_in(dir.path())
        .await
        .unwrap();
    bosh_director::deployments::deployment_upsert(
        &db,
        "dep1",
        &format!(
            "name: dep1\nreleases:\n- name: dummy\n  version: 0.2-dev\nstemcells:\n- alias: default\n  os: {os}\n  version: \"{version}\"\n"
        ),
    )
    .await
    .unwrap();
    let releases = d.json("/releases").await;
    assert_eq!(
        releases[0]["release_versions"][0]["currently_deployed"],
        true
    );
    assert_eq!(
        d.json("/stemcells").await[0]["deployments"][0]["name"],
        "dep1"
    );
    let task = d.start(reqwest::Method::DELETE, "/releases/dummy").await;
    assert_eq!(task["state"], "error");
    assert!(
        task["result"].as_str().unwrap().contains("still in use"),
        "{task}"
    );
    let name = stemcell["name"].as_str().unwrap();
    let task = d
        .start(
            reqwest::Method::DELETE,
            &format!("/stemcells/{name}/{version}"),
        )
        .await;
    assert_eq!(task["state"], "error");
    assert!(
        task["result"].as_str().unwrap().contains("still in use"),
        "{task}"
    );
    assert_eq!(
        versions_of(&d.json("/releases").await, "dummy"),
        ["0.2-dev"]
    );
    assert_eq!(d.json("/stemcells").await.as_array().unwrap().len(), 1);

    // Deleting the deployment records its events too.
    let task = d.start(reqwest::Method::DELETE, "/deployments/dep1").await;
    assert_eq!(task["state"], "done", "{task}");
    let events = d.json("/events?deployment=dep1").await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["parent_id"], events[1]["id"]);
    assert_eq!(events[0]["object_type"], "deployment");
    assert_eq!(events[0]["action"], "delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn stemcells_upload_with_sim_cpi_fix_and_delete_sqlite() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    stemcells_scenario(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dav_blobstore_needs_its_own_credentials_and_resources_serve_blobs() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    let creds = std::fs::read_to_string(dir.path().join("blobstore-credentials.yml")).unwrap();
    let field = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap()
            .to_owned()
    };
    let (user, password) = (field("username"), field("password"));
    assert_ne!(password, d.password);
    let id = "5d9e0d3e-8b1f-4d7e-a6b3-2f0c1a9e7b11";
    let prefix = bosh_director::blobstore::blob_prefix(id);
    let url = format!("{}/blobstore/{prefix}/{id}", d.url);

    // Without credentials, or with the admin's: 401.
    let resp = d.client.put(&url).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = d
        .client
        .get(&url)
        .basic_auth("admin", Some(&d.password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = d
        .client
        .put(&url)
        .basic_auth(&user, Some(&password))
        .body("compiled package bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert!(
        dir.path()
            .join("blobstore")
            .join(&prefix)
            .join(id)
            .is_file()
    );
    let resp = d
        .client
        .head(&url)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = d
        .client
        .get(&url)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "compiled package bytes");

    // The admin API serves the same blob as a resource.
    let resp = d
        .req(reqwest::Method::GET, &format!("/resources/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "compiled package bytes");
    let resp = d
        .req(reqwest::Method::GET, "/resources/no-such-blob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 100002);

    // A wrong prefix is not the blob; delete then 404.
    let resp = d
        .client
        .get(format!("{}/blobstore/zz/{id}", d.url))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = d
        .client
        .delete(&url)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let resp = d
        .client
        .head(&url)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Reads `VmRSS` of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn large_upload_is_streamed_to_disk_not_buffered() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    // 64 MiB of incompressible-looking bytes produced on the fly: never a file, never held.
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 64;
    let before = rss_kib(d.child.id());
    let stream = futures::stream::iter((0..CHUNKS).map(|i| {
        let mut chunk = vec![0u8; CHUNK];
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        Ok::<_, std::io::Error>(chunk)
    }));
    let resp = d
        .req(reqwest::Method::POST, "/releases")
        .header("Content-Type", "application/x-compressed")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let after = rss_kib(d.child.id());
    let id = Director::task_id(resp).await;
    // Not a release tarball: the task fails, but the body was taken in full.
    let task = d.task_wait(id).await;
    assert_eq!(task["state"], "error");
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 32,
        "director RSS grew by {grown_mib} MiB for a 64 MiB upload"
    );
}

/// A fresh database on the PostgreSQL server named by `BOSH_RS_TEST_POSTGRES_URL`.

#[tokio::test(flavor = "multi_thread")]
async fn postgres_releases_and_stemcells() {
    let Some(url) = postgres_fresh().await else {
        eprintln!("BOSH_RS_TEST_POSTGRES_URL not set; skipping the PostgreSQL run");
        return;
    };
    let dir = data_dir();
    let d = director_spawn(dir.path(), Some(&format!("database_url: {url}\n")));
    releases_scenario(&d).await;
    stemcells_scenario(&d).await;
}
