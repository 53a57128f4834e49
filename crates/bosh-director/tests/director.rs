//! End-to-end tests: the real `bosh-director` binary on 127.0.0.1:0 in a temp dir, spoken to
//! over HTTPS with the CA it generated, the way the official CLI does.

mod common;
use common::*;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosh_director::db::Db;
use bosh_director::deployments::deployment_upsert;
use bosh_director::locks::{LockSpec, lock_acquire};
use bosh_director::tasks::TaskId;
use serde_json::Value;

/// A running director process, killed on drop.
struct Director {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Director {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn director_spawn(dir: &Path, config: Option<&str>) -> Director {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosh-director"));
    cmd.args(["--data-dir"])
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
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("director did not start within 120s");
        }
    };
    let url = line
        .strip_prefix("Director listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    Director {
        child,
        url,
        dir: dir.to_owned(),
    }
}

fn client(dir: &Path) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn admin_password(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("credentials.yml")).unwrap();
    assert!(text.starts_with("username: admin\n"), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned()
}

impl Director {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        client(&self.dir)
            .get(format!("{}{path}", self.url))
            .basic_auth("admin", Some(admin_password(&self.dir)))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client(&self.dir)
            .request(method, format!("{}{path}", self.url))
            .basic_auth("admin", Some(admin_password(&self.dir)))
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self.get(path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    async fn task_wait(&self, id: i64, states: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let task = self.json(&format!("/tasks/{id}")).await;
            if states.contains(&task["state"].as_str().unwrap()) {
                return task;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} stuck in {}",
                task["state"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a task endpoint and returns the task id from the 302 Location.
    async fn task_start(&self, method: reqwest::Method, path: &str) -> i64 {
        let resp = self.request(method, path).send().await.unwrap();
        assert_eq!(resp.status(), 302, "{path}: {}", resp.text().await.unwrap());
        let loc = resp.headers()["location"].to_str().unwrap().to_owned();
        loc.strip_prefix("/tasks/").unwrap().parse().unwrap()
    }

    async fn output(&self, id: i64, kind: &str, range: Option<&str>) -> (u16, String) {
        let mut req = self.get(&format!("/tasks/{id}/output?type={kind}"));
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

/// Adds a deployment row through the library, as the deployer will.
async fn deployment_seed(db_url: Option<&str>, dir: &Path, name: &str) -> Db {
    let db = match db_url {
        Some(url) => Db::connect(url).await.unwrap(),
        None => Db::open_sqlite_in(dir).await.unwrap(),
    };
    deployment_upsert(
        &db,
        name,
        &format!("name: {name}\nreleases:\n- name: r\n  version: \"1\"\nstemcells:\n- alias: default\n  os: ubuntu\n  version: \"1.5\"\n"),
    )
    .await
    .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread")]
async fn info_is_public_echoes_user_and_other_endpoints_need_basic_auth() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    let c = client(dir.path());

    let info: Value = c
        .get(format!("{}/info", d.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["user"], Value::Null);
    assert_eq!(info["user_authentication"]["type"], "basic");
    assert_eq!(
        info["user_authentication"]["options"],
        serde_json::json!({})
    );
    assert_eq!(info["cpi"], "sim");
    assert!(info["uuid"].as_str().unwrap().len() == 36);
    assert!(info["features"]["snapshots"]["status"].is_boolean());

    let wrong = c
        .get(format!("{}/info", d.url))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 200, "/info must never answer 401");
    assert_eq!(wrong.json::<Value>().await.unwrap()["user"], Value::Null);

    let mine = d.json("/info").await;
    assert_eq!(mine["user"], "admin");

    let anon = c.get(format!("{}/tasks", d.url)).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert_eq!(
        anon.headers()["www-authenticate"],
        "Basic realm=\"BOSH Director\""
    );
    assert_eq!(
        anon.text().await.unwrap().trim(),
        "Not authorized: '/tasks'"
    );
    let bad = c
        .get(format!("{}/locks", d.url))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    // The official CLI offers only ECDHE-RSA-AES-GCM suites over TLS 1.2: that must work too.
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let tls12 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let resp = tls12.get(format!("{}/info", d.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // Credentials file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("credentials.yml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

async fn delete_deployment_runs_to_done(db_url: Option<&str>, d: &Director) {
    deployment_seed(db_url, &d.dir, "dep1").await;
    let deps = d.json("/deployments").await;
    assert_eq!(deps[0]["name"], "dep1");
    assert_eq!(deps[0]["releases"][0]["version"], "1");
    assert_eq!(deps[0]["stemcells"][0]["name"], "ubuntu");
    assert_eq!(deps[0]["locked"], false);
    let manifest = d.json("/deployments/dep1").await;
    assert!(
        manifest["manifest"]
            .as_str()
            .unwrap()
            .starts_with("name: dep1")
    );

    // Trailing `?` as the CLI sends it.
    let id = d
        .task_start(reqwest::Method::DELETE, "/deployments/dep1?")
        .await;
    let task = d.task_wait(id, &["done", "error"]).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["result"], "/deployments/dep1");
    assert_eq!(task["description"], "delete deployment dep1");
    assert_eq!(task["deployment"], "dep1");
    assert_eq!(task["user"], "admin");
    assert!(task["timestamp"].is_i64() && task["started_at"].is_i64());

    let (status, events) = d.output(id, "event", Some("bytes=0-")).await;
    assert_eq!(status, 206);
    assert!(events.ends_with('\n'));
    let lines: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["time"].is_i64()));
    assert!(
        lines
            .iter()
            .any(|l| l["stage"] == "Destroying deployment" && l["state"] == "finished")
    );
    let len = events.len();
    // Nothing new past the end: 416, which the CLI treats as "no news".
    let (status, body) = d.output(id, "event", Some(&format!("bytes={len}-"))).await;
    assert_eq!((status, body.as_str()), (416, ""));
    // A middle offset returns exactly the tail.
    let (status, tail) = d.output(id, "event", Some("bytes=5-")).await;
    assert_eq!(status, 206);
    assert_eq!(tail, events[5..]);
    let (status, whole) = d.output(id, "event", None).await;
    assert_eq!((status, whole.len()), (200, len));
    // The result output answers 2xx even when empty.
    let (status, result) = d.output(id, "result", None).await;
    assert_eq!((status, result.as_str()), (200, ""));
    let (status, _) = d.output(id, "bogus", None).await;
    assert_eq!(status, 400);

    assert_eq!(d.json("/deployments").await, serde_json::json!([]));
    let gone = d.get("/deployments/dep1").send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert!(gone.text().await.unwrap().contains("\"code\":70000"));
    let missing = d
        .request(reqwest::Method::DELETE, "/deployments/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let listed = d.json("/tasks?verbose=1").await;
    assert_eq!(listed[0]["id"], id);
    let done = d.json("/tasks?state=done&deployment=dep1&limit=5").await;
    assert_eq!(done.as_array().unwrap().len(), 1);
    let running = d
        .json("/tasks?state=processing%2Ccancelling%2Cqueued&verbose=2")
        .await;
    assert_eq!(running, serde_json::json!([]));
    let nf = d.get("/tasks/99999").send().await.unwrap();
    assert_eq!(nf.status(), 404);
    assert!(nf.text().await.unwrap().contains("\"code\":10000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_deployment_task_runs_to_done_with_events_and_range_semantics() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    delete_deployment_runs_to_done(None, &d).await;
}

async fn cancel_queued_and_processing(db_url: Option<&str>, d: &Director) {
    let db = deployment_seed(db_url, &d.dir, "busy").await;
    // Another (fictional) task holds the deployment lock, so the delete waits on it.
    assert!(
        lock_acquire(
            &db,
            &LockSpec::deployment("busy"),
            TaskId(999_999),
            3_600_000
        )
        .await
        .unwrap()
    );
    let locks = d.json("/locks").await;
    assert_eq!(locks[0]["type"], "deployment");
    assert_eq!(locks[0]["resource"], serde_json::json!(["busy"]));
    assert_eq!(locks[0]["task_id"], "999999");
    assert!(locks[0]["timeout"].as_str().unwrap().contains('.'));
    let deps = d.json("/deployments").await;
    assert_eq!(deps[0]["locked"], true);

    let first = d
        .task_start(reqwest::Method::DELETE, "/deployments/busy")
        .await;
    d.task_wait(first, &["processing"]).await;
    // The only worker is busy, so this one stays queued.
    let second = d
        .task_start(reqwest::Method::DELETE, "/deployments/busy")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.json(&format!("/tasks/{second}")).await["state"], "queued");

    let resp = d
        .request(reqwest::Method::DELETE, &format!("/task/{second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        d.json(&format!("/tasks/{second}")).await["state"],
        "cancelled"
    );

    let resp = d
        .request(reqwest::Method::DELETE, &format!("/task/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let t = d.task_wait(first, &["cancelled", "error", "done"]).await;
    assert_eq!(t["state"], "cancelled", "{t}");
    // The deployment survived.
    assert_eq!(d.json("/deployments").await[0]["name"], "busy");
    let again = d
        .request(reqwest::Method::DELETE, &format!("/task/{first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_moves_queued_to_cancelled_and_processing_through_cancelling() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), Some("workers: 1\n"));
    cancel_queued_and_processing(None, &d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_state_and_fails_tasks_orphaned_by_a_killed_director() {
    let dir = data_dir();
    let mut d = director_spawn(dir.path(), None);
    let password = admin_password(dir.path());
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let uuid = d.json("/info").await["uuid"].clone();

    let db = deployment_seed(None, dir.path(), "stuck").await;
    assert!(
        lock_acquire(
            &db,
            &LockSpec::deployment("stuck"),
            TaskId(777_777),
            3_600_000
        )
        .await
        .unwrap()
    );
    let id = d
        .task_start(reqwest::Method::DELETE, "/deployments/stuck")
        .await;
    d.task_wait(id, &["processing"]).await;
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    drop(d);

    let d = director_spawn(dir.path(), None);
    assert_eq!(admin_password(dir.path()), password, "password kept");
    assert_eq!(
        std::fs::read(dir.path().join("ca.crt")).unwrap(),
        ca,
        "CA kept"
    );
    let info = d.json("/info").await;
    assert_eq!(info["uuid"], uuid);
    assert_eq!(info["user"], "admin");

    let task = d.json(&format!("/tasks/{id}")).await;
    assert_eq!(task["state"], "error", "{task}");
    assert!(task["result"].as_str().unwrap().contains("interrupted"));
    let (_, events) = d.output(id, "event", None).await;
    let last: Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("interrupted")
    );
    // The deployment row was untouched; new tasks still run after recovery.
    assert_eq!(d.json("/deployments").await[0]["name"], "stuck");
}

async fn configs_crud(d: &Director) {
    let post = |body: Value| {
        d.request(reqwest::Method::POST, "/configs")
            .json(&body)
            .send()
    };
    let cc = "azs:\n- name: z1\nvm_types:\n- name: small\n";
    let diff: Value = d
        .request(reqwest::Method::POST, "/configs/diff")
        .json(&serde_json::json!({"type": "cloud", "name": "extra", "content": cc}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(diff["from"]["id"], "0");
    assert!(
        diff["diff"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l[1] == "added")
    );

    let resp = post(serde_json::json!({"type": "cloud", "name": "extra", "content": cc, "expected_latest_id": "0"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"]
        .as_str()
        .expect("config id is a string")
        .to_owned();
    assert_eq!(created["current"], true);

    // Same content: same config back.
    let same: Value = post(serde_json::json!({"type": "cloud", "name": "extra", "content": cc}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(same["id"], id.as_str());

    // Stale expected_latest_id → 412.
    let stale = post(serde_json::json!({"type": "cloud", "name": "extra", "content": "azs: []\n", "expected_latest_id": "0"}))
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["latest_id"], id.as_str());

    // Invalid cloud config → 400 naming the path.
    let bad = post(serde_json::json!({"type": "cloud", "name": "extra", "content": "vm_types:\n- cloud_properties: {}\n"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.unwrap();
    assert!(
        text.contains("vm_types") && text.contains("\"code\":440001"),
        "{text}"
    );

    let cc2 = "azs:\n- name: z1\n- name: z2\nvm_types:\n- name: small\n";
    let v2: Value = post(serde_json::json!({"type": "cloud", "name": "extra", "content": cc2, "expected_latest_id": id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id2 = v2["id"].as_str().unwrap().to_owned();
    assert_ne!(id2, id);

    let diff: Value = d
        .request(reqwest::Method::POST, "/configs/diff")
        .json(&serde_json::json!({"from": {"id": id}, "to": {"id": id2}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lines = diff["diff"].as_array().unwrap();
    assert!(lines.iter().all(|l| l.as_array().unwrap().len() == 2));
    assert!(
        lines.contains(&serde_json::json!(["- name: z2", "added"])),
        "{diff}"
    );

    let latest = d.json("/configs?latest=true&type=cloud").await;
    assert_eq!(latest.as_array().unwrap().len(), 1);
    assert_eq!(latest[0]["id"], id2.as_str());
    // Plain `bosh configs` sends `latest=true&limit=1` and must still see every current config.
    let runtime =
        post(serde_json::json!({"type": "runtime", "name": "dns", "content": "releases: []\n"}))
            .await
            .unwrap();
    assert_eq!(runtime.status(), 201);
    let current = d.json("/configs?latest=true&limit=1").await;
    let types: Vec<&str> = current
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"cloud") && types.contains(&"runtime"),
        "{current}"
    );
    let all = d.json("/configs?type=cloud&name=extra").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[1]["current"], false);
    let one = d.json(&format!("/configs/{id}")).await;
    assert_eq!(one["content"], cc);

    // Legacy typed endpoints: empty name means `default`.
    let legacy = d
        .request(reqwest::Method::POST, "/cloud_configs?name=")
        .header("Content-Type", "text/yaml")
        .body(cc)
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 201);
    let shown = d.json("/cloud_configs?limit=1&name=").await;
    assert_eq!(shown[0]["properties"], cc);
    let ldiff: Value = d
        .request(reqwest::Method::POST, "/cloud_configs/diff?name=")
        .body(cc2)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ldiff["diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l[1] == "added")
    );
    let bad_rc = d
        .request(reqwest::Method::POST, "/runtime_configs?name=")
        .body("addons: 3\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_rc.status(), 400);

    let del = d
        .request(reqwest::Method::DELETE, "/configs?type=cloud&name=extra")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let del = d
        .request(reqwest::Method::DELETE, "/configs?type=cloud&name=extra")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);
    let gone = d.get(&format!("/configs/{id2}")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert!(gone.text().await.unwrap().contains("\"code\":440012"));
}

#[tokio::test(flavor = "multi_thread")]
async fn configs_crud_diff_concurrency_and_validation() {
    let dir = data_dir();
    let d = director_spawn(dir.path(), None);
    configs_crud(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_data_dir_is_made_absolute_and_nats_starts() {
    let parent = data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosh-director"))
        .current_dir(parent.path())
        .args([
            "--data-dir",
            "rel/data",
            "--listen",
            "127.0.0.1:0",
            "--cpi",
            "sim",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut d = Director {
        child,
        url: String::new(),
        dir: parent.path().join("rel/data"),
    };
    let first = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("no start line");
    d.url = first
        .strip_prefix("Director listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let ca = second.strip_prefix("CA certificate: ").unwrap();
    assert_eq!(
        Path::new(ca),
        parent.path().join("rel/data/ca.crt"),
        "{second}"
    );
    // The embedded NATS server got absolute certificate paths and is up.
    let conf = std::fs::read_to_string(d.dir.join("nats/nats.conf")).unwrap();
    let abs = format!("cert_file: {:?}", d.dir.join("nats"));
    assert!(conf.contains(abs.trim_end_matches('"')), "{conf}");
    assert!(d.json("/info").await["name"].is_string());
    assert_eq!(d.child.try_wait().unwrap(), None, "the director exited");
}

#[tokio::test(flavor = "multi_thread")]
async fn uaa_config_is_refused() {
    let dir = data_dir();
    let path = dir.path().join("director.yml");
    std::fs::write(&path, "uaa:\n  url: https://uaa.example\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bosh-director"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UAA authentication is not supported"), "{err}");
}

/// A fresh database on the PostgreSQL server named by `BOSH_RS_TEST_POSTGRES_URL`.

#[tokio::test(flavor = "multi_thread")]
async fn postgres_backend_runs_tasks_cancels_and_configs() {
    let Some(url) = postgres_fresh().await else {
        eprintln!("BOSH_RS_TEST_POSTGRES_URL not set; skipping the PostgreSQL run");
        return;
    };
    let dir = data_dir();
    let d = director_spawn(
        dir.path(),
        Some(&format!("database_url: {url}\nworkers: 1\n")),
    );
    delete_deployment_runs_to_done(Some(&url), &d).await;
    cancel_queued_and_processing(Some(&url), &d).await;
    configs_crud(&d).await;
}
