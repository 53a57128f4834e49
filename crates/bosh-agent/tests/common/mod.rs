//! Harness for the agent tests: a real nats-server with TLS and BOSH-style authorization, the
//! agent binary as a child process, and a director-side NATS client.

#![allow(dead_code)]

use bosh_agent::testing::{NatsServer, TestPki};
use bosh_agent_protocol::{MbusCert, Request, subjects};
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub pki: TestPki,
    pub nats: NatsServer,
    pub agent_id: String,
    pub base: PathBuf,
    pub blobs: PathBuf,
    pub agent: Option<Child>,
}

impl Harness {
    /// NATS up, agent settings written; the agent is not started yet.
    pub fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate().unwrap();
        let agent_id = uuid::Uuid::new_v4().to_string();
        let nats = NatsServer::start(
            &dir.path().join("nats"),
            &pki,
            &pki.server().unwrap(),
            &[&agent_id],
        )
        .unwrap();
        let base = dir.path().join(format!("agent-base-dir-{agent_id}"));
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(base.join("bosh")).unwrap();
        std::fs::create_dir_all(&blobs).unwrap();
        let h = Harness {
            dir,
            pki,
            nats,
            agent_id,
            base,
            blobs,
            agent: None,
        };
        let cert = h.pki.agent(&h.agent_id).unwrap();
        h.write_settings(
            &format!("nats://nats:nats-password@127.0.0.1:{}", h.nats.port),
            &cert,
        );
        h
    }

    pub fn settings_path(&self) -> PathBuf {
        self.base.join("bosh/dummy-cpi-agent-env.json")
    }

    /// Writes agent.json and the settings file as the dummy CPI does.
    pub fn write_settings(&self, mbus: &str, cert: &MbusCert) {
        let agent_json = json!({"Infrastructure": {"Settings": {"Sources": [{"Type": "File", "SettingsPath": self.settings_path()}]}}});
        std::fs::write(self.base.join("agent.json"), agent_json.to_string()).unwrap();
        let settings = json!({
            "agent_id": self.agent_id,
            "blobstore": {"provider": "local", "options": {"blobstore_path": self.blobs}},
            "ntp": [], "disks": {"persistent": {}},
            "networks": {"a": {"type": "manual", "ip": "192.168.50.2", "netmask": "255.255.255.0", "gateway": "192.168.50.1",
                               "default": ["dns", "gateway"], "dns": [], "cloud_properties": {}},
                         "d": {"type": "dynamic", "ip": "10.1.0.7", "netmask": "255.255.0.0", "gateway": "10.1.0.1"}},
            "vm": {"name": format!("vm-{}", self.agent_id)}, "cert": "",
            "env": {"bosh": {"mbus": {"cert": cert}}},
            "mbus": mbus,
        });
        std::fs::write(self.settings_path(), settings.to_string()).unwrap();
    }

    pub fn spawn_agent(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bosh-agent"))
            .arg("-b")
            .arg(&self.base)
            .args(["-P", "dummy", "-M", "dummy-nats", "-C"])
            .arg(self.base.join("agent.json"))
            .current_dir(&self.base)
            .env("BOSH_AGENT_HEARTBEAT_INTERVAL", "1")
            .env("BOSH_AGENT_SUPERVISOR_INTERVAL", "0.2")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Waits up to `limit` for the agent process to exit.
    pub fn wait_agent_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.agent.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub async fn client(
        &self,
        cert: &MbusCert,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        let tls = bosh_agent::mbus::tls_config(cert).unwrap();
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .tls_client_config(tls)
            .connection_timeout(Duration::from_secs(5))
            .connect(self.nats.url())
            .await
    }

    pub async fn director(&self) -> Director {
        let client = self.client(&self.pki.director().unwrap()).await.unwrap();
        let process = uuid::Uuid::new_v4().to_string();
        let replies = client
            .subscribe(subjects::director_replies(&process))
            .await
            .unwrap();
        client.flush().await.unwrap();
        Director {
            client,
            replies,
            process,
            agent_id: self.agent_id.clone(),
        }
    }

    /// Kills processes started by supervised jobs (they outlive the agent by design).
    fn kill_jobs(&self) {
        for entry in walk(&self.base.join("data/sys/run")) {
            if entry.extension().is_some_and(|e| e == "pid")
                && let Some(pid) = bosh_agent::supervisor::read_pid(&entry)
            {
                bosh_agent::supervisor::kill_group(pid);
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_jobs();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ---\n{}\n--- nats log ---\n{}",
                self.agent_log(),
                self.nats.log()
            );
        }
    }
}

pub struct Director {
    pub client: async_nats::Client,
    replies: async_nats::Subscriber,
    process: String,
    agent_id: String,
}

impl Director {
    /// One request; the raw reply JSON, or `None` on timeout.
    pub async fn send(&mut self, method: &str, args: Value, timeout: Duration) -> Option<Value> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let reply_to = subjects::director_reply(&self.process, &self.agent_id, &request_id);
        let Value::Array(arguments) = args else {
            panic!("arguments must be an array")
        };
        let req = Request::new(method, arguments, reply_to.clone());
        self.client
            .publish(
                subjects::agent_inbox(&self.agent_id),
                serde_json::to_vec(&req).unwrap().into(),
            )
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.replies.next())
                .await
                .ok()??;
            if msg.subject.as_str() == reply_to {
                return Some(serde_json::from_slice(&msg.payload).unwrap());
            }
        }
    }

    pub async fn call(&mut self, method: &str, args: Value) -> Value {
        self.send(method, args, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{method}: no reply"))
    }

    /// Pings until the agent answers (the director's `wait_until_ready`).
    pub async fn wait_ready(&mut self) {
        for _ in 0..30 {
            if self.send("ping", json!([]), Duration::from_secs(1)).await
                == Some(json!({"value": "pong"}))
            {
                return;
            }
        }
        panic!("agent never answered ping");
    }

    /// Sends an async action and polls `get_task` until it is no longer running; returns the
    /// final raw reply.
    pub async fn run_task(&mut self, method: &str, args: Value) -> Value {
        let first = self.call(method, args).await;
        let id = first["value"]["agent_task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} did not start a task: {first}"))
            .to_owned();
        assert_eq!(first["value"]["state"], "running");
        for _ in 0..600 {
            let r = self.call("get_task", json!([id])).await;
            if r["value"]["state"] != "running" || r["value"]["agent_task_id"] != json!(id) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("task {method} never finished");
    }

    /// Polls `get_state` until `job_state` is `want`.
    pub async fn wait_job_state(&mut self, want: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.call("get_state", json!([])).await;
            if state["value"]["job_state"] == want {
                return state["value"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "job_state never became {want}: {state}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A gzipped tarball of `(path, content, mode)` entries.
pub fn tgz(entries: &[(&str, &str, u32)]) -> Vec<u8> {
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

pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(data))
}

pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
