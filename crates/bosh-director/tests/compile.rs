//! Package compilation end to end: an in-process director with `--cpi sim` (its own
//! nats-server child, the real `bosh-agent` as each VM), the example greeter release and a sim
//! stemcell uploaded over the API, and [`compile_packages`] run by a test-only task.
//!
//! The `bosh-agent` binary is built into this test's target dir on first use (or taken from
//! `$BOSH_AGENT_BIN`), as in bosh-agent-client's `sim_e2e`.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use async_trait::async_trait;
use bosh_director::compile::{CompileRequest, ReleasePackages, compile_packages};
use bosh_director::services::Services;
use bosh_director::tasks::runner::{TaskContext, TaskError, TaskJob};
use bosh_director::tasks::store::NewTask;
use deploy_world::{World, greeter_tarball, processes_mentioning};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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

/// The sim director with the `test_compile` task job registered.
async fn compile_world() -> World {
    let services = Arc::new(OnceLock::new());
    let job = Arc::new(CompileJob {
        services: services.clone(),
    });
    let w = World::start_with(|opts| opts.extra_jobs.push(("test_compile".into(), job))).await;
    let _ = services.set(w.state().services.clone());
    w
}

impl World {
    async fn compile_start(&self, release: &str, version: &str, reuse: bool) -> i64 {
        let cc = CLOUD_CONFIG.replace("REUSE", if reuse { "true" } else { "false" });
        let task = self
            .state()
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_compile_once_on_agents_then_hit_the_cache() {
    let w = compile_world().await;
    let work = tempfile::tempdir().unwrap();
    w.upload_sim_stemcell(work.path()).await;
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
    let mut w = compile_world().await;
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
