//! End to end on this machine's Docker engine: a docker stemcell with our `bosh-agent`
//! (built, or reused from the stemcell cache) imported by `DockerCpi`, a container VM whose
//! agent dials a TLS nats-server on the Docker network's gateway and downloads its job from a
//! DAV blobstore served there too, and the director-side `AgentClient` driving it: ping,
//! apply, start, a killed job brought back by the agent's supervisor, a persistent disk
//! attached, mounted by the agent and written, the VM deleted, a new VM given the same disk
//! that still holds the file, and nothing of the test's left on the engine.
//!
//! Persistent disks follow the real docker CPI and warden stemcells: the volume is bound at
//! `/warden-cpi-dev/<cid>` and the agent bind-mounts that directory at `/var/vcap/store`.
//!
//! The test needs a Docker engine, `nats-server`, and either root with `debootstrap` (for a
//! cold stemcell build, ~3 min; later builds reuse `~/.cache/bosh-rs/stemcell`) or
//! `$BOSH_RS_DOCKER_STEMCELL` naming a built docker stemcell tarball. Without them it prints
//! a SKIP line. `$BOSH_AGENT_BIN` overrides the agent put into the stemcell; otherwise
//! `cargo build -p bosh-agent` runs into this test's target directory.

mod docker_support;

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bosh_agent::testing::{NatsServer, TestPki};
use bosh_agent_client::{AgentClient, AgentClientConfig};
use bosh_agent_protocol::JobState;
use bosh_cpi::Cpi;
use bosh_cpi::docker::{DockerAgentConfig, DockerCpi, DockerCpiConfig, DockerEngineConfig};
use bosh_cpi_protocol::methods::*;
use bosh_types::ids::{AgentId, DiskCid, StemcellCid, VmCid};
use docker_support::{Cleanup, exec, leftovers, random_subnet, unique_prefix};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on one CPI or agent step (a cold stemcell import or container rebuild is slow).
const STEP: Duration = Duration::from_secs(180);
const JOB: &str = "ticker";

// ---------------------------------------------------------------------------------------------
// Small helpers

async fn step<T>(what: &str, limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {limit:?}"))
}

/// Wall-clock time of each phase, printed at the end.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    async fn time<T>(
        &mut self,
        what: &'static str,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        let start = Instant::now();
        let out = step(what, STEP, fut).await;
        self.0.push((what, start.elapsed()));
        out
    }

    fn print(&self) {
        println!("docker_e2e timings:");
        for (what, took) in &self.0 {
            println!("  {what:<34} {:>8.1}s", took.as_secs_f64());
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

fn have_debootstrap() -> bool {
    ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .iter()
        .any(|p| Path::new(p).is_file())
}

fn nats_server_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

/// `bosh-agent` for the stemcell: `$BOSH_AGENT_BIN`, else built into this test's target dir
/// and profile (`<target>/<profile>/deps/docker_e2e-…` is this executable).
fn agent_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BOSH_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target_dir = profile_dir.parent().unwrap();
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
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
    let out = cmd.output().expect("running cargo build -p bosh-agent");
    assert!(
        out.status.success(),
        "building bosh-agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.join("bosh-agent")
}

/// The stemcell tarball: `$BOSH_RS_DOCKER_STEMCELL`, or a fresh build (the debootstrapped
/// base comes from the cache after the first run). The agent's debug info is stripped
/// first: it is most of a debug binary and only slows the import.
fn stemcell_tarball(work: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("BOSH_RS_DOCKER_STEMCELL") {
        return PathBuf::from(path);
    }
    let agent = work.join("bosh-agent");
    std::fs::copy(agent_bin(), &agent).expect("copying bosh-agent");
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&agent)
        .status();
    let mut opts = bosh_stemcell::DockerStemcellOptions::new(work.join("stemcell.tgz"), agent);
    opts.version = "0.0.1-e2e".into();
    bosh_stemcell::build_docker_stemcell(&opts)
        .expect("building the docker stemcell")
        .path
}

/// Unpacks the `image` member of a stemcell tarball, as the director does before
/// `create_stemcell`.
fn unpack_image(tarball: &Path, dest: &Path) -> PathBuf {
    let file = std::fs::File::open(tarball).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        if path.file_name().is_some_and(|n| n == "image") {
            let out = dest.join("image");
            entry.unpack(&out).unwrap();
            return out;
        }
    }
    panic!("{} has no image", tarball.display());
}

// ---------------------------------------------------------------------------------------------
// A DAV blobstore the agent reads: `GET /<2 hex>/<id>` with basic auth

const DAV_USER: &str = "agent";
const DAV_PASSWORD: &str = "dav-secret";

type Blobs = Arc<Mutex<HashMap<String, Vec<u8>>>>;

struct DavServer {
    endpoint: String,
    blobs: Blobs,
    /// Paths served, in order.
    served: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DavServer {
    async fn start(host: Ipv4Addr) -> DavServer {
        let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let blobs: Blobs = Arc::default();
        let served: Arc<Mutex<Vec<String>>> = Arc::default();
        let (b, s) = (blobs.clone(), served.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_dav(conn, b.clone(), s.clone()));
            }
        });
        DavServer {
            endpoint,
            blobs,
            served,
            task,
        }
    }

    fn put(&self, id: &str, data: Vec<u8>) {
        let path = format!("/{}", bosh_agent::blobstore::dav_path(id));
        self.blobs.lock().unwrap().insert(path, data);
    }

    fn settings(&self) -> Value {
        json!({"provider": "dav", "options": {
            "endpoint": self.endpoint, "user": DAV_USER, "password": DAV_PASSWORD}})
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection (`Connection: close`): enough for reqwest's GETs.
async fn serve_dav(mut conn: tokio::net::TcpStream, blobs: Blobs, served: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.lines();
    let mut request = lines.next().unwrap_or_default().split(' ');
    let (method, path) = (request.next().unwrap_or(""), request.next().unwrap_or(""));
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{DAV_USER}:{DAV_PASSWORD}"));
    let expected = format!("basic {credentials}");
    let authorized = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("authorization") && v.trim().eq_ignore_ascii_case(&expected)
        })
    });
    let found = blobs.lock().unwrap().get(path).cloned();
    let (status, body) = match (method, authorized, found) {
        (_, false, _) => ("401 Unauthorized", Vec::new()),
        ("GET", true, Some(data)) => {
            served.lock().unwrap().push(path.to_owned());
            ("200 OK", data)
        }
        ("GET", true, None) => ("404 Not Found", Vec::new()),
        _ => ("405 Method Not Allowed", Vec::new()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(header.as_bytes()).await;
    let _ = conn.write_all(&body).await;
    let _ = conn.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The job

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

/// Publishes a job (a monit file and a ctl script running a shell loop under a pidfile, with
/// the real `/var/vcap` paths) and a package; returns the apply spec naming them.
fn publish_release(dav: &DavServer, ip: &str) -> Value {
    let monit = format!(
        "check process {JOB}\n  with pidfile /var/vcap/sys/run/{JOB}/{JOB}.pid\n  start program \"/var/vcap/jobs/{JOB}/bin/ctl start\"\n  stop program \"/var/vcap/jobs/{JOB}/bin/ctl stop\"\n  group vcap\n"
    );
    let ctl = format!(
        "#!/bin/sh\nRUN=/var/vcap/sys/run/{JOB}\ncase $1 in\n  start)\n    mkdir -p $RUN\n    (while true; do sleep 0.2; done) </dev/null >/dev/null 2>&1 &\n    echo $! > $RUN/{JOB}.pid ;;\n  stop) kill $(cat $RUN/{JOB}.pid) ;;\nesac\n"
    );
    let archive = tgz(&[
        (&format!("{JOB}/monit"), &monit, 0o644),
        (&format!("{JOB}/bin/ctl"), &ctl, 0o755),
    ]);
    dav.put("rendered-templates-1", archive.clone());
    let package = tgz(&[("bin/hello", "#!/bin/sh\necho hello\n", 0o755)]);
    dav.put("package-1", package.clone());
    json!({
        "deployment": "e2e", "name": "worker", "id": "instance-1", "index": 0, "az": "z1",
        "job": {"name": "worker", "template": JOB, "version": "1",
                "templates": [{"name": JOB, "version": "1", "sha1": "unused", "blobstore_id": "unused"}]},
        "packages": {"hello": {"name": "hello", "version": "1.0", "sha1": sha256(&package), "blobstore_id": "package-1"}},
        "networks": {"default": {"type": "manual", "ip": ip, "netmask": "255.255.255.0", "default": ["dns", "gateway"]}},
        "configuration_hash": "config-1",
        "rendered_templates_archive": {"blobstore_id": "rendered-templates-1", "sha1": sha256(&archive)},
        "persistent_disk": 1024
    })
}

// ---------------------------------------------------------------------------------------------
// The world

struct World {
    docker: Docker,
    network: String,
    gateway: Ipv4Addr,
    pki: TestPki,
    nats: NatsServer,
    dav: DavServer,
    agents: [AgentId; 2],
    cpi: DockerCpi,
    /// Container logs shown when the test fails.
    vms: Mutex<Vec<VmCid>>,
    // Dropped last (fields drop in order): removes everything carrying the prefix.
    _dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

/// Creates the Docker network first, so its gateway address exists on this host for NATS
/// and the blobstore to listen on.
async fn create_network(docker: &Docker, name: &str) -> (Ipv4Addr, String) {
    let mut last = String::new();
    for _ in 0..5 {
        let (_, gateway, subnet) = random_subnet();
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.clone()),
                    gateway: Some(gateway.clone()),
                    ..Default::default()
                }]),
                options: None,
            }),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => return (gateway.parse().unwrap(), subnet),
            // Another network already serves that subnet: pick another.
            Err(e) => last = e.to_string(),
        }
    }
    panic!("creating network {name}: {last}");
}

impl World {
    async fn vm_networks(&self, last_octet: u8) -> (String, Networks) {
        let o = self.gateway.octets();
        let ip = format!("{}.{}.{}.{last_octet}", o[0], o[1], o[2]);
        let networks: Networks = serde_json::from_value(json!({
            "default": {"type": "manual", "ip": ip, "netmask": "255.255.255.0",
                        "gateway": self.gateway.to_string(), "dns": [],
                        "default": ["dns", "gateway"],
                        "cloud_properties": {"name": self.network}}
        }))
        .unwrap();
        (ip, networks)
    }

    /// `create_vm` with the env the director sends: the agent's mbus certificate.
    async fn create_vm(&self, stemcell: &StemcellCid, agent: AgentId, octet: u8) -> VmCid {
        let (_, networks) = self.vm_networks(octet).await;
        let cert = self.pki.agent(&agent.to_string()).unwrap();
        let env = json!({"bosh": {"mbus": {"cert": cert}, "group": "e2e"}});
        let result = self
            .cpi
            .create_vm(CreateVmArgs {
                agent_id: agent,
                stemcell_cid: stemcell.clone(),
                cloud_properties: CloudProperties::new(),
                networks,
                disk_cids: DiskCids::default(),
                env: serde_json::from_value(env).unwrap(),
            })
            .await
            .unwrap();
        self.vms.lock().unwrap().push(result.vm_cid.clone());
        result.vm_cid
    }

    async fn director(&self) -> AgentClient {
        let config = AgentClientConfig {
            timeout: Duration::from_secs(30),
            ..Default::default()
        };
        AgentClient::connect(&[self.nats.url()], &self.pki.director().unwrap(), config)
            .await
            .unwrap()
    }

    /// The agent's log inside each VM still around, and the NATS log.
    async fn logs(&self) -> String {
        let mut out = String::new();
        let vms = self.vms.lock().unwrap().clone();
        for vm in vms {
            let (_, log) = exec_in(
                &self.docker,
                &vm,
                "grep -v method=get_state /var/vcap/bosh/log/current | tail -n 80",
            )
            .await;
            out.push_str(&format!("--- agent log of {vm} ---\n{log}\n"));
        }
        out.push_str(&format!("--- nats ---\n{}\n", self.nats.log()));
        out
    }
}

/// `sh -c script` in the container; (exit code, output).
async fn exec_in(docker: &Docker, vm: &VmCid, script: &str) -> (i64, String) {
    exec(docker, vm.as_str(), &["/bin/sh", "-c", script]).await
}

async fn job_pid(docker: &Docker, vm: &VmCid) -> Option<u32> {
    let script = format!(
        "p=$(cat /var/vcap/sys/run/{JOB}/{JOB}.pid 2>/dev/null) && kill -0 \"$p\" && echo \"$p\""
    );
    let (code, out) = exec_in(docker, vm, &script).await;
    if code != 0 {
        return None;
    }
    out.trim().parse().ok()
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `limit`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_job_state(client: &AgentClient, agent: &str, want: JobState) {
    eventually("job state", Duration::from_secs(60), || async {
        let state = client.get_state(agent, false).await.ok()?;
        (state.job_state == want).then_some(())
    })
    .await;
}

async fn mount_disk(client: &AgentClient, agent: &str, disk: &DiskCid) {
    let r = client
        .call(agent, "mount_disk", vec![json!(disk.as_str())])
        .await
        .unwrap();
    assert_eq!(r, json!({}));
}

async fn listed_disks(client: &AgentClient, agent: &str) -> Value {
    client.call(agent, "list_disk", vec![]).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The flow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_vm_runs_a_supervised_job_and_keeps_its_disk_across_vms() {
    let test = "docker_vm_runs_a_supervised_job_and_keeps_its_disk_across_vms";
    let Some(docker) = docker_support::engine(test).await else {
        return;
    };
    if !nats_server_bin().is_file() {
        println!("SKIP {test}: no nats-server (apt-get install nats-server)");
        return;
    }
    if std::env::var_os("BOSH_RS_DOCKER_STEMCELL").is_none() && !(is_root() && have_debootstrap()) {
        println!(
            "SKIP {test}: building a docker stemcell needs root and debootstrap (or set BOSH_RS_DOCKER_STEMCELL)"
        );
        return;
    }
    let started = Instant::now();
    let mut t = Timings::default();
    let prefix = unique_prefix();
    let cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let dir = tempfile::tempdir().unwrap();

    let work = dir.path().to_owned();
    let image = t
        .time("stemcell build (agent + cache)", async {
            tokio::task::spawn_blocking(move || {
                let tarball = stemcell_tarball(&work);
                unpack_image(&tarball, &work)
            })
            .await
            .unwrap()
        })
        .await;

    let network = format!("{prefix}net");
    let (gateway, _) = create_network(&docker, &network).await;
    let pki = TestPki::generate().unwrap();
    let agents = [AgentId::new_v4(), AgentId::new_v4()];
    let ids: Vec<String> = agents.iter().map(|a| a.to_string()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let nats = NatsServer::start_on(
        gateway,
        &dir.path().join("nats"),
        &pki,
        &pki.server_for(&[&gateway.to_string()]).unwrap(),
        &id_refs,
    )
    .unwrap();
    let dav = DavServer::start(gateway).await;
    let mut config = DockerCpiConfig::new(
        DockerEngineConfig::default(),
        DockerAgentConfig {
            mbus: nats.url(),
            ntp: vec![],
            blobstore: Some(dav.settings()),
        },
    );
    config.name_prefix = prefix.clone();
    config.stop_timeout_secs = 5;
    let world = World {
        docker: docker.clone(),
        network,
        gateway,
        pki,
        nats,
        dav,
        agents,
        cpi: DockerCpi::new(config).unwrap(),
        vms: Mutex::new(Vec::new()),
        _dir: dir,
        _cleanup: cleanup,
    };

    let flow = std::panic::AssertUnwindSafe(flow(&world, &image, &mut t));
    let result = futures::FutureExt::catch_unwind(flow).await;
    if let Err(panic) = result {
        eprintln!("{}", world.logs().await);
        std::panic::resume_unwind(panic);
    }
    t.print();
    println!(
        "  {:<34} {:>8.1}s",
        "total",
        started.elapsed().as_secs_f64()
    );

    // The network is the test's own (the CPI never deletes networks); then nothing is left.
    docker.remove_network(&world.network).await.unwrap();
    let left = leftovers(&docker, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

async fn flow(world: &World, image: &Path, t: &mut Timings) {
    let cpi = &world.cpi;
    let docker = &world.docker;
    let stemcell = t
        .time(
            "create_stemcell (docker import)",
            cpi.create_stemcell(CreateStemcellArgs {
                image_path: image.display().to_string(),
                cloud_properties: CloudProperties::new(),
                options: None,
            }),
        )
        .await
        .unwrap();

    // First VM: boot, apply, start, supervise.
    let agent = world.agents[0].to_string();
    let vm = t
        .time("create_vm", world.create_vm(&stemcell, world.agents[0], 10))
        .await;
    let client = world.director().await;
    t.time(
        "agent answers ping",
        client.ping_until_ready(&agent, Duration::from_secs(150)),
    )
    .await
    .unwrap();
    assert_eq!(client.info(&agent).await.unwrap(), 1);

    let (ip, _) = world.vm_networks(10).await;
    let spec = publish_release(&world.dav, &ip);
    let applied = t.time("apply", client.apply(&agent, &spec)).await.unwrap();
    assert_eq!(applied, json!("applied"));
    let served = world.dav.served.lock().unwrap().clone();
    assert_eq!(
        served.len(),
        2,
        "the agent fetched both blobs over DAV: {served:?}"
    );
    let state = client.get_state(&agent, false).await.unwrap();
    assert_eq!(state.spec.deployment, "e2e");
    assert_eq!(state.spec.configuration_hash.as_deref(), Some("config-1"));
    let (code, out) = exec_in(docker, &vm, "/var/vcap/packages/hello/bin/hello").await;
    assert_eq!((code, out.trim()), (0, "hello"));

    assert_eq!(
        t.time("start", client.start(&agent)).await.unwrap(),
        json!("started")
    );
    t.time(
        "job running",
        wait_job_state(&client, &agent, JobState::Running),
    )
    .await;
    let state = client.get_state(&agent, true).await.unwrap();
    assert_eq!(state.processes.len(), 1);
    assert_eq!(state.processes[0].name, JOB);
    assert!(state.vitals.is_some());

    // Crash the job inside the container: the agent's supervisor starts it again.
    let first = eventually("job pidfile", Duration::from_secs(30), || {
        job_pid(docker, &vm)
    })
    .await;
    let (code, out) = exec_in(docker, &vm, &format!("kill -9 {first}")).await;
    assert_eq!(code, 0, "{out}");
    let second = t
        .time(
            "killed job restarted",
            eventually("job restart", Duration::from_secs(90), || async {
                job_pid(docker, &vm).await.filter(|p| *p != first)
            }),
        )
        .await;
    assert_ne!(first, second);
    wait_job_state(&client, &agent, JobState::Running).await;

    // A persistent disk: attach (the container is rebuilt with the volume bound), the agent
    // comes back with its job, mounts the disk at the store, a file is written there.
    let disk = t
        .time(
            "create_disk",
            cpi.create_disk(CreateDiskArgs {
                size_mib: 1024,
                cloud_properties: CloudProperties::new(),
                vm_cid: Some(vm.clone()),
            }),
        )
        .await
        .unwrap();
    let hint = t
        .time(
            "attach_disk (container rebuilt)",
            cpi.attach_disk(&vm, &disk),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&hint).unwrap(),
        json!(format!("/warden-cpi-dev/{disk}"))
    );
    t.time(
        "agent back after attach",
        client.ping_until_ready(&agent, Duration::from_secs(150)),
    )
    .await
    .unwrap();
    t.time(
        "job running after attach",
        wait_job_state(&client, &agent, JobState::Running),
    )
    .await;
    t.time("mount_disk", mount_disk(&client, &agent, &disk))
        .await;
    assert_eq!(listed_disks(&client, &agent).await, json!([disk.as_str()]));
    // Mounting again is a no-op.
    mount_disk(&client, &agent, &disk).await;
    let (code, out) = exec_in(
        docker,
        &vm,
        "grep ' /var/vcap/store ' /proc/self/mountinfo && echo kept-by-the-disk > /var/vcap/store/marker",
    )
    .await;
    assert_eq!(code, 0, "store is not a mount: {out}");

    t.time("delete_vm", cpi.delete_vm(&vm)).await.unwrap();
    assert!(!cpi.has_vm(&vm).await.unwrap());
    assert!(
        cpi.has_disk(&disk).await.unwrap(),
        "the disk outlives its VM"
    );
    let left: Vec<String> = leftovers(docker, vm.as_str()).await;
    assert!(left.is_empty(), "{vm} left {left:?}");

    // Second VM (a new agent id, as the director gives a recreated VM): same disk, same file.
    let agent2 = world.agents[1].to_string();
    let vm2 = t
        .time(
            "create_vm (second)",
            world.create_vm(&stemcell, world.agents[1], 11),
        )
        .await;
    t.time("attach_disk (second)", cpi.attach_disk(&vm2, &disk))
        .await
        .unwrap();
    t.time(
        "second agent answers ping",
        client.ping_until_ready(&agent2, Duration::from_secs(150)),
    )
    .await
    .unwrap();
    assert_eq!(listed_disks(&client, &agent2).await, json!([]));
    t.time("mount_disk (second)", mount_disk(&client, &agent2, &disk))
        .await;
    assert_eq!(listed_disks(&client, &agent2).await, json!([disk.as_str()]));
    let (code, out) = exec_in(docker, &vm2, "cat /var/vcap/store/marker").await;
    assert_eq!((code, out.trim()), (0, "kept-by-the-disk"));
    // The agent unmounts it again on request (the director does before detach_disk).
    let r = client
        .call(&agent2, "unmount_disk", vec![json!(disk.as_str())])
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({"message": format!("Unmounted partition of /warden-cpi-dev/{disk}")})
    );
    assert_eq!(listed_disks(&client, &agent2).await, json!([]));

    t.time("delete_vm (second)", cpi.delete_vm(&vm2))
        .await
        .unwrap();
    t.time("delete_disk", cpi.delete_disk(&disk)).await.unwrap();
    assert!(!cpi.has_disk(&disk).await.unwrap());
    t.time("delete_stemcell", cpi.delete_stemcell(&stemcell))
        .await
        .unwrap();
    assert_eq!(client.pending_requests(), 0);
}
