//! `bosh deploy` end to end on this machine's Docker engine: an in-process director with
//! `--cpi docker` makes its own Docker network, its nats-server and HTTPS (the DAV blobstore)
//! listen on the network's gateway, and the real `bosh-agent` in our docker stemcell (built,
//! or `$BOSH_RS_DOCKER_STEMCELL`) runs in every container. The greeter release is compiled
//! and deployed (2 servers with a persistent disk, a proxy), the proxy answers from this host,
//! a file on a server's disk survives `recreate=true` (new container, same volume) and a
//! killed container (the health monitor's resurrector makes a new one on the same volume), and
//! delete-deployment leaves no container, volume or IP reservation.
//!
//! Everything the test makes carries a unique name prefix; a guard removes whatever is left
//! (containers, volumes, images, the network) even when the test fails. Without a Docker
//! engine, `nats-server`, or a way to get a stemcell, the test prints a SKIP line.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use bosh_director::config::{DirectorConfig, DockerConfig};
use bosh_director::server::{DirectorOptions, RunningDirector, director_start};
use deploy_world::{agent_bin, director_client, greeter_tarball, task_id, task_poll};
use futures::StreamExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST: &str = "deploy_docker";

fn skip(why: &str) {
    println!("\n**** SKIP {TEST}: {why} ****\n");
}

async fn engine() -> Option<Docker> {
    let docker = match Docker::connect_with_unix_defaults() {
        Ok(d) => d,
        Err(e) => {
            skip(&format!("no Docker engine ({e})"));
            return None;
        }
    };
    match docker.negotiate_version().await {
        Ok(d) if d.ping().await.is_ok() => Some(d),
        _ => {
            skip("no Docker engine answers");
            None
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

/// `$BOSH_RS_DOCKER_STEMCELL`, or a fresh build (the debootstrapped base is cached under
/// `~/.cache/bosh-rs/stemcell`). Debug info is stripped: it only slows the import.
fn stemcell_tarball(work: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("BOSH_RS_DOCKER_STEMCELL") {
        return PathBuf::from(p);
    }
    let agent = work.join("bosh-agent");
    std::fs::copy(agent_bin(), &agent).unwrap();
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&agent)
        .status();
    let mut opts = bosh_stemcell::DockerStemcellOptions::new(work.join("stemcell.tgz"), agent);
    opts.version = "0.0.1-deploy".into();
    bosh_stemcell::build_docker_stemcell(&opts)
        .expect("building the docker stemcell")
        .path
}

// ---------------------------------------------------------------------------------------------
// What the test leaves on the engine

/// Everything on the engine whose name carries `prefix`, as `kind name`.
async fn leftovers(docker: &Docker, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let all = Some(ListContainersOptions {
        all: true,
        ..Default::default()
    });
    for c in docker.list_containers(all).await.unwrap_or_default() {
        for name in c.names.unwrap_or_default() {
            if name.contains(prefix) {
                out.push(format!("container {}", name.trim_start_matches('/')));
            }
        }
    }
    let volumes = docker.list_volumes(None::<ListVolumesOptions>).await;
    for v in volumes.ok().and_then(|v| v.volumes).unwrap_or_default() {
        if v.name.contains(prefix) {
            out.push(format!("volume {}", v.name));
        }
    }
    let images = Some(ListImagesOptions {
        all: true,
        ..Default::default()
    });
    for i in docker.list_images(images).await.unwrap_or_default() {
        for tag in i.repo_tags.into_iter().filter(|t| t.contains(prefix)) {
            out.push(format!("image {tag}"));
        }
    }
    let networks = docker.list_networks(None::<ListNetworksOptions>).await;
    for n in networks.unwrap_or_default() {
        if let Some(name) = n.name.filter(|n| n.contains(prefix)) {
            out.push(format!("network {name}"));
        }
    }
    out
}

async fn remove_all(docker: &Docker, prefix: &str) {
    // Containers first: volumes and the network are in use until they are gone.
    for pass in 0..2 {
        for item in leftovers(docker, prefix).await {
            let (kind, name) = item.split_once(' ').unwrap();
            let _ = match (pass, kind) {
                (0, "container") => {
                    let opts = RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    };
                    docker.remove_container(name, Some(opts)).await
                }
                (0, "image") => {
                    let opts = RemoveImageOptions {
                        force: true,
                        noprune: false,
                    };
                    docker
                        .remove_image(name, Some(opts), None)
                        .await
                        .map(|_| ())
                }
                (1, "volume") => {
                    let opts = RemoveVolumeOptions { force: true };
                    docker.remove_volume(name, Some(opts)).await
                }
                (1, "network") => docker.remove_network(name).await,
                _ => Ok(()),
            };
        }
    }
}

/// Removes everything carrying the prefix when dropped, also on panic.
struct Cleanup {
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop may run inside a runtime: clean up from a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(d) = Docker::connect_with_unix_defaults()
                    && let Ok(d) = d.negotiate_version().await
                {
                    remove_all(&d, &prefix).await;
                }
            });
        })
        .join();
    }
}

/// A /24 in 10.128.0.0/9 that no Docker network on this engine serves yet.
async fn free_subnet(docker: &Docker) -> (String, String) {
    let used: Vec<String> = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| n.ipam?.config)
        .flatten()
        .filter_map(|c| c.subnet)
        .collect();
    loop {
        let a = 128 + rand::random::<u8>() % 120;
        let b = rand::random::<u8>();
        let subnet = format!("10.{a}.{b}.0/24");
        if !used.contains(&subnet) {
            return (subnet, format!("10.{a}.{b}"));
        }
    }
}

/// `sh -c script` in a container: (exit code, output).
async fn exec(docker: &Docker, container: &str, script: &str) -> (i64, String) {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions::<String> {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await.unwrap()
    {
        while let Some(chunk) = output.next().await {
            text.push_str(&chunk.unwrap().to_string());
        }
    }
    let code = docker.inspect_exec(&created.id).await.unwrap().exit_code;
    (code.unwrap_or(-1), text)
}

// ---------------------------------------------------------------------------------------------
// The director

/// Starts a director on a runtime of its own, so that everything it does in the background
/// (task workers, the health monitor's resurrections) can be stopped before the engine is
/// swept.
async fn director_spawn(opts: DirectorOptions) -> (DirectorRuntime, RunningDirector) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A runtime cannot be built, blocked on or dropped inside the test's; a plain thread can.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let started = match rt.block_on(director_start(opts)) {
            Ok(d) => Ok((DirectorRuntime(Some(rt)), d)),
            Err(e) => Err(e),
        };
        let _ = tx.send(started);
    });
    rx.await.unwrap().unwrap()
}

/// The director's runtime, ended from a plain thread (an async context may not block).
struct DirectorRuntime(Option<tokio::runtime::Runtime>);

impl DirectorRuntime {
    /// Shuts `director` down (listener, health monitor, NATS), then ends the runtime, which
    /// drops every task still running: nothing makes a container after this returns.
    fn end(&mut self, director: Option<RunningDirector>) {
        let Some(rt) = self.0.take() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            if let Some(d) = director {
                rt.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(30), d.shutdown()).await;
                });
            }
            rt.shutdown_timeout(Duration::from_secs(10));
        })
        .join();
    }
}

impl Drop for DirectorRuntime {
    fn drop(&mut self) {
        self.end(None);
    }
}

struct World {
    director: Option<RunningDirector>,
    runtime: DirectorRuntime,
    client: reqwest::Client,
    password: String,
    dir: PathBuf,
    // Dropped last (fields drop in order).
    _tmp: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.failure_report();
        }
        // Before `_cleanup` sweeps the engine.
        let director = self.director.take();
        self.runtime.end(director);
    }
}

impl World {
    /// The failing task's debug log says which step broke; NATS's log shows the agents.
    fn failure_report(&self) {
        let mut tasks: Vec<PathBuf> = std::fs::read_dir(self.dir.join("tasks"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        tasks.sort();
        if let Some(last) = tasks.last() {
            let debug = std::fs::read_to_string(last.join("debug")).unwrap_or_default();
            let tail: Vec<&str> = debug.lines().rev().take(60).collect();
            eprintln!("--- {} (tail) ---", last.join("debug").display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        let nats = std::fs::read_to_string(self.dir.join("nats/nats.log")).unwrap_or_default();
        eprintln!("--- nats.log ---\n{nats}");
    }
}

impl World {
    fn url(&self) -> &str {
        &self.director.as_ref().unwrap().url
    }

    async fn task_wait(&self, resp: reqwest::Response) -> Value {
        let id = task_id(resp).await;
        task_poll(
            &self.client,
            self.url(),
            &self.password,
            id,
            Duration::from_secs(900),
            Duration::from_millis(250),
        )
        .await
    }

    async fn upload(&self, what: &str, path: &Path) {
        let resp = self
            .client
            .post(format!("{}/{what}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "application/x-compressed")
            .body(std::fs::read(path).unwrap())
            .send()
            .await
            .unwrap();
        let task = self.task_wait(resp).await;
        assert_eq!(task["state"], "done", "{what}: {task}");
    }

    async fn deploy(&self, manifest: &str, query: &str) {
        let resp = self
            .client
            .post(format!("{}/deployments{query}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "text/yaml")
            .body(manifest.to_owned())
            .send()
            .await
            .unwrap();
        let task = self.task_wait(resp).await;
        assert_eq!(task["state"], "done", "deploy{query}: {task}");
    }

    async fn delete(&self, path: &str) {
        let resp = self
            .client
            .delete(format!("{}/{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .unwrap();
        let task = self.task_wait(resp).await;
        assert_eq!(task["state"], "done", "DELETE {path}: {task}");
    }

    async fn query<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let state = &self.director.as_ref().unwrap().state;
        sqlx::query_as(sql)
            .fetch_all(state.db.pool())
            .await
            .unwrap()
    }

    /// `(group, index, vm cid, agent id, ip)` of every instance with a VM (a VM whose
    /// `create_vm` has not answered yet has no cid and is left out).
    async fn instances(&self) -> Vec<(String, i64, String, String, String)> {
        self.query(
            "SELECT i.instance_group, i.instance_index, v.cid, v.agent_id, a.address \
             FROM instances i JOIN vms v ON v.instance_id = i.id \
             JOIN ip_addresses a ON a.instance_id = i.id \
             WHERE i.deployment = 'greeter' AND v.cid IS NOT NULL ORDER BY i.instance_group, i.instance_index",
        )
        .await
    }

    async fn count(&self, sql: &str) -> i64 {
        self.query::<(i64,)>(sql).await[0].0
    }
}

fn cloud_config(network: &str, subnet: &str, base: &str) -> String {
    format!(
        r#"
azs: [{{name: z1}}]
vm_types: [{{name: small, cloud_properties: {{}}}}]
networks:
- name: default
  type: manual
  subnets:
  - range: {subnet}
    gateway: {base}.1
    reserved: [{base}.2 - {base}.9]
    azs: [z1]
    cloud_properties: {{name: {network}}}
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
  reuse_compilation_vms: true
"#
    )
}

const MANIFEST: &str = r#"
name: greeter
releases: [{name: greeter, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 500-60000
  update_watch_time: 500-60000
instance_groups:
- name: greeter
  instances: 2
  azs: [z1]
  vm_type: small
  stemcell: default
  persistent_disk: 1024
  networks: [{name: default}]
  jobs:
  - name: greeter
    release: greeter
    properties:
      port: 8080
      bind_instance_address: true
      greeting: Hello from a container!
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
    consumes:
      backends: {from: greeter}
variables:
- name: greeter_stats_token
  type: password
"#;

/// Runs `fut`, printing how long it took.
async fn timed<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    println!("{TEST}: {what:<40} {:>7.1}s", start.elapsed().as_secs_f64());
    out
}

/// One HTTP/1.0 GET from this host, retried while the server comes up.
async fn http_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            std::io::Result::Ok(out)
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(out)) if out.starts_with("HTTP/1.") => return out,
            other => assert!(Instant::now() < deadline, "GET {addr}: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_on_docker_keeps_disks_across_recreate_and_deletes_cleanly() {
    let Some(docker) = engine().await else {
        return;
    };
    let nats = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
    if !Path::new(&nats).is_file() {
        skip("no nats-server (apt-get install nats-server)");
        return;
    }
    let debootstrap = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if std::env::var_os("BOSH_RS_DOCKER_STEMCELL").is_none() && !(is_root() && debootstrap) {
        skip(
            "building a docker stemcell needs root and debootstrap (or set BOSH_RS_DOCKER_STEMCELL)",
        );
        return;
    }
    let started = Instant::now();
    let prefix = format!("bosh-rs-dd-{:08x}-", rand::random::<u32>());
    let cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("director");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // The director makes this network; its subnet is one no other network serves.
    let network = format!("{prefix}net");
    let (subnet, base) = free_subnet(&docker).await;
    let config = DirectorConfig {
        docker: DockerConfig {
            network: network.clone(),
            subnet: subnet.clone(),
            name_prefix: prefix.clone(),
            ..DockerConfig::default()
        },
        // A short window, so the resurrection below happens within seconds.
        hm: bosh_director::hm::HmConfig {
            unresponsive_timeout: 3.0,
            resurrection_delay: 0.5,
            ..Default::default()
        },
        ..DirectorConfig::default()
    };
    let (runtime, director) = director_spawn(DirectorOptions::new(
        dir.clone(),
        "127.0.0.1:0",
        "docker",
        config,
    ))
    .await;
    let (client, password) = director_client(&director, &dir, Duration::from_secs(600));
    let mut w = World {
        director: Some(director),
        runtime,
        client,
        password,
        dir,
        _tmp: tmp,
        _cleanup: cleanup,
    };
    // Agents dial NATS on the network's gateway.
    let mbus = w.director.as_ref().unwrap().state.services.agents.clone();
    assert!(
        mbus.unwrap().mbus_url().contains(&format!("{base}.1:")),
        "NATS is not on the gateway"
    );

    let stemcell = timed("stemcell (build or reuse)", async {
        let work = work.clone();
        tokio::task::spawn_blocking(move || stemcell_tarball(&work))
            .await
            .unwrap()
    })
    .await;
    timed(
        "upload-stemcell (docker import)",
        w.upload("stemcells", &stemcell),
    )
    .await;
    let release = greeter_tarball(&work, "greeter", None);
    timed("upload-release", w.upload("releases", &release)).await;
    let resp = w
        .client
        .post(format!("{}/configs", w.url()))
        .basic_auth("admin", Some(&w.password))
        .json(&json!({"type": "cloud", "name": "default",
                      "content": cloud_config(&network, &subnet, &base)}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

    // Deploy: compile in containers, 2 greeters with disks and a proxy, all running.
    timed("deploy (compile + 3 VMs)", w.deploy(MANIFEST, "")).await;
    let instances = w.instances().await;
    assert_eq!(instances.len(), 3, "{instances:?}");
    let agents = w.director.as_ref().unwrap().state.services.agents.clone();
    let agents = agents.unwrap();
    for (group, index, cid, agent, ip) in &instances {
        let state = agents.client().get_state_value(agent, false).await.unwrap();
        assert_eq!(state["job_state"], "running", "{group}/{index}");
        assert!(cid.starts_with(&prefix), "{cid}");
        assert!(ip.starts_with(&format!("{base}.")), "{ip}");
    }
    assert_eq!(
        w.count("SELECT COUNT(*) FROM vms").await,
        3,
        "compilation VMs are gone"
    );
    let proxy_ip = &instances.iter().find(|i| i.0 == "proxy").unwrap().4;
    let answer = timed(
        "proxy answers from the host",
        http_get(&format!("{proxy_ip}:8000")),
    )
    .await;
    assert!(answer.contains("Hello from a container!"), "{answer}");

    // A file on greeter/0's persistent disk.
    let (_, _, cid0, _, _) = instances.iter().find(|i| i.0 == "greeter").unwrap().clone();
    let (code, out) = exec(
        &docker,
        &cid0,
        "grep -q ' /var/vcap/store ' /proc/self/mountinfo && echo kept-by-the-disk > /var/vcap/store/marker",
    )
    .await;
    assert_eq!(code, 0, "the store is not the disk: {out}");
    let disks: Vec<(String,)> = w
        .query("SELECT cid FROM persistent_disks ORDER BY cid")
        .await;
    assert_eq!(disks.len(), 2);

    // recreate=true: every VM is new, the disks (volumes) are the same and keep the file.
    timed("deploy recreate=true", w.deploy(MANIFEST, "?recreate=true")).await;
    let after = w.instances().await;
    assert_eq!(after.len(), 3, "{after:?}");
    for (old, new) in instances.iter().zip(&after) {
        assert_eq!(
            (&old.0, old.1, &old.4),
            (&new.0, new.1, &new.4),
            "same instance and IP"
        );
        assert_ne!(old.2, new.2, "{}/{} has a new container", old.0, old.1);
    }
    assert_eq!(
        w.query::<(String,)>("SELECT cid FROM persistent_disks ORDER BY cid")
            .await,
        disks
    );
    let cid0_new = &after
        .iter()
        .find(|i| i.0 == "greeter" && i.1 == 0)
        .unwrap()
        .2;
    let (code, out) = exec(&docker, cid0_new, "cat /var/vcap/store/marker").await;
    assert_eq!((code, out.trim()), (0, "kept-by-the-disk"));
    let answer = http_get(&format!("{proxy_ip}:8000")).await;
    assert!(answer.contains("Hello from a container!"), "{answer}");

    // A lost VM: its container is killed behind the director's back. The health monitor
    // notices the silent agent and the resurrector recreates the VM with the same disk and IP.
    timed("container killed → resurrected", async {
        docker
            .kill_container(
                cid0_new,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .unwrap();
        // Done when the resurrection task has ended; then greeter/0 must be on a new container.
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let ended: Vec<(String,)> = w
                .query(
                    "SELECT state FROM tasks WHERE type = 'cck_scan_and_fix' \
                     AND state NOT IN ('queued', 'processing')",
                )
                .await;
            if let Some((state,)) = ended.first() {
                assert_eq!(state, "done", "the resurrection failed");
                break;
            }
            assert!(Instant::now() < deadline, "greeter/0 was not resurrected");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let now = w.instances().await;
        let (_, _, cid, agent, ip) = now
            .iter()
            .find(|i| i.0 == "greeter" && i.1 == 0)
            .cloned()
            .unwrap();
        assert_ne!(&cid, cid0_new, "greeter/0 is on a new container");
        let ip0 = &after
            .iter()
            .find(|i| i.0 == "greeter" && i.1 == 0)
            .unwrap()
            .4;
        assert_eq!(&ip, ip0, "same IP");
        let state = agents
            .client()
            .get_state_value(&agent, false)
            .await
            .unwrap();
        assert_eq!(state["job_state"], "running");
        let (code, out) = exec(&docker, &cid, "cat /var/vcap/store/marker").await;
        assert_eq!((code, out.trim()), (0, "kept-by-the-disk"));
    })
    .await;
    let resurrections = w
        .count("SELECT COUNT(*) FROM tasks WHERE type = 'cck_scan_and_fix' AND state = 'done'")
        .await;
    assert!(resurrections >= 1, "no scan-and-fix task ran");
    let answer = http_get(&format!("{proxy_ip}:8000")).await;
    assert!(answer.contains("Hello from a container!"), "{answer}");

    // delete-deployment: no container (nor its ephemeral volume) or IP reservation is left;
    // the persistent disks become orphans, as in BOSH, and are the only volumes left.
    timed("delete-deployment", w.delete("deployments/greeter")).await;
    for table in ["vms", "instances", "persistent_disks", "ip_addresses"] {
        let n = w.count(&format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(n, 0, "{table}");
    }
    let orphans: Vec<(String,)> = w.query("SELECT cid FROM orphan_disks ORDER BY cid").await;
    assert_eq!(orphans, disks, "the disks are orphaned, not deleted");
    let mut left: Vec<String> = leftovers(&docker, &prefix)
        .await
        .into_iter()
        .filter(|l| l.starts_with("container") || l.starts_with("volume"))
        .collect();
    left.sort();
    let expected: Vec<String> = disks.iter().map(|d| format!("volume {}", d.0)).collect();
    assert_eq!(left, expected, "only the orphaned disks are left");
    // What `bosh clean-up` does to orphans: delete_disk through the director's CPI.
    let cpi = w
        .director
        .as_ref()
        .unwrap()
        .state
        .services
        .cpi
        .clone()
        .unwrap();
    for (cid,) in &orphans {
        let cid = bosh_types::ids::DiskCid::new(cid.clone()).unwrap();
        cpi.delete_disk(&cid).await.unwrap();
    }

    // The stemcell's image goes with delete-stemcell; the network is the test's to remove.
    let version = "0.0.1-deploy";
    let stemcells: Value = w
        .client
        .get(format!("{}/stemcells", w.url()))
        .basic_auth("admin", Some(&w.password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = stemcells[0]["name"].as_str().unwrap().to_owned();
    let version = stemcells[0]["version"]
        .as_str()
        .unwrap_or(version)
        .to_owned();
    w.delete(&format!("stemcells/{name}/{version}")).await;
    w.director.take().unwrap().shutdown().await;
    docker.remove_network(&network).await.unwrap();
    let left = leftovers(&docker, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    println!(
        "{TEST}: {:<40} {:>7.1}s",
        "total",
        started.elapsed().as_secs_f64()
    );
}
