//! End to end: a real nats-server with BOSH's TLS identities and permissions, the sim CPI
//! starting the real `bosh-agent` binary as a VM, and the director-side `AgentClient`
//! driving it through the deploy sequence (ping, apply, start, supervise, stop, delete).
//!
//! The `bosh-agent` binary is another crate's, so Cargo does not build it for these tests.
//! [`agent_bin`] uses `$BOSH_AGENT_BIN` when set; otherwise it runs
//! `cargo build -p bosh-agent --bin bosh-agent` once per test process into the same target
//! directory and profile as this test executable (a no-op when it is up to date), and uses
//! `<target>/<profile>/bosh-agent`. `bosh-sim-cpi` is found the same way (`$BOSH_SIM_CPI_BIN`).
//!
//! Every step has a timeout; the `World` drop guard kills every process whose command line
//! or environment mentions the sim root directory (agents and the jobs they started) and
//! prints the agent and NATS logs when a test fails.

use bosh_agent::testing::{NatsServer, TestPki};
use bosh_agent_client::{AgentClient, AgentClientConfig, AgentError, subscribe_heartbeats};
use bosh_agent_protocol::JobState;
use bosh_cpi::sim::SimAgentConfig;
use bosh_cpi::{Cpi, ExternalCpi, ExternalCpiConfig, SimCpi, SimCpiConfig};
use bosh_cpi_protocol::methods::{CloudProperties, CreateStemcellArgs, CreateVmArgs, Networks};
use bosh_types::ids::{AgentId, StemcellCid, VmCid};
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Locating the binaries

/// `<target>/<profile>` of this test executable (`<target>/<profile>/deps/sim_e2e-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_owned()
}

/// Builds `bin` of `package` into this test's target dir and profile (once per process).
fn cargo_build(package: &str, bin: &str) -> Result<(), String> {
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().ok_or("no target dir")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("no profile")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn locate(env_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} does not exist",
            path.display()
        );
        return path;
    }
    let path = profile_dir().join(bin);
    if let Err(e) = cargo_build(package, bin) {
        assert!(
            path.is_file(),
            "building {bin} failed and there is no {}: {e}",
            path.display()
        );
        eprintln!("warning: building {bin} failed, using the existing binary: {e}");
    }
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| locate("BOSH_AGENT_BIN", "bosh-agent", "bosh-agent"))
}

fn sim_cpi_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| locate("BOSH_SIM_CPI_BIN", "bosh-cpi", "bosh-sim-cpi"))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Live (non-zombie) processes whose command line or environment contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me && pid_alive(*pid))
        .filter(|pid| {
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let hay = [read("cmdline"), read("environ")].concat();
            hay.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

fn sigkill(pid: i32) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::{Pid, getpgid, getpgrp};
    let pid = Pid::from_raw(pid);
    if let Ok(group) = getpgid(Some(pid))
        && group != getpgrp()
    {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = kill(pid, Signal::SIGKILL);
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit`.
async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bounds an async step.
async fn step<T>(what: &str, limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {limit:?}"))
}

const STEP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The world: NATS, PKI, a sim CPI root, a blobstore, and cleanup

struct World {
    dir: tempfile::TempDir,
    pki: TestPki,
    nats: NatsServer,
    agent_ids: Vec<AgentId>,
    root: PathBuf,
    blobs: PathBuf,
}

impl World {
    /// NATS knows `agents` agent identities (its permissions are per agent id).
    fn start(agents: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate().unwrap();
        let agent_ids: Vec<AgentId> = (0..agents).map(|_| AgentId::new_v4()).collect();
        let id_strings: Vec<String> = agent_ids.iter().map(|a| a.to_string()).collect();
        let id_refs: Vec<&str> = id_strings.iter().map(String::as_str).collect();
        let nats = NatsServer::start(
            &dir.path().join("nats"),
            &pki,
            &pki.server().unwrap(),
            &id_refs,
        )
        .unwrap();
        let root = dir.path().join("sim");
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        World {
            dir,
            pki,
            nats,
            agent_ids,
            root,
            blobs,
        }
    }

    fn sim_config(&self) -> SimCpiConfig {
        SimCpiConfig {
            root_dir: self.root.clone(),
            agent: SimAgentConfig {
                // `env` sets the agent's intervals without touching this process's environment.
                command: vec![
                    "/usr/bin/env".into(),
                    "BOSH_AGENT_HEARTBEAT_INTERVAL=1".into(),
                    "BOSH_AGENT_SUPERVISOR_INTERVAL=0.2".into(),
                    "RUST_LOG=info".into(),
                    agent_bin().display().to_string(),
                ],
                mbus: self.nats.url(),
                ntp: vec![],
                blobstore: Some(
                    json!({"provider": "local", "options": {"blobstore_path": self.blobs}}),
                ),
                platform: "dummy".into(),
                job_supervisor: "dummy-nats".into(),
            },
            stemcell_formats: vec!["warden-tar".into()],
        }
    }

    fn sim(&self) -> SimCpi {
        SimCpi::new(self.sim_config()).unwrap()
    }

    /// `bosh-sim-cpi` through the external-CPI client: a wrapper script passes the config.
    fn external(&self) -> ExternalCpi {
        let config = self.dir.path().join("sim-cpi.json");
        std::fs::write(&config, serde_json::to_vec(&self.sim_config()).unwrap()).unwrap();
        let wrapper = self.dir.path().join("cpi");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' -configPath '{}'\n",
                sim_cpi_bin().display(),
                config.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = ExternalCpiConfig::new(wrapper, "director-uuid");
        cfg.timeout = Duration::from_secs(60);
        ExternalCpi::new(cfg)
    }

    fn vm_dir(&self, cid: &VmCid) -> PathBuf {
        self.root.join("vms").join(cid.as_str())
    }

    async fn director(&self, timeout: Duration) -> AgentClient {
        let config = AgentClientConfig {
            timeout,
            ..Default::default()
        };
        step(
            "connecting the director",
            STEP,
            AgentClient::connect(&[self.nats.url()], &self.pki.director().unwrap(), config),
        )
        .await
        .unwrap()
    }

    async fn create_stemcell(&self, cpi: &dyn Cpi) -> StemcellCid {
        let image = self.dir.path().join("image");
        std::fs::write(&image, b"not a real image").unwrap();
        step(
            "create_stemcell",
            STEP,
            cpi.create_stemcell(CreateStemcellArgs {
                image_path: image.display().to_string(),
                cloud_properties: CloudProperties::new(),
                options: None,
            }),
        )
        .await
        .unwrap()
    }

    /// `create_vm` with the env the director sends: the agent's mbus certificate.
    async fn create_vm(&self, cpi: &dyn Cpi, stemcell: &StemcellCid, agent: AgentId) -> VmCid {
        let networks: Networks = serde_json::from_value(json!({
            "a": {"type": "manual", "ip": "192.168.50.2", "netmask": "255.255.255.0",
                  "gateway": "192.168.50.1", "default": ["dns", "gateway"], "dns": []}
        }))
        .unwrap();
        let cert = self.pki.agent(&agent.to_string()).unwrap();
        let env = json!({"bosh": {"mbus": {"cert": cert}, "group": "e2e"}});
        let result = step(
            "create_vm",
            STEP,
            cpi.create_vm(CreateVmArgs {
                agent_id: agent,
                stemcell_cid: stemcell.clone(),
                cloud_properties: CloudProperties::new(),
                networks,
                disk_cids: Default::default(),
                env: serde_json::from_value(env).unwrap(),
            }),
        )
        .await
        .unwrap();
        result.vm_cid
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("logs")) {
            for e in rd.flatten() {
                out.push_str(&format!(
                    "--- {} ---\n{}\n",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out.push_str(&format!("--- nats ---\n{}\n", self.nats.log()));
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Agents carry the root in their command line, jobs in BOSH_AGENT_BASE_DIR.
        let needle = self.root.display().to_string();
        for _ in 0..3 {
            let left = processes_mentioning(&needle);
            if left.is_empty() {
                break;
            }
            left.into_iter().for_each(sigkill);
            std::thread::sleep(Duration::from_millis(100));
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The job and its archives

/// A gzipped tarball of `(path, content, mode)` entries rooted at `./`.
fn tgz(entries: &[(&str, &str, u32)]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(enc);
    for (path, content, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        tar.append_data(&mut header, format!("./{path}"), content.as_bytes())
            .unwrap();
    }
    let mut enc = tar.into_inner().unwrap();
    enc.flush().unwrap();
    enc.finish().unwrap()
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

const JOB: &str = "ticker";

/// Puts a rendered-templates archive (one job: a monit file and a ctl script running a shell
/// loop that writes its pidfile) and a package into the blobstore; returns the apply spec.
fn publish_release(blobs: &Path) -> Value {
    let monit = format!(
        "check process {JOB}\n  with pidfile /var/vcap/sys/run/{JOB}/{JOB}.pid\n  start program \"/var/vcap/jobs/{JOB}/bin/ctl start\"\n  stop program \"/var/vcap/jobs/{JOB}/bin/ctl stop\"\n  group vcap\n"
    );
    let ctl = format!(
        "#!/bin/sh\nRUN=$BOSH_AGENT_BASE_DIR/sys/run/{JOB}\ncase $1 in\n  start)\n    mkdir -p $RUN\n    (while true; do sleep 0.2; done) </dev/null >/dev/null 2>&1 &\n    echo $! > $RUN/{JOB}.pid ;;\n  stop) kill $(cat $RUN/{JOB}.pid) ;;\nesac\n"
    );
    let archive = tgz(&[
        (&format!("{JOB}/monit"), &monit, 0o644),
        (&format!("{JOB}/bin/ctl"), &ctl, 0o755),
    ]);
    std::fs::write(blobs.join("rendered-templates-1"), &archive).unwrap();
    let package = tgz(&[("bin/hello", "#!/bin/sh\necho hello\n", 0o755)]);
    std::fs::write(blobs.join("package-1"), &package).unwrap();
    json!({
        "deployment": "e2e", "name": "worker", "id": "instance-1", "index": 0, "az": "z1",
        "job": {"name": "worker", "template": JOB, "version": "1",
                "templates": [{"name": JOB, "version": "1", "sha1": "unused", "blobstore_id": "unused"}]},
        "packages": {"hello": {"name": "hello", "version": "1.0", "sha1": sha256(&package), "blobstore_id": "package-1"}},
        "networks": {"a": {"type": "manual", "ip": "192.168.50.2", "netmask": "255.255.255.0", "default": ["dns", "gateway"]}},
        "configuration_hash": "config-1",
        "rendered_templates_archive": {"blobstore_id": "rendered-templates-1", "sha1": sha256(&archive)},
        "persistent_disk": 0
    })
}

async fn wait_job_state(client: &AgentClient, agent: &str, want: JobState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = step("get_state", STEP, client.get_state(agent, false))
            .await
            .unwrap();
        if state.job_state == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job_state stayed {:?}, wanted {want:?}",
            state.job_state
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The flow

/// create_vm → ping → apply → start → running → crash → restarted → stop → delete_vm.
async fn deploy_supervise_and_delete(world: &World, cpi: &dyn Cpi) {
    let agent_id = world.agent_ids[0];
    let agent = agent_id.to_string();
    let stemcell = world.create_stemcell(cpi).await;
    let vm = world.create_vm(cpi, &stemcell, agent_id).await;
    let vm_dir = world.vm_dir(&vm);
    let settings: Value = serde_json::from_slice(
        &std::fs::read(vm_dir.join("bosh/warden-cpi-agent-env.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(settings["mbus"], json!(world.nats.url()));
    assert!(settings["env"]["bosh"]["mbus"]["cert"]["certificate"].is_string());

    let client = world.director(Duration::from_secs(30)).await;
    step(
        "ping_until_ready",
        STEP,
        client.ping_until_ready(&agent, Duration::from_secs(45)),
    )
    .await
    .unwrap();
    assert_eq!(client.info(&agent).await.unwrap(), 1);

    let spec = publish_release(&world.blobs);
    let applied = step("apply", STEP, client.apply(&agent, &spec))
        .await
        .unwrap();
    assert_eq!(applied, json!("applied"));
    let state = client.get_state(&agent, false).await.unwrap();
    assert_eq!(state.spec.deployment, "e2e");
    assert_eq!(state.spec.configuration_hash.as_deref(), Some("config-1"));
    assert!(vm_dir.join("packages/hello/bin/hello").is_file());

    assert_eq!(
        step("start", STEP, client.start(&agent)).await.unwrap(),
        json!("started")
    );
    wait_job_state(&client, &agent, JobState::Running).await;
    let state = client.get_state(&agent, true).await.unwrap();
    assert_eq!(state.processes.len(), 1);
    assert_eq!(state.processes[0].name, JOB);
    assert!(state.vitals.is_some());

    // Crash the job: the agent's supervisor starts it again under a new pid.
    let pidfile = vm_dir.join(format!("data/sys/run/{JOB}/{JOB}.pid"));
    let first = eventually("job pidfile", Duration::from_secs(10), || {
        read_pid(&pidfile).filter(|p| pid_alive(*p))
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = eventually("job restart", Duration::from_secs(30), || {
        read_pid(&pidfile).filter(|p| *p != first && pid_alive(*p))
    })
    .await;
    wait_job_state(&client, &agent, JobState::Running).await;

    step("stop", STEP, client.stop(&agent)).await.unwrap();
    assert!(!pid_alive(second), "job still running after stop");
    wait_job_state(&client, &agent, JobState::Stopped).await;

    step("delete_vm", STEP, cpi.delete_vm(&vm)).await.unwrap();
    assert!(!vm_dir.exists(), "VM directory left behind");
    let left = processes_mentioning(vm.as_str());
    assert!(left.is_empty(), "processes of {vm} left: {left:?}");
    let left = processes_mentioning(&vm_dir.display().to_string());
    assert!(
        left.is_empty(),
        "processes in {} left: {left:?}",
        vm_dir.display()
    );
    assert!(!pid_alive(second) && !pid_alive(first));
    // The agent is gone: pings time out.
    let err = client
        .ping_until_ready(&agent, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Timeout { .. }), "{err}");
    assert_eq!(client.pending_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_cpi_vm_runs_supervises_and_deletes_a_job() {
    let world = World::start(1);
    let sim = world.sim();
    deploy_supervise_and_delete(&world, &sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_sim_cpi_vm_runs_supervises_and_deletes_a_job() {
    let world = World::start(1);
    let cpi = world.external();
    deploy_supervise_and_delete(&world, &cpi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_exceptions_and_heartbeats() {
    let world = World::start(1);
    let sim = world.sim();
    let agent_id = world.agent_ids[0];
    let agent = agent_id.to_string();

    // The health monitor's identity may subscribe to heartbeats; subscribe before the VM boots.
    let hm = bosh_agent_client::mbus::connect(
        &[world.nats.url()],
        &world.pki.hm().unwrap(),
        "health-monitor",
    )
    .await
    .unwrap();
    let mut heartbeats = subscribe_heartbeats(&hm).await.unwrap();

    let stemcell = world.create_stemcell(&sim).await;
    let vm = world.create_vm(&sim, &stemcell, agent_id).await;
    let client = world.director(Duration::from_secs(2)).await;
    step(
        "ping_until_ready",
        STEP,
        client.ping_until_ready(&agent, Duration::from_secs(45)),
    )
    .await
    .unwrap();
    client.ping(&agent).await.unwrap();

    let (from, hb) = step("heartbeat", Duration::from_secs(15), heartbeats.next())
        .await
        .expect("heartbeat stream ended");
    assert_eq!(from, agent);
    assert_eq!(hb.job, None);
    assert_eq!(hb.job_state, JobState::Running);

    // An agent nobody runs: a clean timeout after the request timeout, nothing left pending.
    let nobody = AgentId::new_v4().to_string();
    let started = Instant::now();
    let err = client.call(&nobody, "ping", vec![]).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, AgentError::Timeout { agent_id, method, .. } if *agent_id == nobody && method == "ping"),
        "{err:?}"
    );
    assert!(err.to_string().contains(&nobody), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // get_state is retried twice on timeout: three attempts.
    let started = Instant::now();
    let err = client.get_state(&nobody, false).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(6), "not retried");
    let err = client
        .ping_until_ready(&nobody, Duration::from_millis(2500))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(client.pending_requests(), 0);

    // Exceptions keep the agent's message: a sync one, and a failed async task.
    let err = client
        .call(&agent, "no_such_action", vec![])
        .await
        .unwrap_err();
    assert!(err.is_unknown_message());
    assert_eq!(err.to_string(), "unknown message no_such_action");
    let err = client
        .apply(
            &agent,
            &json!({"deployment": "e2e", "networks": {"nope": {}}}),
        )
        .await
        .unwrap_err();
    let AgentError::Exception {
        message, method, ..
    } = &err
    else {
        panic!("not an exception: {err:?}")
    };
    assert_eq!(method, "apply");
    assert!(
        message.ends_with("Network 'nope' is not found in settings"),
        "{message}"
    );
    let err = client.get_task(&agent, "missing-task").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Task with id missing-task could not be found"),
        "{err}"
    );
    // A failed call leaves the agent usable; a task runs to its bare result.
    assert_eq!(
        client
            .call(&agent, "run_script", vec![json!("nothing"), json!({})])
            .await
            .unwrap(),
        json!({})
    );
    client.ping(&agent).await.unwrap();

    step("delete_vm", STEP, sim.delete_vm(&vm)).await.unwrap();
    assert!(processes_mentioning(vm.as_str()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vm_with_running_jobs_leaves_no_process() {
    let world = World::start(1);
    let sim = world.sim();
    let agent_id = world.agent_ids[0];
    let agent = agent_id.to_string();
    let stemcell = world.create_stemcell(&sim).await;
    let vm = world.create_vm(&sim, &stemcell, agent_id).await;
    let vm_dir = world.vm_dir(&vm);
    let client = world.director(Duration::from_secs(30)).await;
    step(
        "ping_until_ready",
        STEP,
        client.ping_until_ready(&agent, Duration::from_secs(45)),
    )
    .await
    .unwrap();
    step(
        "apply",
        STEP,
        client.apply(&agent, &publish_release(&world.blobs)),
    )
    .await
    .unwrap();
    step("start", STEP, client.start(&agent)).await.unwrap();
    wait_job_state(&client, &agent, JobState::Running).await;
    let pidfile = vm_dir.join(format!("data/sys/run/{JOB}/{JOB}.pid"));
    let job = eventually("job pidfile", Duration::from_secs(10), || {
        read_pid(&pidfile).filter(|p| pid_alive(*p))
    })
    .await;

    // No stop: deleting the VM must take the supervised job (its own process group) along.
    step("delete_vm", STEP, sim.delete_vm(&vm)).await.unwrap();
    eventually("job killed", Duration::from_secs(5), || {
        (!pid_alive(job)).then_some(())
    })
    .await;
    let left = processes_mentioning(&vm_dir.display().to_string());
    assert!(left.is_empty(), "processes of {vm} left: {left:?}");
    assert!(!vm_dir.exists());
}
