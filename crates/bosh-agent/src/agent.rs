//! The agent daemon: state shared by actions, the serial inbox, heartbeats and shutdown.

use crate::action::{self, ActionError, Invocation};
use crate::blobstore::{BlobstoreClient, BlobstoreError};
use crate::config::{self, AgentConfig, ConfigError};
use crate::layout::Layout;
use crate::mbus::{self, MbusError};
use crate::platform::Platform;
use crate::supervisor::Supervisor;
use crate::task::TaskManager;
use crate::vitals::VitalsSampler;
use bosh_agent_protocol::{
    ApplySpec, Arguments, Heartbeat, Request, Response, Settings, UpdateSettings, subjects,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("loading configuration")]
    Config(#[from] ConfigError),
    #[error("starting the message bus")]
    Mbus(#[from] MbusError),
    #[error("subscribing to the agent inbox")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("creating {path}")]
    Layout {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why the agent loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitRequest {
    /// `shutdown`: jobs are stopped and the platform powers off.
    PowerOff,
    /// `update_settings` changed mbus or blobstores: start again with the new settings.
    Restart,
    /// SIGTERM/SIGINT.
    Signal,
}

pub struct AgentOptions {
    pub layout: Layout,
    pub config_path: PathBuf,
    pub platform: Box<dyn Platform>,
    pub heartbeat_interval: Duration,
    pub supervisor_tick: Duration,
}

/// State every action can reach.
pub struct Agent {
    pub layout: Layout,
    pub agent_id: String,
    pub settings: RwLock<Settings>,
    pub update_settings: RwLock<Option<UpdateSettings>>,
    pub supervisor: Supervisor,
    pub tasks: TaskManager,
    pub vitals: VitalsSampler,
    pub platform: Box<dyn Platform>,
    outbox: mpsc::UnboundedSender<(String, Vec<u8>)>,
    exit: watch::Sender<Option<ExitRequest>>,
    /// Serialises spec-changing actions (apply, start, stop, drain).
    pub spec_lock: tokio::sync::Mutex<()>,
}

/// A persistent task recorded before it runs, resumed on the next boot (§2.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedTask {
    pub task_id: String,
    pub method: String,
}

impl Agent {
    /// The persisted apply spec; empty before the first apply.
    pub fn spec(&self) -> ApplySpec {
        std::fs::read(self.layout.spec())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_spec(&self, spec: &ApplySpec) -> Result<(), ConfigError> {
        config::write_json(&self.layout.spec(), spec)
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn current_update_settings(&self) -> Option<UpdateSettings> {
        self.update_settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The blobstore from settings, `None` when none is configured.
    pub fn blobstore(&self) -> Result<Option<BlobstoreClient>, BlobstoreError> {
        let update = self.current_update_settings();
        self.settings()
            .blobstore(update.as_ref())
            .map(|b| {
                BlobstoreClient::from_settings(&b).map(|c| {
                    c.with_local_dirs(vec![
                        self.layout.sensitive_blobs(),
                        self.layout.local_blobs(),
                    ])
                })
            })
            .transpose()
    }

    /// Queues a JSON message for NATS; delivery is best effort like the real agent's.
    pub fn publish(&self, subject: String, payload: &impl Serialize) {
        let bytes = serde_json::to_vec(payload).unwrap_or_default();
        let _ = self.outbox.send((subject, bytes));
    }

    /// Tells the main loop to end once the current reply is out.
    pub fn request_exit(&self, why: ExitRequest) {
        self.exit.send_replace(Some(why));
    }

    pub fn heartbeat(&self) -> Heartbeat {
        let spec = self.spec();
        Heartbeat {
            deployment: spec.deployment.clone(),
            job: spec
                .job
                .as_ref()
                .map(|j| j.name.clone())
                .filter(|n| !n.is_empty()),
            index: spec.index,
            job_state: self.supervisor.job_state(),
            vitals: self.vitals.sample(self.layout.base()),
            node_id: spec.id.clone().unwrap_or_default(),
            number_of_processes: Some(self.supervisor.processes().len() as u64),
        }
    }

    /// Handles one request; returns the reply subject and response, if one is due.
    pub async fn handle(self: &Arc<Self>, req: Request) -> Option<(String, Response)> {
        let reply_to = req.reply_to.clone();
        let response = self.dispatch(req).await;
        reply_to.map(|r| (r, response))
    }

    async fn dispatch(self: &Arc<Self>, req: Request) -> Response {
        let Some(def) = action::lookup(&req.method) else {
            return Response::exception(format!("unknown message {}", req.method));
        };
        let protocol = req.protocol_version();
        let args = Arguments::new(req.arguments);
        if !(def.asynchronous)(protocol) {
            let inv = Invocation {
                args,
                protocol,
                cancel: CancellationToken::new(),
                task_id: None,
            };
            return match (def.run)(self.clone(), inv).await {
                Ok(v) => Response::value(v),
                Err(e) => {
                    Response::exception(format!("Action Failed {}: {}", def.name, wire_message(&e)))
                }
            };
        }
        let agent = self.clone();
        let task_id = uuid::Uuid::new_v4().to_string();
        if def.persistent {
            let record = vec![PersistedTask {
                task_id: task_id.clone(),
                method: def.name.to_owned(),
            }];
            if let Err(e) = config::write_json(&self.layout.task_info(), &record) {
                return Response::exception(format!(
                    "Action Failed {}: {}",
                    def.name,
                    crate::error_chain(&e)
                ));
            }
        }
        let id = task_id.clone();
        let enqueued = self
            .tasks
            .enqueue_with_id(task_id, def.cancellable, move |cancel| {
                Box::pin(async move {
                    let inv = Invocation {
                        args,
                        protocol,
                        cancel,
                        task_id: Some(id),
                    };
                    (def.run)(agent, inv).await.map_err(|e| wire_message(&e))
                })
            })
            .await;
        match enqueued {
            Ok(handle) => Response::value(serde_json::to_value(handle).unwrap_or(Value::Null)),
            Err(e) => Response::exception(format!("Action Failed {}: {e}", def.name)),
        }
    }
}

fn wire_message(e: &ActionError) -> String {
    crate::error_chain(e)
}

/// Runs the agent until it is told to stop; returns why.
pub async fn run(options: AgentOptions) -> Result<ExitRequest, AgentError> {
    let layout = options.layout.clone();
    for dir in [
        layout.bosh_dir(),
        layout.data(),
        layout.monit(),
        layout.instance(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| AgentError::Layout {
            path: dir.clone(),
            source,
        })?;
    }
    let agent_config = AgentConfig::load(&options.config_path)?;
    let settings = config::load_settings(&agent_config, &layout)?;
    let update = config::load_update_settings(&layout)?;
    let agent_id = settings.agent_id.clone();
    tracing::info!(%agent_id, platform = options.platform.name(), base = %layout.base().display(), "agent starting");

    let urls = settings.mbus_urls(update.as_ref());
    let cert = settings.mbus_cert(update.as_ref());
    let (client, mut inbox) = match urls.first().filter(|u| mbus::https::is_https(u)) {
        Some(url) => {
            let (_, calls) = mbus::https::serve(url, &cert, layout.local_blobs()).await?;
            (None, mbus::Inbox::Https(calls))
        }
        None => {
            let client = mbus::connect(&urls, &cert, &format!("bosh-agent-{agent_id}")).await?;
            let sub = client
                .subscribe(subjects::agent_inbox(&agent_id))
                .await
                .map_err(AgentError::Subscribe)?;
            // Make sure the subscription is registered before anyone is told we are up.
            let _ = client.flush().await;
            (Some(client), mbus::Inbox::Nats(sub))
        }
    };

    let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let (exit, mut exit_rx) = watch::channel(None);
    let agent = Arc::new(Agent {
        layout: layout.clone(),
        agent_id: agent_id.clone(),
        settings: RwLock::new(settings),
        update_settings: RwLock::new(update),
        supervisor: Supervisor::start(layout.clone(), options.supervisor_tick),
        tasks: TaskManager::start(),
        vitals: VitalsSampler::default(),
        platform: options.platform,
        outbox,
        exit,
        spec_lock: tokio::sync::Mutex::new(()),
    });

    resume_persisted_tasks(&agent);
    boot_jobs(&agent);

    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((subject, payload)) = outbox_rx.recv().await {
            // The HTTPS transport has nowhere to publish; the real agent drops these too.
            let Some(publisher) = &publisher else {
                continue;
            };
            if let Err(e) = publisher.publish(subject.clone(), payload.into()).await {
                tracing::warn!(%subject, error = %e, "publish failed");
            }
        }
    });

    spawn_alerts(&agent);

    let hb_agent = agent.clone();
    let interval = options.heartbeat_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let hb = hb_agent.heartbeat();
            hb_agent.publish(subjects::heartbeat(&hb_agent.agent_id), &hb);
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| AgentError::Layout {
            path: PathBuf::from("SIGTERM handler"),
            source,
        })?;
    let why = loop {
        tokio::select! {
            msg = inbox.next() => {
                let payload = match msg {
                    None => break ExitRequest::Signal,
                    Some(mbus::Inbound::Nats(payload)) => payload,
                    Some(mbus::Inbound::Https(call)) => {
                        tracing::info!(method = %call.request.method, "https request");
                        let _ = call.reply.send(agent.dispatch(call.request).await);
                        continue;
                    }
                };
                let req: Request = match serde_json::from_slice(&payload) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "unparseable request dropped");
                        continue;
                    }
                };
                tracing::info!(method = %req.method, "request");
                // Serial on purpose: the real agent's inbox is processed one message at a time.
                if let Some((reply_to, resp)) = agent.handle(req).await {
                    let bytes = resp.to_bytes_limited(bosh_agent_protocol::MAX_RESPONSE_BYTES);
                    let _ = agent.outbox.send((reply_to, bytes));
                }
            }
            _ = exit_rx.changed() => {
                if let Some(why) = *exit_rx.borrow() { break why; }
            }
            _ = sigterm.recv() => break ExitRequest::Signal,
            _ = tokio::signal::ctrl_c() => break ExitRequest::Signal,
        }
    };
    tracing::info!(?why, "agent stopping");
    // Let queued replies and notices reach the server before the connection goes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Some(client) = &client {
        let _ = client.flush().await;
    }
    if why == ExitRequest::PowerOff {
        if let Err(e) = agent
            .supervisor
            .stop_all(true, Duration::from_secs(300))
            .await
        {
            tracing::warn!(error = %crate::error_chain(&e), "stopping jobs before power off");
        }
        if let Err(e) = agent.platform.power_off() {
            tracing::error!(error = %e, "power off failed");
        }
    }
    Ok(why)
}

/// Publishes an alert on `hm.agent.alert.<id>` for each supervisor event the real agent would
/// report (a crashed process, a start that failed).
fn spawn_alerts(agent: &Arc<Agent>) {
    let Some(mut events) = agent.supervisor.subscribe_events() else {
        return;
    };
    // Weak: the agent owns the supervisor that owns the sender.
    let weak = Arc::downgrade(agent);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let Some(agent) = weak.upgrade() else { break };
            let ips = crate::alert::network_ips(&agent.settings().networks);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if let Some(alert) = crate::alert::from_event(&event, &ips, now) {
                tracing::info!(title = %alert.title, severity = alert.severity, "alert");
                agent.publish(subjects::alert(&agent.agent_id), &alert);
            }
        }
    });
}

/// Persistent tasks interrupted by a restart complete with `"ok"` (§2.3).
fn resume_persisted_tasks(agent: &Agent) {
    let path = agent.layout.task_info();
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let tasks: Vec<PersistedTask> = serde_json::from_slice(&bytes).unwrap_or_default();
    for t in tasks {
        tracing::info!(task = %t.task_id, method = %t.method, "resuming persistent task");
        agent
            .tasks
            .insert_finished(t.task_id, Value::String("ok".into()));
    }
    let _ = std::fs::remove_file(path);
}

/// Monit brings jobs back when a VM boots unless they were stopped; so do we, adopting
/// processes that are still alive.
fn boot_jobs(agent: &Agent) {
    if agent.layout.stopped_marker().exists() || agent.spec().job_names().is_empty() {
        return;
    }
    match agent.supervisor.reload() {
        Ok(()) => agent.supervisor.start_all(),
        Err(e) => tracing::warn!(error = %crate::error_chain(&e), "loading monit files at boot"),
    }
}

/// Used by actions that need arguments decoded: `arguments[0]` as an apply spec.
pub fn decode_spec(
    args: &Arguments,
    index: usize,
    expected: usize,
) -> Result<ApplySpec, ActionError> {
    Ok(args.get::<ApplySpec>(index, expected)?)
}
