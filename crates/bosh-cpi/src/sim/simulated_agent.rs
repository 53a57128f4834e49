//! Simulated agents: a VM of the sim CPI whose "agent" is a tokio task in this process
//! instead of a `bosh-agent` process. It dials the real NATS with the VM's own mbus
//! certificate (so the director's per-agent users and permissions apply), answers the
//! director's requests with canned success in the real agent's reply shapes, and sends
//! heartbeats. Cheap enough that thousands fit in one process: for scale tests and benchmarks.

use bosh_agent_protocol::envelope::{Request, Response, TaskHandle, TaskState};
use bosh_agent_protocol::heartbeat::{Heartbeat, Vitals};
use bosh_agent_protocol::state::JobState;
use bosh_agent_protocol::{MbusCert, subjects};
use futures::StreamExt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The real agent's heartbeat interval.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Replies above nats-server's default `max_payload` are refused by the server.
const MAX_REPLY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SimulatedAgentError {
    #[error("the VM env carries no mbus certificate (env.bosh.mbus.cert)")]
    NoCertificate,
    #[error("invalid mbus certificate: {0}")]
    Certificate(String),
    #[error("mbus URL '{0}' is not nats://host:port")]
    Url(String),
}

/// What a simulated agent needs to boot: its id and VM, where NATS is and who it is there.
#[derive(Debug, Clone)]
pub struct SimulatedAgentSpec {
    pub agent_id: String,
    pub vm_cid: String,
    pub mbus_url: String,
    pub cert: MbusCert,
    pub boot_delay: Duration,
}

impl SimulatedAgentSpec {
    /// The certificate from `create_vm`'s env (`env.bosh.mbus.cert`).
    pub fn cert_from_env(env: &Map<String, Value>) -> Result<MbusCert, SimulatedAgentError> {
        let cert = env
            .get("bosh")
            .and_then(|b| b.get("mbus"))
            .and_then(|m| m.get("cert"))
            .ok_or(SimulatedAgentError::NoCertificate)?;
        serde_json::from_value(cert.clone())
            .map_err(|e| SimulatedAgentError::Certificate(e.to_string()))
    }
}

/// The running simulated agents of one sim CPI, by VM cid.
#[derive(Default)]
pub struct SimulatedAgents {
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SimulatedAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedAgents")
            .field("running", &self.count())
            .finish()
    }
}

impl SimulatedAgents {
    /// Boots the VM's agent in the background (after its boot delay); replaces a previous one.
    pub fn start(&self, spec: SimulatedAgentSpec) -> Result<(), SimulatedAgentError> {
        let tls = tls_config(&spec.cert)?;
        let addr = server_addr(&spec.mbus_url)?;
        let cid = spec.vm_cid.clone();
        let handle = tokio::spawn(agent_run(spec, tls, addr));
        let old = self
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.insert(cid, handle));
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }

    /// Stops the VM's agent (its connection closes); whether it was running.
    pub fn stop(&self, vm_cid: &str) -> bool {
        let handle = self.running.lock().ok().and_then(|mut r| r.remove(vm_cid));
        match handle {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }

    pub fn is_running(&self, vm_cid: &str) -> bool {
        self.running
            .lock()
            .ok()
            .and_then(|r| r.get(vm_cid).map(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    pub fn count(&self) -> usize {
        self.running.lock().map(|r| r.len()).unwrap_or(0)
    }
}

impl Drop for SimulatedAgents {
    fn drop(&mut self) {
        if let Ok(r) = self.running.get_mut() {
            for (_, h) in r.drain() {
                h.abort();
            }
        }
    }
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, SimulatedAgentError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SimulatedAgentError::Certificate(e.to_string()))
}

/// TLS with the VM's client certificate; the server is checked against the mbus CA.
fn tls_config(cert: &MbusCert) -> Result<rustls::ClientConfig, SimulatedAgentError> {
    let bad = |m: &str| SimulatedAgentError::Certificate(m.to_owned());
    let chain = pem_certs(&cert.certificate)?;
    if chain.is_empty() {
        return Err(bad("no client certificate"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut cert.private_key.as_bytes())
        .map_err(|e| SimulatedAgentError::Certificate(e.to_string()))?
        .ok_or_else(|| bad("no private key"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(&cert.ca)? {
        roots
            .add(ca)
            .map_err(|e| SimulatedAgentError::Certificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| SimulatedAgentError::Certificate(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| SimulatedAgentError::Certificate(e.to_string()))
}

/// `nats://[creds@]host:port` without credentials: the certificate is the identity.
fn server_addr(url: &str) -> Result<async_nats::ServerAddr, SimulatedAgentError> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
        .ok_or_else(|| SimulatedAgentError::Url(url.to_owned()))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("nats://{host}")
        .parse()
        .map_err(|_| SimulatedAgentError::Url(url.to_owned()))
}

async fn agent_run(
    spec: SimulatedAgentSpec,
    tls: rustls::ClientConfig,
    addr: async_nats::ServerAddr,
) {
    tokio::time::sleep(spec.boot_delay).await;
    let id = spec.agent_id.clone();
    // Like a booting VM: keep dialing until NATS takes us (the director may still be adding
    // our user); the task is aborted when the VM is deleted.
    let mut attempt: u32 = 0;
    let nats = loop {
        let options = async_nats::ConnectOptions::new()
            .name(format!("sim-agent-{id}"))
            .require_tls(true)
            .tls_client_config(tls.clone())
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(10))
            .reconnect_delay_callback(|a| Duration::from_millis((200 * a as u64).min(5000)));
        match options.connect(addr.clone()).await {
            Ok(c) => break c,
            Err(e) => {
                attempt += 1;
                if attempt % 10 == 1 {
                    tracing::warn!(agent_id = %id, error = %e, "simulated agent cannot reach NATS yet");
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
            }
        }
    };
    let mut inbox = match nats.subscribe(subjects::agent_inbox(&id)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(agent_id = %id, error = %e, "simulated agent cannot subscribe");
            return;
        }
    };
    let mut agent = SimulatedAgent::new(&id, &spec.vm_cid);
    let _ = nats
        .publish(subjects::heartbeat(&id), agent.heartbeat().into())
        .await;
    let mut beat = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_INTERVAL,
        HEARTBEAT_INTERVAL,
    );
    loop {
        tokio::select! {
            msg = inbox.next() => {
                let Some(msg) = msg else { return };
                let Ok(request) = serde_json::from_slice::<Request>(&msg.payload) else {
                    tracing::warn!(agent_id = %id, "simulated agent got a malformed request");
                    continue;
                };
                let Some(reply_to) = request.reply_to.clone().or_else(|| msg.reply.as_ref().map(|r| r.to_string())) else {
                    continue;
                };
                let response = agent.handle(&request);
                let bytes = response.to_bytes_limited(MAX_REPLY);
                if let Err(e) = nats.publish(reply_to, bytes.into()).await {
                    tracing::warn!(agent_id = %id, error = %e, "simulated agent cannot reply");
                }
            }
            _ = beat.tick() => {
                let _ = nats.publish(subjects::heartbeat(&id), agent.heartbeat().into()).await;
            }
        }
    }
}

/// The protocol state of one simulated agent: no IO, so it is testable on its own.
#[derive(Debug)]
pub struct SimulatedAgent {
    agent_id: String,
    vm_cid: String,
    booted: Instant,
    spec: Value,
    job_state: JobState,
    disks: Vec<String>,
    next_task: u64,
    /// Finished long-running tasks' results, by agent task id.
    tasks: HashMap<String, Value>,
}

impl SimulatedAgent {
    pub fn new(agent_id: &str, vm_cid: &str) -> Self {
        SimulatedAgent {
            agent_id: agent_id.to_owned(),
            vm_cid: vm_cid.to_owned(),
            booted: Instant::now(),
            spec: json!({}),
            // A fresh VM's agent with nothing applied reports running, like the real one.
            job_state: JobState::Running,
            disks: Vec::new(),
            next_task: 0,
            tasks: HashMap::new(),
        }
    }

    /// The reply to one request, in the real agent's shapes.
    pub fn handle(&mut self, request: &Request) -> Response {
        let args = &request.arguments;
        let immediate = |v: Value| Response::value(v);
        match request.method.as_str() {
            "ping" => immediate(json!("pong")),
            "info" => immediate(json!({"api_version": 1})),
            "get_state" => immediate(self.state()),
            "start" => {
                self.job_state = JobState::Running;
                immediate(json!("started"))
            }
            "get_task" => {
                let id = args.first().and_then(Value::as_str).unwrap_or_default();
                match self.tasks.remove(id) {
                    Some(v) => immediate(v),
                    None => Response::exception(format!("Task with id {id} could not be found")),
                }
            }
            "cancel_task" => immediate(json!("canceled")),
            "list_disk" => immediate(json!(self.disks)),
            "sync_dns" => immediate(json!("synced")),
            "ssh" => immediate(json!({"command": "setup", "status": "success"})),
            "upload_blob" | "update_settings" | "delete_arp_entries" | "shutdown" => {
                self.task(json!({}))
            }
            "apply" => {
                if let Some(spec) = args.first() {
                    self.spec = spec.clone();
                }
                self.task(json!("applied"))
            }
            "prepare" => self.task(json!("prepared")),
            "stop" => {
                self.job_state = JobState::Stopped;
                self.task(json!("stopped"))
            }
            "drain" => self.task(json!(0)),
            "run_script" => self.task(json!({})),
            "mount_disk" | "add_persistent_disk" => {
                if let Some(cid) = args.first().and_then(Value::as_str)
                    && !self.disks.iter().any(|d| d == cid)
                {
                    self.disks.push(cid.to_owned());
                }
                self.task(json!({}))
            }
            "unmount_disk" | "remove_persistent_disk" => {
                if let Some(cid) = args.first().and_then(Value::as_str) {
                    self.disks.retain(|d| d != cid);
                }
                self.task(json!({"message": "Partition is not mounted"}))
            }
            "migrate_disk" => self.task(json!({})),
            "fetch_logs" => self.task(json!({"blobstore_id": "", "sha1": ""})),
            "run_errand" => self.task(json!({"exit_code": 0, "stdout": "", "stderr": ""})),
            other => Response::exception(format!("unknown message {other}")),
        }
    }

    /// A long-running action: a running task handle now, the result on `get_task`.
    fn task(&mut self, result: Value) -> Response {
        self.next_task += 1;
        let id = format!("sim-task-{}", self.next_task);
        self.tasks.insert(id.clone(), result);
        Response::value(
            serde_json::to_value(TaskHandle {
                agent_task_id: id,
                state: TaskState::Running,
            })
            .unwrap_or_default(),
        )
    }

    /// `get_state`: the applied spec's fields plus the agent's own.
    fn state(&self) -> Value {
        let mut state = match &self.spec {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        let processes: Vec<Value> = self
            .spec
            .get("job")
            .and_then(|j| j.get("templates"))
            .and_then(Value::as_array)
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|j| j.get("name"))
                    .map(|name| {
                        json!({"name": name, "state": self.job_state.as_str(),
                               "uptime": {"secs": self.booted.elapsed().as_secs()},
                               "mem": {"kb": 0, "percent": 0.0}, "cpu": {"total": 0.0}})
                    })
                    .collect()
            })
            .unwrap_or_default();
        state.insert("agent_id".into(), json!(self.agent_id));
        state.insert("vm".into(), json!({"name": self.vm_cid}));
        state.insert("job_state".into(), json!(self.job_state.as_str()));
        state.insert("processes".into(), Value::Array(processes));
        Value::Object(state)
    }

    /// `hm.agent.heartbeat.<id>`.
    pub fn heartbeat(&self) -> Vec<u8> {
        let job = self
            .spec
            .get("job")
            .and_then(|j| j.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let hb = Heartbeat {
            deployment: self
                .spec
                .get("deployment")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            job,
            index: self.spec.get("index").and_then(Value::as_i64),
            job_state: self.job_state,
            vitals: Vitals::default(),
            node_id: self
                .spec
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            number_of_processes: Some(0),
        };
        serde_json::to_vec(&hb).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, args: Vec<Value>) -> Request {
        Request::new(method, args, "director.d.a.r")
    }

    fn value(r: Response) -> Value {
        match r {
            Response::Value { value } => value,
            Response::Exception { exception } => panic!("exception: {}", exception.message),
        }
    }

    #[test]
    fn sync_actions_answer_at_once() {
        let mut a = SimulatedAgent::new("a-1", "vm-1");
        assert_eq!(value(a.handle(&req("ping", vec![]))), json!("pong"));
        let s = value(a.handle(&req("get_state", vec![])));
        assert_eq!(s["agent_id"], "a-1");
        assert_eq!(s["vm"]["name"], "vm-1");
        assert_eq!(s["job_state"], "running");
    }

    #[test]
    fn long_running_actions_finish_through_get_task() {
        let mut a = SimulatedAgent::new("a-1", "vm-1");
        let spec = json!({"deployment": "d", "index": 3, "id": "uuid-1",
            "job": {"name": "web", "templates": [{"name": "greeter"}]}});
        let handle = value(a.handle(&req("apply", vec![spec])));
        assert_eq!(handle["state"], "running");
        let id = handle["agent_task_id"].as_str().unwrap().to_owned();
        assert_eq!(
            value(a.handle(&req("get_task", vec![json!(id)]))),
            json!("applied")
        );
        // A finished task is reported once.
        assert!(matches!(
            a.handle(&req("get_task", vec![json!(id)])),
            Response::Exception { .. }
        ));
        let s = value(a.handle(&req("get_state", vec![])));
        assert_eq!(s["deployment"], "d");
        assert_eq!(s["processes"][0]["name"], "greeter");
        let hb: Value = serde_json::from_slice(&a.heartbeat()).unwrap();
        assert_eq!(hb["job"], "web");
        assert_eq!(hb["index"], 3);
    }

    #[test]
    fn stop_start_and_disks_change_state() {
        let mut a = SimulatedAgent::new("a-1", "vm-1");
        let h = value(a.handle(&req("stop", vec![])));
        let id = h["agent_task_id"].clone();
        assert_eq!(
            value(a.handle(&req("get_task", vec![id]))),
            json!("stopped")
        );
        assert_eq!(
            value(a.handle(&req("get_state", vec![])))["job_state"],
            "stopped"
        );
        assert_eq!(value(a.handle(&req("start", vec![]))), json!("started"));
        assert_eq!(
            value(a.handle(&req("get_state", vec![])))["job_state"],
            "running"
        );
        let h = value(a.handle(&req("drain", vec![json!("shutdown")])));
        assert_eq!(
            value(a.handle(&req("get_task", vec![h["agent_task_id"].clone()]))),
            json!(0)
        );
        a.handle(&req("mount_disk", vec![json!("disk-1")]));
        assert_eq!(
            value(a.handle(&req("list_disk", vec![]))),
            json!(["disk-1"])
        );
        a.handle(&req("unmount_disk", vec![json!("disk-1")]));
        assert_eq!(value(a.handle(&req("list_disk", vec![]))), json!([]));
        assert!(matches!(
            a.handle(&req("no_such_action", vec![])),
            Response::Exception { .. }
        ));
    }

    #[test]
    fn mbus_url_loses_its_credentials() {
        let a = server_addr("nats://u:p@127.0.0.1:4222").unwrap();
        assert!(!a.has_user_pass());
        assert_eq!((a.host(), a.port()), ("127.0.0.1", 4222));
        assert!(server_addr("http://x").is_err());
    }
}
