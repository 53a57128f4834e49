//! Package compilation end to end: an in-process director with `--cpi sim` (its own
//! nats-server child, the real `bosh-agent` as each VM), the example greeter release and a sim
//! stemcell uploaded over the API, and [`compile_packages`] run by a test-only task.
//!
//! The `bosh-agent` binary is built into this test's target dir on first use (or taken from
//! `$BOSH_AGENT_BIN`), as in bosh-agent-client's `sim_e2e`.

mod common;

use async_trait::async_trait;
use bosh_director::compile::{CompileRequest, ReleasePackages, compile_packages};
use bosh_director::config::DirectorConfig;
use bosh_director::server::{DirectorOptions, RunningDirector, director_start};
use bosh_director::services::Services;
use bosh_director::tasks::runner::{TaskContext, TaskError, TaskJob};
use bosh_director::tasks::store::NewTask;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// Runs `compile_packages` with the payload's request; the result lists what was compiled.
struct CompileJob {
    services: Arc<OnceLock<Services>>,
}

#[async_trait]
impl TaskJob for CompileJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let services = self.services.get().expect("services set after start");
        let cloud_config =
            bosh_types::cloud_config::CloudConfig::parse(payload["cloud_config"].as_str().unwrap())
                .map_err(|e| TaskError::failed(1, e.to_string()))?;
        let req = CompileRequest {
            deployment: "greeter".into(),
            releases: vec![ReleasePackages {
                release: payload["release"].as_str().unwrap().into(),
                version: payload["version"].as_str().unwrap().into(),
                packages: None,
            }],
            stemcell_name: payload["stemcell"].as_str().unwrap().into(),
            stemcell_version: "1".into(),
            cloud_config,
        };
        let out = compile_packages(ctx, services, &req).await?;
        let list: Vec<Value> = out
            .iter()
            .map(|c| {
                json!({"name": c.name, "now": c.compiled_now, "blob": c.blobstore_id,
                       "sha1": c.sha1, "key": c.dependency_key, "build": c.build})
            })
            .collect();
        Ok(Value::Array(list).to_string())
    }
}

const CLOUD_CONFIG: &str = r#"
azs: [{name: z1}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 10.245.0.0/29
    gateway: 10.245.0.1
    reserved: [10.245.0.2]
    static: [10.245.0.3]
    azs: [z1]
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
  reuse_compilation_vms: REUSE
"#;

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
        let services = Arc::new(OnceLock::new());
        let mut opts =
            DirectorOptions::new(dir.clone(), "127.0.0.1:0", "sim", DirectorConfig::default());
        opts.agent_command = Some(vec![agent_bin().display().to_string()]);
        opts.extra_jobs.push((
            "test_compile".into(),
            Arc::new(CompileJob {
                services: services.clone(),
            }),
        ));
        let director = director_start(opts).await.unwrap();
        let _ = services.set(director.state.services.clone());
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

    async fn compile_start(&self, release: &str, version: &str, reuse: bool) -> i64 {
        let state = &self.director.as_ref().unwrap().state;
        let cc = CLOUD_CONFIG.replace("REUSE", if reuse { "true" } else { "false" });
        let task = state
            .queue
            .task_enqueue(&NewTask {
                task_type: "test_compile".into(),
                description: "compile".into(),
                payload: json!({"release": release, "version": version, "cloud_config": cc,
                                "stemcell": "bosh-sim-debian-bookworm-go_agent"}),
                user: "admin".into(),
                deployment: Some("greeter".into()),
                context_id: String::new(),
            })
            .await
            .unwrap();
        task.id.0
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
            eprintln!(
                "--- nats ---\n{}",
                std::fs::read_to_string(self.dir.join("nats/nats.log")).unwrap_or_default()
            );
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_compile_once_on_agents_then_hit_the_cache() {
    let w = World::start().await;
    let work = tempfile::tempdir().unwrap();
    let stemcell = work.path().join("stemcell.tgz");
    bosh_stemcell::sim::build_sim_stemcell(&bosh_stemcell::sim::SimStemcellOptions::new(&stemcell))
        .unwrap();
    w.upload("stemcells", &stemcell).await;
    w.upload("releases", &greeter_tarball(work.path(), "greeter", None))
        .await;

    // Two tasks at once for the same packages: each package is compiled once, on its own VM.
    let (a, b) = (
        w.compile_start("greeter", "0+dev.1", false).await,
        w.compile_start("greeter", "0+dev.1", false).await,
    );
    let (ta, tb) = (w.task_wait(a).await, w.task_wait(b).await);
    assert_eq!(ta["state"], "done", "{ta}");
    assert_eq!(tb["state"], "done", "{tb}");
    let ra: Vec<Value> = serde_json::from_str(ta["result"].as_str().unwrap()).unwrap();
    let rb: Vec<Value> = serde_json::from_str(tb["result"].as_str().unwrap()).unwrap();
    assert_eq!(ra.len(), 2);
    let compiled_now = ra.iter().chain(&rb).filter(|c| c["now"] == true).count();
    assert_eq!(compiled_now, 2, "{ra:?} {rb:?}");
    assert_eq!(w.vms_created(), 2, "one compilation VM per package");
    assert_eq!(
        w.db_count("SELECT COUNT(*) FROM compiled_packages").await,
        2
    );
    let greeter = ra.iter().find(|c| c["name"] == "greeter").unwrap();
    assert!(
        greeter["key"]
            .as_str()
            .unwrap()
            .starts_with("[[\"libgreet\","),
        "{greeter}"
    );
    let libgreet = ra.iter().find(|c| c["name"] == "libgreet").unwrap();
    assert_eq!(libgreet["key"], "[]");
    // The compiled blobs are in the director's blobstore (uploaded by the agents over DAV).
    for c in &ra {
        let id = c["blob"].as_str().unwrap();
        assert!(
            w.director
                .as_ref()
                .unwrap()
                .state
                .services
                .blobstore
                .exists(id)
                .await
                .unwrap()
        );
    }
    // Events: one "Compiling packages" task per package across both tasks.
    let compiling: Vec<Value> = [a, b]
        .iter()
        .flat_map(|id| w.task_events(*id))
        .filter(|e| e["stage"] == "Compiling packages" && e["state"] == "finished")
        .collect();
    assert_eq!(compiling.len(), 2, "{compiling:?}");
    assert!(
        compiling
            .iter()
            .any(|e| e["task"].as_str().unwrap().starts_with("libgreet/"))
    );

    // Every compilation VM is gone: no VM dir, no row, no IP, no agent process.
    assert_eq!(w.vms_alive(), 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM vms").await, 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);
    assert!(processes_mentioning(&w.sim_root().display().to_string()).is_empty());

    // Again: all cache hits, no VM created.
    let c = w.compile_start("greeter", "0+dev.1", true).await;
    let tc = w.task_wait(c).await;
    assert_eq!(tc["state"], "done", "{tc}");
    let rc: Vec<Value> = serde_json::from_str(tc["result"].as_str().unwrap()).unwrap();
    assert!(rc.iter().all(|c| c["now"] == false), "{rc:?}");
    assert_eq!(w.vms_created(), 2, "a cache hit creates no VM");

    // A package whose packaging script fails: the error names it, and its VMs are deleted.
    w.upload(
        "releases",
        &greeter_tarball(
            work.path(),
            "broken",
            Some("echo failing on purpose\nexit 1\n"),
        ),
    )
    .await;
    let before = w.vms_created();
    let d = w.compile_start("broken", "0+dev.1", true).await;
    let td = w.task_wait(d).await;
    assert_eq!(td["state"], "error", "{td}");
    let message = td["result"].as_str().unwrap();
    assert!(message.contains("libgreet"), "{message}");
    assert!(w.vms_created() > before);
    assert_eq!(w.vms_alive(), 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM vms").await, 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);
    assert!(processes_mentioning(&w.sim_root().display().to_string()).is_empty());
    let failed = w
        .task_events(d)
        .into_iter()
        .any(|e| e["stage"] == "Compiling packages" && e["state"] == "failed");
    assert!(failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_child_stops_with_the_director_and_agents_get_their_own_users() {
    let mut w = World::start().await;
    let nats = w.director.as_ref().unwrap().nats.clone().unwrap();
    let pid: i32 = std::fs::read_to_string(w.dir.join("nats/nats.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let agents = w
        .director
        .as_ref()
        .unwrap()
        .state
        .services
        .agents
        .clone()
        .unwrap();
    agents.agent_register("a-1").await.unwrap();
    let conf = std::fs::read_to_string(w.dir.join("nats/nats.conf")).unwrap();
    assert!(conf.contains("CN=a-1.agent.bosh-internal"), "{conf}");
    // A certificate for an agent NATS does not know is refused.
    let stranger = agents.pki().agent_cert("a-2").unwrap();
    let refused = bosh_agent_client::mbus::connect(&[nats.url()], &stranger, "x").await;
    let refused = match refused {
        Err(_) => true,
        Ok(c) => c.flush().await.is_err(),
    };
    assert!(refused, "an unknown agent connected");
    w.director.take().unwrap().shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}/cmdline")).exists()
        && !std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .is_empty()
    {
        assert!(Instant::now() < deadline, "nats-server {pid} still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
