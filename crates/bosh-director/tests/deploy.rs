//! `bosh deploy` end to end: an in-process director with `--cpi sim` (its own nats-server
//! child, the real `bosh-agent` as each VM), the greeter example release and a sim stemcell
//! uploaded over the API, deployed through `POST /deployments` on a loopback network, so the
//! greeter servers answer on their own 127.x addresses.

mod common;

use bosh_director::config::DirectorConfig;
use bosh_director::server::{DirectorOptions, RunningDirector, director_start};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("BOSH_AGENT_BIN") {
            return PathBuf::from(p);
        }
        let dir = profile_dir();
        let target = dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "bosh-agent",
            "--bin",
            "bosh-agent",
        ])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let out = cmd.output().unwrap();
        let path = dir.join("bosh-agent");
        assert!(
            path.is_file(),
            "building bosh-agent failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
}

struct World {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    director: Option<RunningDirector>,
    client: reqwest::Client,
    password: String,
}

impl World {
    async fn start() -> World {
        let tmp = common::data_dir();
        let dir = tmp.path().to_owned();
        let mut opts =
            DirectorOptions::new(dir.clone(), "127.0.0.1:0", "sim", DirectorConfig::default());
        opts.agent_command = Some(vec![agent_bin().display().to_string()]);
        let director = director_start(opts).await.unwrap();
        let ca = std::fs::read(&director.ca_cert_path).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap();
        let creds = std::fs::read_to_string(dir.join("credentials.yml")).unwrap();
        let password = creds
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .unwrap()
            .to_owned();
        World {
            _dir: tmp,
            dir,
            director: Some(director),
            client,
            password,
        }
    }

    fn url(&self) -> &str {
        &self.director.as_ref().unwrap().url
    }

    async fn task_wait(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let task: Value = self
                .client
                .get(format!("{}/tasks/{id}", self.url()))
                .basic_auth("admin", Some(&self.password))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if ["done", "error", "cancelled"].contains(&task["state"].as_str().unwrap()) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} did not end");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn upload(&self, what: &str, path: &Path) {
        let body = std::fs::read(path).unwrap();
        let resp = self
            .client
            .post(format!("{}/{what}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "application/x-compressed")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        let id: i64 = resp.headers()["location"]
            .to_str()
            .unwrap()
            .trim_start_matches("/tasks/")
            .parse()
            .unwrap();
        let task = self.task_wait(id).await;
        assert_eq!(task["state"], "done", "{what}: {task}");
    }

    fn sim_root(&self) -> PathBuf {
        self.dir.join("sim-cpi")
    }

    /// VMs ever created: the sim CPI keeps one agent log per VM.
    fn vms_created(&self) -> usize {
        std::fs::read_dir(self.sim_root().join("logs"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn vms_alive(&self) -> usize {
        std::fs::read_dir(self.sim_root().join("vms"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn task_events(&self, id: i64) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.join(format!("tasks/{id}/event"))).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    async fn db_count(&self, sql: &str) -> i64 {
        let state = &self.director.as_ref().unwrap().state;
        let row: (i64,) = sqlx::query_as(sql)
            .fetch_one(state.db.pool())
            .await
            .unwrap();
        row.0
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Kill anything left under the sim root (agents, jobs) so a failing test leaks nothing.
        let needle = self.sim_root().display().to_string();
        for pid in processes_mentioning(&needle) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if std::thread::panicking() {
            if let Ok(rd) = std::fs::read_dir(self.sim_root().join("logs")) {
                for e in rd.flatten() {
                    eprintln!(
                        "--- {} ---\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    );
                }
            }
            for log in files_under(&self.sim_root().join("vms"))
                .into_iter()
                .filter(|p| p.to_string_lossy().contains("/sys/log/"))
            {
                eprintln!(
                    "--- {} ---\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            eprintln!(
                "--- nats ---\n{}",
                std::fs::read_to_string(self.dir.join("nats/nats.log")).unwrap_or_default()
            );
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(files_under(&e.path()));
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    out
}

fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        })
        .filter(|pid| {
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let hay = [read("cmdline"), read("environ")].concat();
            hay.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A dev release tarball of the greeter example (named `name`), optionally with libgreet's
/// packaging script replaced.
fn greeter_tarball(work: &Path, name: &str, libgreet_packaging: Option<&str>) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/greeter-release");
    let rel = work.join(name);
    copy_dir(&src, &rel);
    let _ = std::fs::remove_dir_all(rel.join(".dev_builds"));
    let _ = std::fs::remove_dir_all(rel.join("dev_releases"));
    if let Some(script) = libgreet_packaging {
        std::fs::write(rel.join("packages/libgreet/packaging"), script).unwrap();
    }
    let dir = bosh_release::release_dir::ReleaseDir::new(&rel);
    let cache = bosh_release::index::ArchiveCache::new(work.join("cache"));
    let opts = bosh_release::create::CreateOptions {
        name: Some(name.to_owned()),
        force: true,
        ..Default::default()
    };
    let release = bosh_release::create::create_release(&dir, cache, &opts, &mut |_| {}).unwrap();
    assert_eq!(release.version, "0+dev.1");
    let out = work.join(format!("{name}.tgz"));
    release.write_tarball(&out).unwrap();
    out
}

const CLOUD_CONFIG: &str = r#"
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.91.0.0/24
    gateway: 127.91.0.1
    reserved: [127.91.0.2 - 127.91.0.9]
    static: [127.91.0.200 - 127.91.0.220]
    azs: [z1, z2]
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
  reuse_compilation_vms: true
"#;

/// Several greeter servers and a proxy consuming their link; `GREETERS`, `PROXY_TIMEOUT`,
/// `NETWORK` and `FROM` are replaced per step.
const MANIFEST: &str = r#"
name: greeter
releases: [{name: greeter, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 200-30000
  update_watch_time: 200-30000
instance_groups:
- name: greeter
  instances: GREETERS
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: NETWORK}]
  jobs:
  - name: greeter
    release: greeter
    properties:
      port: 8080
      bind_instance_address: true
      greeting: Hello from BOSH!
      stats_token: ((greeter_stats_token))
    consumes:
      peers: {from: greeter}
- name: proxy
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - name: greeter-proxy
    release: greeter
    properties:
      port: 8000
      bind_instance_address: true
      connect_timeout_ms: PROXY_TIMEOUT
    consumes:
      backends: {from: FROM}
variables:
- name: greeter_stats_token
  type: password
"#;

fn manifest(greeters: u32, proxy_timeout: u32, network: &str, from: &str) -> String {
    MANIFEST
        .replace("GREETERS", &greeters.to_string())
        .replace("PROXY_TIMEOUT", &proxy_timeout.to_string())
        .replace("NETWORK", network)
        .replace("FROM", from)
}

impl World {
    async fn cloud_config_update(&self, content: &str) {
        let resp = self
            .client
            .post(format!("{}/configs", self.url()))
            .basic_auth("admin", Some(&self.password))
            .json(&json!({"type": "cloud", "name": "default", "content": content}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }

    /// Starts a deploy and waits for its task.
    async fn deploy(&self, manifest: &str, query: &str) -> (i64, Value) {
        let resp = self
            .client
            .post(format!("{}/deployments{query}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "text/yaml")
            .body(manifest.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        let id: i64 = resp.headers()["location"]
            .to_str()
            .unwrap()
            .trim_start_matches("/tasks/")
            .parse()
            .unwrap();
        (id, self.task_wait(id).await)
    }

    /// `(group, uuid, vm cid, agent id)` of every instance with a VM, by group then index.
    async fn instances(&self) -> Vec<(String, String, String, String)> {
        let state = &self.director.as_ref().unwrap().state;
        sqlx::query_as(
            "SELECT i.instance_group, i.uuid, v.cid, v.agent_id FROM instances i \
             JOIN vms v ON v.instance_id = i.id WHERE i.deployment = 'greeter' \
             ORDER BY i.instance_group, i.instance_index",
        )
        .fetch_all(state.db.pool())
        .await
        .unwrap()
    }

    async fn instance_ips(&self, group: &str) -> Vec<String> {
        let state = &self.director.as_ref().unwrap().state;
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT a.address FROM ip_addresses a JOIN instances i ON i.id = a.instance_id \
             WHERE i.instance_group = $1 ORDER BY a.address",
        )
        .bind(group)
        .fetch_all(state.db.pool())
        .await
        .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    }

    async fn job_state(&self, agent_id: &str) -> String {
        let state = &self.director.as_ref().unwrap().state;
        let agents = state.services.agents.clone().unwrap();
        let s = agents
            .client()
            .get_state_value(agent_id, false)
            .await
            .unwrap();
        s["job_state"].as_str().unwrap_or_default().to_owned()
    }

    /// `apply` requests the agents received: the agent logs each request's method.
    fn applies(&self) -> usize {
        std::fs::read_dir(self.sim_root().join("logs"))
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap_or_default()
                            .matches("method=apply")
                            .count()
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    fn stages(&self, id: i64) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for e in self.task_events(id) {
            let Some(stage) = e["stage"].as_str() else {
                continue;
            };
            let tags: Vec<String> = e["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if !out.iter().any(|(s, t)| s == stage && *t == tags) {
                out.push((stage.to_owned(), tags));
            }
        }
        out
    }
}

/// One HTTP/1.0 request to `addr`.
async fn http_get(addr: &str) -> String {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_redeploy_change_and_scale_the_greeter() {
    let w = World::start().await;
    let work = tempfile::tempdir().unwrap();
    let stemcell = work.path().join("stemcell.tgz");
    bosh_stemcell::sim::build_sim_stemcell(&bosh_stemcell::sim::SimStemcellOptions::new(&stemcell))
        .unwrap();
    w.upload("stemcells", &stemcell).await;
    w.upload("releases", &greeter_tarball(work.path(), "greeter", None))
        .await;
    w.cloud_config_update(CLOUD_CONFIG).await;

    // A manifest without a name is refused before any task.
    let resp = w
        .client
        .post(format!("{}/deployments", w.url()))
        .basic_auth("admin", Some(&w.password))
        .header("Content-Type", "text/yaml")
        .body("releases: []\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("name"));

    // An undefined network and a broken link fail the plan, naming them; nothing is created.
    let (_, t) = w.deploy(&manifest(3, 1000, "nowhere", "greeter"), "").await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(t["result"].as_str().unwrap().contains("nowhere"), "{t}");
    let (_, t) = w
        .deploy(&manifest(3, 1000, "default", "no-such-link"), "")
        .await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["result"].as_str().unwrap().contains("no-such-link"),
        "{t}"
    );
    assert_eq!(w.vms_created(), 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM instances").await, 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);

    // A dry run plans and renders, and creates nothing.
    let (_, t) = w
        .deploy(&manifest(3, 1000, "default", "greeter"), "?dry_run=true")
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["description"], "create deployment (dry run)");
    assert_eq!(w.vms_created(), 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM instances").await, 0);

    // Fresh deploy: every instance runs, and each greeter answers on its own address.
    let (id, t) = w.deploy(&manifest(3, 1000, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["result"], "/deployments/greeter");
    let stages = w.stages(id);
    for s in [
        "Preparing deployment",
        "Compiling packages",
        "Creating missing vms",
    ] {
        assert!(stages.iter().any(|(n, _)| n == s), "{stages:?}");
    }
    assert!(
        stages.contains(&("Updating instance".into(), vec!["greeter".into()])),
        "{stages:?}"
    );
    let canary = w
        .task_events(id)
        .into_iter()
        .filter(|e| e["stage"] == "Updating instance" && e["tags"][0] == "greeter")
        .filter_map(|e| e["task"].as_str().map(str::to_owned))
        .filter(|t| t.ends_with("(canary)"))
        .count();
    assert!(canary > 0, "no canary task");
    let instances = w.instances().await;
    assert_eq!(instances.len(), 4, "{instances:?}");
    for (group, _, _, agent) in &instances {
        assert_eq!(w.job_state(agent).await, "running", "{group}");
    }
    let greeter_ips = w.instance_ips("greeter").await;
    assert_eq!(greeter_ips.len(), 3);
    for ip in &greeter_ips {
        let answer = http_get(&format!("{ip}:8080")).await;
        assert!(answer.contains("Hello from BOSH!"), "{ip}: {answer}");
    }
    let proxy_ip = &w.instance_ips("proxy").await[0];
    assert!(
        http_get(&format!("{proxy_ip}:8000"))
            .await
            .contains("Hello from BOSH!")
    );
    assert_eq!(w.vms_alive(), 4, "compilation VMs are gone");

    // A no-op redeploy: no VM created or deleted, no apply, no "Updating instance".
    let (created, applies) = (w.vms_created(), w.applies());
    assert!(applies >= 4, "{applies}");
    let (id, t) = w.deploy(&manifest(3, 1000, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(w.vms_created(), created);
    assert_eq!(w.applies(), applies);
    assert_eq!(w.instances().await, instances);
    assert!(
        !w.stages(id).iter().any(|(n, _)| n == "Updating instance"),
        "{:?}",
        w.stages(id)
    );

    // A proxy property change updates the proxy only, on the same VM.
    let (id, t) = w.deploy(&manifest(3, 1500, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let updating: Vec<_> = w
        .stages(id)
        .into_iter()
        .filter(|(n, _)| n == "Updating instance")
        .collect();
    assert_eq!(
        updating,
        vec![("Updating instance".to_owned(), vec!["proxy".to_owned()])]
    );
    assert_eq!(w.instances().await, instances, "VMs kept");
    assert_eq!(w.applies(), applies + 1);
    assert_eq!(w.vms_created(), created);

    // Scale down 3 → 1: two VMs deleted, their IPs released.
    let (_, t) = w.deploy(&manifest(1, 1500, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let after = w.instances().await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(w.vms_alive(), 2);
    assert_eq!(w.instance_ips("greeter").await.len(), 1);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 2);
    let kept = &after.iter().find(|i| i.0 == "greeter").unwrap().2;
    assert!(
        instances.iter().any(|i| &i.2 == kept),
        "the remaining greeter kept its VM"
    );
}
