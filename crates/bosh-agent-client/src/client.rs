//! [`AgentClient`]: requests over one NATS connection, replies through one wildcard
//! subscription dispatched by request id.

use crate::error::AgentError;
use bosh_agent_protocol::{
    AgentReply, AgentState, MbusCert, ReplyError, Request, TaskState, UpdateSettings, subjects,
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// A reply's raw bytes.
type Payload = Vec<u8>;

/// Timeouts and polling; the defaults are the Ruby director's.
#[derive(Debug, Clone)]
pub struct AgentClientConfig {
    /// The director's identity in reply subjects (`director.<uuid>.<agent>.<request>`);
    /// a fresh UUID per client by default.
    pub director_uuid: String,
    /// Per request (45 s).
    pub timeout: Duration,
    /// The first `get_task` poll comes this long after the task starts (100 ms); the interval
    /// then doubles up to `poll_interval`.
    pub initial_poll_interval: Duration,
    /// Longest wait between `get_task` polls (1 s, the Ruby director's fixed interval).
    pub poll_interval: Duration,
    /// How long an asynchronous action may run in total (6 h; the Ruby director has no limit
    /// except for `stop`).
    pub task_timeout: Duration,
    /// Per-ping timeout in [`AgentClient::ping_until_ready`] (1 s).
    pub ping_timeout: Duration,
    /// Total wait for `stop` (300 s); running out is not an error, as in the Ruby director.
    pub stop_timeout: Duration,
}

impl Default for AgentClientConfig {
    fn default() -> Self {
        AgentClientConfig {
            director_uuid: uuid::Uuid::new_v4().to_string(),
            timeout: Duration::from_secs(45),
            initial_poll_interval: Duration::from_millis(100),
            poll_interval: Duration::from_secs(1),
            task_timeout: Duration::from_secs(6 * 3600),
            ping_timeout: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(300),
        }
    }
}

/// Retries on timeout, per method, as the Ruby director's `AgentClient` has them.
pub fn retries_on_timeout(method: &str) -> u32 {
    match method {
        "get_state" | "get_task" => 2,
        "upload_blob" => 3,
        _ => 0,
    }
}

/// `drain`'s first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainType {
    Update,
    Shutdown,
    Status,
}

impl DrainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainType::Update => "update",
            DrainType::Shutdown => "shutdown",
            DrainType::Status => "status",
        }
    }
}

struct Waiter {
    agent_id: String,
    reply: oneshot::Sender<Payload>,
}

type Pending = Arc<Mutex<HashMap<String, Waiter>>>;

/// Removes a request from the pending table when its caller stops waiting for any reason.
struct PendingGuard {
    pending: Pending,
    request_id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pending.lock() {
            map.remove(&self.request_id);
        }
    }
}

/// Told the method and the round trip (request sent → reply received) of every answered
/// request; the director feeds its metrics from it.
pub type RoundTripObserver = Arc<dyn Fn(&str, Duration) + Send + Sync>;

struct Shared {
    nats: async_nats::Client,
    config: AgentClientConfig,
    pending: Pending,
    dispatcher: tokio::task::JoinHandle<()>,
    observer: std::sync::OnceLock<RoundTripObserver>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

/// The director's agent client. Cheap to clone; clones share the connection, the reply
/// subscription and the pending-request table.
#[derive(Clone)]
pub struct AgentClient {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("director_uuid", &self.shared.config.director_uuid)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// Connects with the director's client certificate and subscribes to its replies.
    pub async fn connect(
        urls: &[String],
        cert: &MbusCert,
        config: AgentClientConfig,
    ) -> Result<AgentClient, AgentError> {
        let nats = crate::mbus::connect(urls, cert, "bosh-director").await?;
        AgentClient::with_connection(nats, config).await
    }

    /// Uses an existing connection (whose identity may subscribe to `director.>` and publish
    /// to `agent.*`).
    pub async fn with_connection(
        nats: async_nats::Client,
        config: AgentClientConfig,
    ) -> Result<AgentClient, AgentError> {
        let subject = subjects::director_replies(&config.director_uuid);
        let mut replies = nats
            .subscribe(subject.clone())
            .await
            .map_err(|e| AgentError::connection(format!("Subscribing to '{subject}'"), e))?;
        // The subscription must be in place on the server before the first request goes out.
        nats.flush()
            .await
            .map_err(|e| AgentError::connection("Flushing the NATS connection", e))?;
        let pending: Pending = Arc::default();
        let table = pending.clone();
        let dispatcher = tokio::spawn(async move {
            while let Some(msg) = replies.next().await {
                dispatch(&table, msg.subject.as_str(), msg.payload.to_vec());
            }
            tracing::warn!("agent reply subscription ended");
        });
        Ok(AgentClient {
            shared: Arc::new(Shared {
                nats,
                config,
                pending,
                dispatcher,
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &AgentClientConfig {
        &self.shared.config
    }

    /// The underlying connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.shared.nats
    }

    /// Sets the round-trip observer (once per client; later calls are ignored).
    pub fn round_trip_observer_set(&self, observer: RoundTripObserver) {
        let _ = self.shared.observer.set(observer);
    }

    /// Requests waiting for a reply right now.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn reply_to(&self, agent_id: &str, request_id: &str) -> String {
        subjects::director_reply(&self.shared.config.director_uuid, agent_id, request_id)
    }

    async fn publish(
        &self,
        agent_id: &str,
        method: &str,
        arguments: Vec<Value>,
        reply_to: String,
    ) -> Result<(), AgentError> {
        let request = Request::new(method, arguments, reply_to);
        let body = serde_json::to_vec(&request)
            .map_err(|e| AgentError::connection(format!("Encoding '{method}'"), e))?;
        self.shared
            .nats
            .publish(subjects::agent_inbox(agent_id), body.into())
            .await
            .map_err(|e| {
                AgentError::connection(format!("Sending '{method}' to agent '{agent_id}'"), e)
            })
    }

    /// One request and its normalised reply, no retries and no task polling. Arguments are
    /// never logged (they can hold certificates and credentials).
    pub async fn request(
        &self,
        agent_id: &str,
        method: &str,
        arguments: Vec<Value>,
        timeout: Duration,
    ) -> Result<AgentReply, AgentError> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .map_err(|_| AgentError::Connection {
                what: "agent client state poisoned".into(),
                source: None,
            })?
            .insert(
                request_id.clone(),
                Waiter {
                    agent_id: agent_id.to_owned(),
                    reply: tx,
                },
            );
        let _guard = PendingGuard {
            pending: self.shared.pending.clone(),
            request_id: request_id.clone(),
        };
        tracing::debug!(agent_id, method, request_id, "sending agent request");
        let sent = std::time::Instant::now();
        self.publish(
            agent_id,
            method,
            arguments,
            self.reply_to(agent_id, &request_id),
        )
        .await?;
        let payload = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(payload)) => {
                if let Some(observe) = self.shared.observer.get() {
                    observe(method, sent.elapsed());
                }
                payload
            }
            Ok(Err(_)) => {
                return Err(AgentError::Connection {
                    what: "agent reply dispatcher stopped".into(),
                    source: None,
                });
            }
            Err(_) => {
                tracing::debug!(agent_id, method, request_id, "agent request timed out");
                return Err(AgentError::Timeout {
                    agent_id: agent_id.to_owned(),
                    method: method.to_owned(),
                    after: timeout,
                });
            }
        };
        let raw: Value = serde_json::from_slice(&payload)
            .map_err(|e| AgentError::invalid(agent_id, method, format!("not JSON: {e}")))?;
        AgentReply::decode(raw).map_err(|e| match e {
            ReplyError::Exception { message } => AgentError::Exception {
                agent_id: agent_id.to_owned(),
                method: method.to_owned(),
                message,
            },
            ReplyError::Malformed => AgentError::invalid(agent_id, method, e.to_string()),
        })
    }

    /// [`Self::request`] with the configured timeout, retried on timeout as many times as
    /// [`retries_on_timeout`] allows for the method.
    pub async fn start_task(
        &self,
        agent_id: &str,
        method: &str,
        arguments: Vec<Value>,
    ) -> Result<AgentReply, AgentError> {
        let mut retries = retries_on_timeout(method);
        loop {
            match self
                .request(agent_id, method, arguments.clone(), self.config().timeout)
                .await
            {
                Err(AgentError::Timeout { .. }) if retries > 0 => {
                    retries -= 1;
                    tracing::debug!(agent_id, method, retries, "retrying after timeout");
                }
                other => return other,
            }
        }
    }

    /// The director's `send_message`: sends, and when the agent answers with a task handle,
    /// polls `get_task` until the task finishes; returns the final value.
    pub async fn call(
        &self,
        agent_id: &str,
        method: &str,
        arguments: Vec<Value>,
    ) -> Result<Value, AgentError> {
        self.call_with_task_timeout(agent_id, method, arguments, self.config().task_timeout)
            .await
    }

    /// [`Self::call`] with its own total task timeout.
    pub async fn call_with_task_timeout(
        &self,
        agent_id: &str,
        method: &str,
        arguments: Vec<Value>,
        task_timeout: Duration,
    ) -> Result<Value, AgentError> {
        match self.start_task(agent_id, method, arguments).await? {
            AgentReply::Done(value) => Ok(value),
            AgentReply::Task(handle) if handle.state == TaskState::Running => {
                self.wait_for_task(agent_id, method, &handle.agent_task_id, task_timeout)
                    .await
            }
            AgentReply::Task(handle) => Ok(task_handle_value(&handle)),
        }
    }

    /// Polls `get_task(task_id)` with back-off until it is no longer running; the bare
    /// result, the task's exception, or [`AgentError::TaskTimeout`] after `total`.
    pub async fn wait_for_task(
        &self,
        agent_id: &str,
        method: &str,
        task_id: &str,
        total: Duration,
    ) -> Result<Value, AgentError> {
        let deadline = Instant::now() + total;
        let mut interval = self.config().initial_poll_interval;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(AgentError::TaskTimeout {
                    agent_id: agent_id.to_owned(),
                    method: method.to_owned(),
                    task_id: task_id.to_owned(),
                    after: total,
                });
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = (interval * 2).min(self.config().poll_interval);
            let reply = self
                .get_task(agent_id, task_id)
                .await
                .map_err(|e| match e {
                    // The task's failure is the action's failure.
                    AgentError::Exception { message, .. } => AgentError::Exception {
                        agent_id: agent_id.to_owned(),
                        method: method.to_owned(),
                        message,
                    },
                    other => other,
                })?;
            match reply {
                AgentReply::Task(h) if h.state == TaskState::Running => continue,
                AgentReply::Task(h) => return Ok(task_handle_value(&h)),
                AgentReply::Done(value) => return Ok(value),
            }
        }
    }

    /// `get_task(task_id)`: a running task's handle, or its bare result.
    pub async fn get_task(&self, agent_id: &str, task_id: &str) -> Result<AgentReply, AgentError> {
        self.start_task(agent_id, "get_task", vec![json!(task_id)])
            .await
    }

    /// `cancel_task(task_id)` → `"canceled"` (only `drain` and `run_errand` really cancel).
    pub async fn cancel_task(&self, agent_id: &str, task_id: &str) -> Result<Value, AgentError> {
        self.call(agent_id, "cancel_task", vec![json!(task_id)])
            .await
    }

    /// `ping` → `"pong"`.
    pub async fn ping(&self, agent_id: &str) -> Result<(), AgentError> {
        let value = self.call(agent_id, "ping", vec![]).await?;
        expect_pong(agent_id, value)
    }

    /// The director's `wait_until_ready`: pings with short timeouts until the agent answers,
    /// for at most `wait`. An exception starting `restarting agent` is waited out too.
    pub async fn ping_until_ready(&self, agent_id: &str, wait: Duration) -> Result<(), AgentError> {
        let deadline = Instant::now() + wait;
        // A booting agent subscribes moments after its VM starts: pings sent before that are
        // lost, so the first ones wait briefly and the wait doubles up to the ping timeout.
        let mut step = Duration::from_millis(50);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(AgentError::Timeout {
                    agent_id: agent_id.to_owned(),
                    method: "ping".into(),
                    after: wait,
                });
            }
            let per_ping = step.min(self.config().ping_timeout).min(deadline - now);
            step = step.saturating_mul(2);
            match self.request(agent_id, "ping", vec![], per_ping).await {
                Ok(AgentReply::Done(value)) => return expect_pong(agent_id, value),
                Ok(AgentReply::Task(_)) => {
                    return Err(AgentError::invalid(agent_id, "ping", "a task handle"));
                }
                Err(AgentError::Timeout { .. }) => {}
                Err(AgentError::Exception { message, .. })
                    if message.starts_with("restarting agent") =>
                {
                    tokio::time::sleep(per_ping.min(deadline - Instant::now())).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `info` → the agent API version; 0 for agents that do not know the action.
    pub async fn info(&self, agent_id: &str) -> Result<u64, AgentError> {
        match self.call(agent_id, "info", vec![]).await {
            Ok(value) => value
                .get("api_version")
                .and_then(Value::as_u64)
                .ok_or_else(|| AgentError::invalid(agent_id, "info", "no api_version")),
            Err(e) if e.is_unknown_message() => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// `get_state` (with vitals when `full`), as a raw value.
    pub async fn get_state_value(&self, agent_id: &str, full: bool) -> Result<Value, AgentError> {
        let args = if full { vec![json!("full")] } else { vec![] };
        self.call(agent_id, "get_state", args).await
    }

    /// `get_state`, decoded.
    pub async fn get_state(&self, agent_id: &str, full: bool) -> Result<AgentState, AgentError> {
        let value = self.get_state_value(agent_id, full).await?;
        serde_json::from_value(value)
            .map_err(|e| AgentError::invalid(agent_id, "get_state", e.to_string()))
    }

    /// `apply(spec)`; waits for the task.
    pub async fn apply<S: Serialize + ?Sized>(
        &self,
        agent_id: &str,
        spec: &S,
    ) -> Result<Value, AgentError> {
        let spec = encode(agent_id, "apply", spec)?;
        self.call(agent_id, "apply", vec![spec]).await
    }

    /// `prepare(spec)`; waits for the task.
    pub async fn prepare<S: Serialize + ?Sized>(
        &self,
        agent_id: &str,
        spec: &S,
    ) -> Result<Value, AgentError> {
        let spec = encode(agent_id, "prepare", spec)?;
        self.call(agent_id, "prepare", vec![spec]).await
    }

    /// `start` (synchronous; poll `get_state` to see the processes come up).
    pub async fn start(&self, agent_id: &str) -> Result<Value, AgentError> {
        self.call(agent_id, "start", vec![]).await
    }

    /// `stop`, waiting at most `stop_timeout`. As in the Ruby director, running out of time and
    /// the agent's `Timed out waiting for service` error are logged and not errors.
    pub async fn stop(&self, agent_id: &str) -> Result<(), AgentError> {
        let limit = self.config().stop_timeout;
        match self
            .call_with_task_timeout(agent_id, "stop", vec![], limit)
            .await
        {
            Ok(_) => Ok(()),
            Err(AgentError::TaskTimeout { .. }) => {
                tracing::warn!(agent_id, "stop still running after {limit:?}; not waiting");
                Ok(())
            }
            Err(AgentError::Exception { message, .. })
                if message.contains("Timed out waiting for service") =>
            {
                tracing::warn!(agent_id, %message, "ignoring stop timeout error from the agent");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `drain(type, spec)` → the wait the agent reports (always 0 with current agents, which
    /// drain dynamically themselves). To cancel, use [`Self::start_task`],
    /// [`Self::wait_for_task`] and [`Self::cancel_task`].
    pub async fn drain<S: Serialize + ?Sized>(
        &self,
        agent_id: &str,
        drain_type: DrainType,
        new_spec: Option<&S>,
    ) -> Result<i64, AgentError> {
        let mut args = vec![json!(drain_type.as_str())];
        if let Some(spec) = new_spec {
            args.push(encode(agent_id, "drain", spec)?);
        }
        let value = self.call(agent_id, "drain", args).await?;
        value.as_i64().ok_or_else(|| {
            AgentError::invalid(agent_id, "drain", format!("not an integer: {value}"))
        })
    }

    /// `run_script(name, {"env": env})`; an agent that does not know the action is ignored.
    pub async fn run_script(
        &self,
        agent_id: &str,
        script: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<(), AgentError> {
        let options = if env.is_empty() {
            json!({})
        } else {
            json!({"env": env})
        };
        match self
            .call(agent_id, "run_script", vec![json!(script), options])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_unknown_message() => {
                tracing::warn!(agent_id, script, "agent does not know run_script; ignored");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// `update_settings(settings)`; an agent that does not know the action is ignored.
    /// Changing mbus or blobstores restarts the agent, which the `get_task` retries ride out.
    pub async fn update_settings(
        &self,
        agent_id: &str,
        settings: &UpdateSettings,
    ) -> Result<(), AgentError> {
        let arg = encode(agent_id, "update_settings", settings)?;
        match self.call(agent_id, "update_settings", vec![arg]).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_unknown_message() => {
                tracing::warn!(agent_id, "agent does not know update_settings; ignored");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Sends without waiting for the reply (the director's fire-and-forget): failures are
    /// logged, never returned.
    pub async fn fire_and_forget(&self, agent_id: &str, method: &str, arguments: Vec<Value>) {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let reply_to = self.reply_to(agent_id, &request_id);
        if let Err(e) = self.publish(agent_id, method, arguments, reply_to).await {
            tracing::warn!(agent_id, method, error = %e, "ignoring error sending to the agent");
        }
    }

    /// `shutdown`, fire and forget.
    pub async fn shutdown(&self, agent_id: &str) {
        self.fire_and_forget(agent_id, "shutdown", vec![]).await;
    }

    /// `delete_arp_entries({"ips": ips})`, fire and forget.
    pub async fn delete_arp_entries(&self, agent_id: &str, ips: &[String]) {
        self.fire_and_forget(agent_id, "delete_arp_entries", vec![json!({"ips": ips})])
            .await;
    }
}

/// Hands a reply to its waiter; replies nobody waits for (late, or for another director
/// process) are dropped.
fn dispatch(pending: &Pending, subject: &str, payload: Payload) {
    let agent = subjects::reply_agent_id(subject);
    let Some(request_id) = subject.rsplit('.').next() else {
        return;
    };
    let Ok(mut map) = pending.lock() else {
        return;
    };
    match map.get(request_id) {
        Some(w) if Some(w.agent_id.as_str()) == agent => {
            if let Some(w) = map.remove(request_id) {
                let _ = w.reply.send(payload);
            }
        }
        Some(_) => tracing::warn!(subject, "reply from an unexpected agent dropped"),
        None => tracing::debug!(subject, "late or unknown reply dropped"),
    }
}

fn expect_pong(agent_id: &str, value: Value) -> Result<(), AgentError> {
    if value == "pong" {
        Ok(())
    } else {
        Err(AgentError::invalid(
            agent_id,
            "ping",
            format!("expected \"pong\", got {value}"),
        ))
    }
}

fn task_handle_value(handle: &bosh_agent_protocol::TaskHandle) -> Value {
    serde_json::to_value(handle).unwrap_or(Value::Null)
}

fn encode<S: Serialize + ?Sized>(
    agent_id: &str,
    method: &str,
    value: &S,
) -> Result<Value, AgentError> {
    serde_json::to_value(value)
        .map_err(|e| AgentError::invalid(agent_id, method, format!("encoding the argument: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_match_the_ruby_director() {
        assert_eq!(retries_on_timeout("get_state"), 2);
        assert_eq!(retries_on_timeout("get_task"), 2);
        assert_eq!(retries_on_timeout("upload_blob"), 3);
        assert_eq!(retries_on_timeout("apply"), 0);
        assert_eq!(retries_on_timeout("ping"), 0);
    }

    #[test]
    fn replies_go_to_their_waiter_only_from_the_right_agent() {
        let pending: Pending = Arc::default();
        let (tx, mut rx) = oneshot::channel();
        pending.lock().unwrap().insert(
            "r1".into(),
            Waiter {
                agent_id: "a1".into(),
                reply: tx,
            },
        );
        dispatch(&pending, "director.d.a2.r1", b"{}".to_vec());
        assert!(rx.try_recv().is_err(), "wrong agent accepted");
        dispatch(&pending, "director.d.a1.zz", b"{}".to_vec());
        dispatch(&pending, "director.d.a1.r1", b"{\"value\":1}".to_vec());
        assert_eq!(rx.try_recv().unwrap(), b"{\"value\":1}".to_vec());
        assert!(pending.lock().unwrap().is_empty());
    }
}
