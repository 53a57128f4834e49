//! The deploy tests' harness: an in-process director with `--cpi sim` (its own nats-server
//! child, the real `bosh-agent` as each VM), uploads over the API, task and event helpers,
//! and views of the database, the sim CPI's root and the agents' logs. Included with
//! `#[path]` by test files that also declare `mod common;`.
#![allow(dead_code)]

use bosh_director::config::DirectorConfig;
use bosh_director::server::{DirectorOptions, RunningDirector, director_start};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

pub fn agent_bin() -> &'static Path {
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

pub struct World {
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub director: Option<RunningDirector>,
    pub client: reqwest::Client,
    pub password: String,
}

impl World {
    pub async fn start() -> World {
        World::start_with(|_| {}).await
    }

    /// Like [`World::start`], with `customize` applied to the director's options first.
    pub async fn start_with(customize: impl FnOnce(&mut DirectorOptions)) -> World {
        let tmp = common::data_dir();
        let dir = tmp.path().to_owned();
        let mut opts =
            DirectorOptions::new(dir.clone(), "127.0.0.1:0", "sim", DirectorConfig::default());
        opts.agent_command = Some(vec![agent_bin().display().to_string()]);
        customize(&mut opts);
        let director = director_start(opts).await.unwrap();
        let (client, password) = director_client(&director, &dir, Duration::from_secs(300));
        World {
            _dir: tmp,
            dir,
            director: Some(director),
            client,
            password,
        }
    }

    pub fn url(&self) -> &str {
        &self.director.as_ref().unwrap().url
    }

    pub fn state(&self) -> &bosh_director::api::AppState {
        &self.director.as_ref().unwrap().state
    }

    pub fn db(&self) -> &bosh_director::db::Db {
        &self.state().db
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .unwrap()
    }

    pub async fn task_wait(&self, id: i64) -> Value {
        self.task_wait_for(id, Duration::from_secs(600)).await
    }

    /// Waits up to `limit` for task `id` to end.
    pub async fn task_wait_for(&self, id: i64, limit: Duration) -> Value {
        task_poll(
            &self.client,
            self.url(),
            &self.password,
            id,
            limit,
            Duration::from_millis(200),
        )
        .await
    }

    /// Follows a task endpoint's 302 and waits for the task.
    pub async fn task_follow(&self, resp: reqwest::Response) -> (i64, Value) {
        let id = task_id(resp).await;
        (id, self.task_wait(id).await)
    }

    pub async fn upload(&self, what: &str, path: &Path) {
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
        let (_, task) = self.task_follow(resp).await;
        assert_eq!(task["state"], "done", "{what}: {task}");
    }

    pub fn sim_root(&self) -> PathBuf {
        self.dir.join("sim-cpi")
    }

    /// VMs ever created: the sim CPI keeps one agent log per VM.
    pub fn vms_created(&self) -> usize {
        std::fs::read_dir(self.sim_root().join("logs"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn vms_alive(&self) -> usize {
        std::fs::read_dir(self.sim_root().join("vms"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn task_events(&self, id: i64) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.join(format!("tasks/{id}/event"))).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub async fn db_count(&self, sql: &str) -> i64 {
        let row: (i64,) = sqlx::query_as(sql)
            .fetch_one(self.db().pool())
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

/// An HTTPS client trusting `director`'s CA (redirects not followed, requests limited to
/// `timeout`) and the admin password from the data dir `dir`.
pub fn director_client(
    director: &RunningDirector,
    dir: &Path,
    timeout: Duration,
) -> (reqwest::Client, String) {
    let ca = std::fs::read(&director.ca_cert_path).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .unwrap();
    let creds = std::fs::read_to_string(dir.join("credentials.yml")).unwrap();
    let password = creds
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    (client, password)
}

/// The task id of a task endpoint's answer, which must be a 302 to `/tasks/<id>`.
pub async fn task_id(resp: reqwest::Response) -> i64 {
    assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
    resp.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/tasks/")
        .parse()
        .unwrap()
}

/// Polls `GET /tasks/<id>` every `interval` until the task ends; fails after `limit`.
pub async fn task_poll(
    client: &reqwest::Client,
    url: &str,
    password: &str,
    id: i64,
    limit: Duration,
    interval: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let task: Value = client
            .get(format!("{url}/tasks/{id}"))
            .basic_auth("admin", Some(password))
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
        tokio::time::sleep(interval).await;
    }
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
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

pub fn processes_mentioning(needle: &str) -> Vec<i32> {
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

pub fn copy_dir(src: &Path, dst: &Path) {
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
pub fn greeter_tarball(work: &Path, name: &str, libgreet_packaging: Option<&str>) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/greeter-release");
    let rel = work.join(name);
    copy_dir(&src, &rel);
    let _ = std::fs::remove_dir_all(rel.join(".dev_builds"));
    let _ = std::fs::remove_dir_all(rel.join("dev_releases"));
    if let Some(script) = libgreet_packaging {
        std::fs::write(rel.join("packages/libgreet/packaging"), script).unwrap();
    }
    dev_release_tarball(work, &rel, name, true)
}

/// Creates a dev release `name` from the release dir `rel` (its version asserted to be
/// `0+dev.1` when `first` is set) and writes it as `work/<name>.tgz`.
pub fn dev_release_tarball(work: &Path, rel: &Path, name: &str, first: bool) -> PathBuf {
    let dir = bosh_release::release_dir::ReleaseDir::new(rel);
    let cache = bosh_release::index::ArchiveCache::new(work.join("cache"));
    let opts = bosh_release::create::CreateOptions {
        name: Some(name.to_owned()),
        force: true,
        ..Default::default()
    };
    let release = bosh_release::create::create_release(&dir, cache, &opts, &mut |_| {}).unwrap();
    if first {
        assert_eq!(release.version, "0+dev.1");
    }
    let out = work.join(format!("{name}.tgz"));
    release.write_tarball(&out).unwrap();
    out
}

impl World {
    pub async fn cloud_config_update(&self, content: &str) {
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
    pub async fn deploy(&self, manifest: &str, query: &str) -> (i64, Value) {
        let resp = self
            .client
            .post(format!("{}/deployments{query}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "text/yaml")
            .body(manifest.to_owned())
            .send()
            .await
            .unwrap();
        self.task_follow(resp).await
    }

    /// `(group, uuid, vm cid, agent id)` of every instance with a VM, by group then index.
    pub async fn instances(&self, deployment: &str) -> Vec<(String, String, String, String)> {
        let state = &self.director.as_ref().unwrap().state;
        sqlx::query_as(
            "SELECT i.instance_group, i.uuid, v.cid, v.agent_id FROM instances i \
             JOIN vms v ON v.instance_id = i.id WHERE i.deployment = $1 \
             ORDER BY i.instance_group, i.instance_index",
        )
        .bind(deployment)
        .fetch_all(state.db.pool())
        .await
        .unwrap()
    }

    pub async fn instance_ips(&self, group: &str) -> Vec<String> {
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

    pub async fn job_state(&self, agent_id: &str) -> String {
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
    pub fn applies(&self) -> usize {
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

    pub fn stages(&self, id: i64) -> Vec<(String, Vec<String>)> {
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
pub async fn http_get(addr: &str) -> String {
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

/// A release job for [`release_tarball`]: its spec, monit file and templates by file name.
pub struct TestJob<'a> {
    pub name: &'a str,
    pub spec: &'a str,
    pub monit: &'a str,
    pub templates: &'a [(&'a str, &'a str)],
}

/// A dev release tarball (`0+dev.1`) holding only `jobs`, no packages: nothing to compile.
pub fn release_tarball(work: &Path, name: &str, jobs: &[TestJob<'_>]) -> PathBuf {
    let rel = work.join(name);
    std::fs::create_dir_all(rel.join("config")).unwrap();
    std::fs::create_dir_all(rel.join("packages")).unwrap();
    std::fs::write(rel.join("config/final.yml"), format!("---\nname: {name}\n")).unwrap();
    for j in jobs {
        let dir = rel.join("jobs").join(j.name);
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        std::fs::write(dir.join("spec"), j.spec).unwrap();
        std::fs::write(dir.join("monit"), j.monit).unwrap();
        for (file, text) in j.templates {
            std::fs::write(dir.join("templates").join(file), text).unwrap();
        }
    }
    dev_release_tarball(work, &rel, name, false)
}

impl World {
    /// A director with the sim stemcell uploaded and `cloud_config` in place.
    pub async fn start_with_stemcell(work: &Path, cloud_config: &str) -> World {
        let w = World::start().await;
        w.upload_sim_stemcell(work).await;
        w.cloud_config_update(cloud_config).await;
        w
    }

    /// Builds the sim stemcell as `work/stemcell.tgz` and uploads it.
    pub async fn upload_sim_stemcell(&self, work: &Path) {
        let stemcell = work.join("stemcell.tgz");
        bosh_stemcell::sim::build_sim_stemcell(&bosh_stemcell::sim::SimStemcellOptions::new(
            &stemcell,
        ))
        .unwrap();
        self.upload("stemcells", &stemcell).await;
    }

    /// `apply` requests the agent of one VM received.
    pub fn applies_on(&self, vm_cid: &str) -> usize {
        std::fs::read_to_string(self.sim_root().join(format!("logs/agent.{vm_cid}.log")))
            .unwrap_or_default()
            .matches("method=apply")
            .count()
    }

    /// The agent's base dir of a VM on the sim CPI.
    pub fn vm_dir(&self, vm_cid: &str) -> PathBuf {
        self.sim_root().join("vms").join(vm_cid)
    }

    /// Seconds each finished "Updating instance" task of a task took, by event task name.
    pub fn update_durations(&self, id: i64) -> Vec<(String, i64)> {
        let events = self.task_events(id);
        let mut out = Vec::new();
        for e in &events {
            if e["stage"] != "Updating instance" || e["state"] != "finished" {
                continue;
            }
            let started = events.iter().find(|s| {
                s["stage"] == e["stage"]
                    && s["task"] == e["task"]
                    && s["tags"] == e["tags"]
                    && s["state"] == "started"
            });
            if let (Some(s), Some(name)) = (started, e["task"].as_str()) {
                let t = |v: &Value| v["time"].as_i64().unwrap_or(0);
                out.push((name.to_owned(), t(e) - t(s)));
            }
        }
        out
    }
}

/// A cloud config for the sim CPI: AZ `z1`, vm type `small`, the manual network `default` on
/// `NET.0/24` (`net` like `127.93.0`, `.2`-`.9` reserved), one compilation worker, and `extra`
/// (more top-level YAML such as `disk_types`) appended.
pub fn sim_cloud_config(net: &str, extra: &str) -> String {
    format!(
        r#"
azs: [{{name: z1}}]
vm_types: [{{name: small, cloud_properties: {{}}}}]
networks:
- name: default
  type: manual
  subnets:
  - range: {net}.0/24
    gateway: {net}.1
    reserved: [{net}.2 - {net}.9]
    azs: [z1]
compilation:
  workers: 1
  network: default
  az: z1
  vm_type: small
{extra}"#
    )
}

/// The monit file of a shell job `job` whose `bin/ctl start` writes its pidfile.
pub fn job_monit(job: &str) -> String {
    format!(
        r#"check process {job}
  with pidfile /var/vcap/sys/run/{job}/{job}.pid
  start program "/var/vcap/jobs/{job}/bin/ctl start"
  stop program "/var/vcap/jobs/{job}/bin/ctl stop"
  group vcap
"#
    )
}

/// The `bin/ctl` template of a shell job `job`: `start` writes the pidfile and runs `exec`
/// (bash, may hold ERB) in its place; `stop` kills that pid.
pub fn job_ctl(job: &str, exec: &str) -> String {
    format!(
        r#"#!/bin/bash
set -eu
RUN=/var/vcap/sys/run/{job}
mkdir -p "$RUN"
case "$1" in
  start)
    echo $$ > "$RUN/{job}.pid"
{exec}
    ;;
  stop)
    kill "$(cat "$RUN/{job}.pid")" 2>/dev/null || true
    rm -f "$RUN/{job}.pid"
    ;;
esac
"#
    )
}

/// A shell job `job` (template `ctl.erb` only, no properties) whose process sleeps.
pub fn sleeper_job(job: &str) -> TestJob<'static> {
    // Leaked so the job reads like the literal ones; a test makes a handful.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let spec = format!(
        "---\nname: {job}\ntemplates:\n  ctl.erb: bin/ctl\npackages: []\nproperties: {{}}\n"
    );
    let ctl = leak(job_ctl(job, "    exec sleep 100000"));
    TestJob {
        name: leak(job.to_owned()),
        spec: leak(spec),
        monit: leak(job_monit(job)),
        templates: Box::leak(Box::new([("ctl.erb", ctl)])),
    }
}

/// A dev release `sleepers` with one shell job `sleeper` whose process sleeps (its pidfile
/// names it): nothing to compile.
pub fn sleepers_release(work: &Path) -> PathBuf {
    release_tarball(work, "sleepers", &[sleeper_job("sleeper")])
}
