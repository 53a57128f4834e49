//! The health monitor and resurrector: a reconciler inside the director (`server::director_start`
//! starts it when the director has agents).
//!
//! It listens on the director's NATS connection to `hm.agent.heartbeat.*`, `hm.agent.alert.*`
//! and `hm.agent.shutdown.*`, and every tick compares the VMs the database expects (a cid, an
//! instance, active) with what their agents said. The VM rows are cached: read again when a
//! task ends, on a request (ignore, an unknown agent's heartbeat) and every
//! `refresh_interval`; the small locks table is read every tick. A late agent is pinged; one
//! that does not answer is unresponsive, which raises an alert and, unless resurrection is off
//! for it or its deployment is melting down, queues one `cck_scan_and_fix` task per deployment.
//! A running scan-and-fix keeps only the instances it repairs from being judged; a deploy (any
//! other lock holder) its whole deployment.

pub mod alerts;
pub mod resurrector;
pub mod tracker;

use futures::StreamExt;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::db::{Db, DbError};
use crate::services::Services;
use crate::tasks::runner::TaskQueue;
use alerts::{Alert, AlertSink, CATEGORY_VM_HEALTH};
use resurrector::{AlertTracker, MeltdownState};
use tracker::{Busy, ExpectedVm, Tracker};

pub use tracker::{AgentHealth, AgentStatus};

/// `hm:` of the director config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HmConfig {
    /// Run the health monitor at all (default true; it needs the director's NATS).
    pub enabled: bool,
    /// Seconds between two looks at the agents and the deployment locks (default 1).
    pub interval: f64,
    /// Seconds between two full reads of the VM rows (default 30; BOSH's HM asks the director
    /// every 60 s). Between them the rows are read again only when they may have changed: a
    /// task ended, an instance was (un)ignored, or an agent the monitor does not know
    /// heartbeats.
    pub refresh_interval: f64,
    /// Seconds without a heartbeat after which an agent is pinged, and judged unresponsive
    /// when the ping fails (default 10; BOSH's HM uses 60). A VM is only judged once it has
    /// been expected this long.
    pub unresponsive_timeout: f64,
    /// Seconds before a lost VM whose scan-and-fix ended is queued again (default 60).
    pub retry_interval: f64,
    /// Seconds a late agent has to answer its ping (default 2). A false alarm costs little:
    /// the scan-and-fix task pings again (5 s) before it repairs anything.
    pub ping_timeout: f64,
    /// Seconds a loss must last before it is acted on (default 1), so that agents lost
    /// together are counted together by the meltdown guard.
    pub resurrection_delay: f64,
    /// URLs each alert is POSTed to as JSON; failures are logged.
    pub webhooks: Vec<String>,
    /// Record alerts in the events table (default true), as BOSH's event logger plugin.
    pub events: bool,
    pub resurrector: ResurrectorConfig,
}

impl Default for HmConfig {
    fn default() -> Self {
        HmConfig {
            enabled: true,
            interval: 1.0,
            refresh_interval: 30.0,
            unresponsive_timeout: 10.0,
            retry_interval: 60.0,
            ping_timeout: 2.0,
            resurrection_delay: 1.0,
            webhooks: Vec::new(),
            events: true,
            resurrector: ResurrectorConfig::default(),
        }
    }
}

/// `hm.resurrector`: the meltdown guard, as BOSH's resurrector plugin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResurrectorConfig {
    /// Queue scan-and-fix tasks for lost instances (default true).
    pub enabled: bool,
    /// Below this many unhealthy instances a deployment is never in meltdown (default 5).
    pub minimum_down_jobs: usize,
    /// Share of a deployment's instances unhealthy at which it melts down (default 0.2).
    pub percent_threshold: f64,
    /// Seconds an instance counts as unhealthy after it was lost (default 600).
    pub time_threshold: u64,
}

impl Default for ResurrectorConfig {
    fn default() -> Self {
        ResurrectorConfig {
            enabled: true,
            minimum_down_jobs: 5,
            percent_threshold: 0.2,
            time_threshold: 600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HmError {
    #[error("cannot subscribe to {subject}: {message}")]
    Subscribe { subject: String, message: String },
}

/// Mutable state the listener, the pings and the ticks share.
#[derive(Default)]
struct State {
    tracker: Tracker,
    alerts: AlertTracker,
    /// When the resurrector last queued a repair of each lost VM (by agent id): a retry waits
    /// `retry_interval`, a new VM of the same instance does not.
    queued: HashMap<String, Instant>,
    /// Deployments in meltdown that were alerted about: one alert per meltdown.
    meltdown_alerted: BTreeSet<String>,
    /// The refresh generation ([`Inner::generation`]) of the last read of the VM rows.
    read_generation: Option<u64>,
    /// When the VM rows were last read in full because `refresh_interval` had passed.
    read_at: Option<Instant>,
    /// Agents not expected that heartbeated since the last periodic read: each asks for one
    /// read, not one per heartbeat (compilation VMs are never expected).
    strangers: HashSet<String>,
}

struct Inner {
    config: HmConfig,
    db: Db,
    services: Services,
    queue: TaskQueue,
    sink: AlertSink,
    state: Mutex<State>,
    /// Reads of the VM rows asked for outside tasks (ignore, unknown agents).
    refresh_requests: AtomicU64,
}

impl Inner {
    /// Changes whenever the VM rows may have changed: a task ended or a read was asked for.
    fn generation(&self) -> u64 {
        self.queue
            .ended_count()
            .wrapping_add(self.refresh_requests.load(Ordering::Acquire))
    }

    fn refresh_request(&self) {
        self.refresh_requests.fetch_add(1, Ordering::Release);
    }
}

/// The health monitor: tracks every agent from its heartbeats.
pub struct HealthMonitor {
    inner: Option<Arc<Inner>>,
    stop: watch::Sender<bool>,
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor").finish_non_exhaustive()
    }
}

impl Default for HealthMonitor {
    /// A monitor that tracks nothing (for directors without agents).
    fn default() -> Self {
        HealthMonitor {
            inner: None,
            stop: watch::channel(false).0,
            handles: Mutex::new(Vec::new()),
        }
    }
}

const SUBJECTS: [&str; 3] = [
    "hm.agent.heartbeat.*",
    "hm.agent.alert.*",
    "hm.agent.shutdown.*",
];

impl HealthMonitor {
    /// Subscribes and starts the reconciler. `None` when the config turns it off or the
    /// director has no agents.
    pub async fn start(
        config: HmConfig,
        db: Db,
        services: Services,
        queue: TaskQueue,
    ) -> Result<Option<Arc<HealthMonitor>>, HmError> {
        if !config.enabled {
            return Ok(None);
        }
        let Some(agents) = services.agents.clone() else {
            return Ok(None);
        };
        let nats = agents.client().nats().clone();
        let mut subs = Vec::new();
        for subject in SUBJECTS {
            let sub = nats
                .subscribe(subject.to_owned())
                .await
                .map_err(|e| HmError::Subscribe {
                    subject: subject.to_owned(),
                    message: e.to_string(),
                })?;
            subs.push(sub);
        }
        // The server must have the subscriptions before anything is judged.
        let _ = nats.flush().await;
        let (sink, sink_handle) =
            AlertSink::start(db.clone(), config.webhooks.clone(), config.events);
        let inner = Arc::new(Inner {
            config,
            db,
            services,
            queue,
            sink,
            state: Mutex::new(State::default()),
            refresh_requests: AtomicU64::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut handles = Vec::new();
        let messages = futures::stream::select_all(subs);
        handles.push(tokio::spawn(listen(
            inner.clone(),
            messages,
            stop_rx.clone(),
        )));
        handles.push(tokio::spawn(reconcile(inner.clone(), stop_rx)));
        handles.push(sink_handle);
        tracing::info!("health monitor started");
        Ok(Some(Arc::new(HealthMonitor {
            inner: Some(inner),
            stop,
            handles: Mutex::new(handles),
        })))
    }

    /// Stops listening and reconciling; alerts already raised are still delivered.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let handles: Vec<_> = std::mem::take(&mut *lock(&self.handles));
        for h in handles {
            // The alert sink ends once the other tasks (holding senders) are gone; do not wait
            // on a webhook forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }

    /// Asks for a read of the VM rows at the next tick, after a change a task does not make
    /// (`bosh ignore`).
    pub fn refresh_request(&self) {
        if let Some(i) = &self.inner {
            i.refresh_request();
        }
    }

    /// Agents by health (`running`, `failing`, `stopped`, `unknown`, `shutdown`,
    /// `unresponsive`), for `/metrics`.
    pub fn agent_health_counts(&self) -> BTreeMap<String, u64> {
        match &self.inner {
            Some(i) => lock(&i.state).tracker.health_counts(),
            None => BTreeMap::new(),
        }
    }

    /// Every expected agent with its health and last heartbeat.
    pub fn agent_states(&self) -> Vec<AgentStatus> {
        match &self.inner {
            Some(i) => lock(&i.state).tracker.statuses(),
            None => Vec::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::from_secs(1))
}

/// Heartbeats, shutdown notices and agent alerts, as they arrive.
async fn listen<S>(inner: Arc<Inner>, mut messages: S, mut stop: watch::Receiver<bool>)
where
    S: futures::Stream<Item = async_nats::Message> + Unpin,
{
    loop {
        let msg = tokio::select! {
            m = messages.next() => m,
            _ = stop.changed() => None,
        };
        let Some(msg) = msg else {
            return;
        };
        let subject = msg.subject.as_str();
        let now = Instant::now();
        if let Some(agent) = subject.strip_prefix("hm.agent.heartbeat.") {
            match serde_json::from_slice::<bosh_agent_protocol::Heartbeat>(&msg.payload) {
                Ok(hb) => {
                    let mut st = lock(&inner.state);
                    // A new VM made outside a task's end (or one this monitor missed).
                    if !st.tracker.heartbeat(agent, hb, now)
                        && st.strangers.insert(agent.to_owned())
                    {
                        inner.refresh_request();
                    }
                }
                Err(e) => tracing::debug!(agent, error = %e, "undecodable heartbeat"),
            }
        } else if let Some(agent) = subject.strip_prefix("hm.agent.shutdown.") {
            tracing::info!(agent, "agent announced a shutdown");
            lock(&inner.state).tracker.shutdown(agent, now);
        } else if let Some(agent) = subject.strip_prefix("hm.agent.alert.") {
            match serde_json::from_slice::<bosh_agent_protocol::Alert>(&msg.payload) {
                Ok(a) => {
                    // One VM's lookup, not every agent's status.
                    let vm = lock(&inner.state).tracker.expected_vm(agent).cloned();
                    inner.sink.send(Alert {
                        id: a.id,
                        severity: a.severity,
                        category: None,
                        title: a.title,
                        summary: a.summary,
                        source: vm
                            .as_ref()
                            .map(|v| format!("{}: {}({})", v.deployment, v.group, v.uuid))
                            .unwrap_or_else(|| agent.to_owned()),
                        deployment: vm.as_ref().map(|v| v.deployment.clone()),
                        job: vm.as_ref().map(|v| v.group.clone()),
                        instance_id: vm.as_ref().map(|v| v.uuid.clone()),
                        agent_id: Some(agent.to_owned()),
                        created_at: a.created_at,
                    });
                }
                Err(e) => tracing::debug!(agent, error = %e, "undecodable alert"),
            }
        }
    }
}

async fn reconcile(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(secs(inner.config.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = tick(&inner).await {
            tracing::warn!(error = %e, "health monitor tick failed");
        }
    }
}

/// A row of [`expected_vms`]' query.
type ExpectedRow = (String, String, String, String, String, i64, String, i64);

/// Active VMs with a cid and an instance.
async fn expected_vms(db: &Db) -> Result<Vec<ExpectedVm>, DbError> {
    let rows: Vec<ExpectedRow> = sqlx::query_as(
        "SELECT v.agent_id, v.cid, i.deployment, i.instance_group, i.uuid, i.instance_index, \
         i.state, i.ignored FROM vms v JOIN instances i ON i.id = v.instance_id \
         WHERE v.cid IS NOT NULL AND v.active = 1 AND v.compilation = 0",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(agent_id, vm_cid, deployment, group, uuid, index, state, ignored)| ExpectedVm {
                agent_id,
                vm_cid,
                deployment,
                group,
                uuid,
                index,
                state,
                ignored: ignored != 0,
            },
        )
        .collect())
}

/// The deployment locks: what their tasks work on, and which task holds each.
#[derive(Debug, Default)]
struct Locks {
    busy: Busy,
    holders: HashMap<String, i64>,
}

/// A row of [`locks_read`]' query.
type LockRow = (String, i64, Option<String>, Option<String>);

/// Deployment locks with their task: a scan-and-fix makes busy only the instances it repairs,
/// any other task its whole deployment.
async fn locks_read(db: &Db) -> Result<Locks, DbError> {
    let rows: Vec<LockRow> = sqlx::query_as(
        "SELECT l.resource, l.task_id, t.type, t.payload FROM locks l \
         LEFT JOIN tasks t ON t.id = l.task_id \
         WHERE l.type = 'deployment' AND l.expires_at_ms >= $1",
    )
    .bind(crate::db::now_millis())
    .fetch_all(db.pool())
    .await?;
    let mut locks = Locks::default();
    for (resource, task, task_type, payload) in rows {
        let Some(deployment) = serde_json::from_str::<Vec<String>>(&resource)
            .ok()
            .and_then(|r| r.into_iter().next())
        else {
            continue;
        };
        let repair = (task_type.as_deref() == Some(crate::cck::SCAN_AND_FIX))
            .then(|| {
                serde_json::from_str::<crate::cck::ScanAndFixPayload>(payload.as_deref()?).ok()
            })
            .flatten();
        match repair {
            Some(p) => {
                for (group, keys) in p.jobs {
                    for key in keys {
                        locks
                            .busy
                            .instances
                            .insert((deployment.clone(), group.clone(), key));
                    }
                }
            }
            None => {
                locks.busy.deployments.insert(deployment.clone());
            }
        }
        locks.holders.insert(deployment, task);
    }
    Ok(locks)
}

/// Whether a tick reads the VM rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Nothing changed since the last read: the tracker's copy is current.
    None,
    /// A task ended or a read was asked for since the last read.
    Changed,
    /// `refresh_interval` passed (or never read): a full read, as a safety net for changes
    /// this process does not see (another director process on the same database).
    Periodic,
}

fn refresh_due(st: &State, generation: u64, interval: Duration, now: Instant) -> Refresh {
    if st
        .read_at
        .is_none_or(|at| now.saturating_duration_since(at) >= interval)
    {
        Refresh::Periodic
    } else if st.read_generation != Some(generation) {
        Refresh::Changed
    } else {
        Refresh::None
    }
}

async fn tick(inner: &Arc<Inner>) -> Result<(), DbError> {
    // Read before the rows: a change during the read makes the next tick read again.
    let generation = inner.generation();
    let read = {
        let st = lock(&inner.state);
        refresh_due(
            &st,
            generation,
            secs(inner.config.refresh_interval),
            Instant::now(),
        )
    };
    let vms = if read != Refresh::None {
        Some(expected_vms(&inner.db).await?)
    } else {
        None
    };
    let locks = locks_read(&inner.db).await?;
    let timeout = secs(inner.config.unresponsive_timeout);
    let now = Instant::now();
    let pings = {
        let mut st = lock(&inner.state);
        if let Some(vms) = vms {
            st.tracker.expected_set(vms, now);
            st.read_generation = Some(generation);
            if read == Refresh::Periodic {
                st.read_at = Some(now);
                st.strangers.clear();
            }
        }
        st.tracker.tick(&locks.busy, timeout, now).pings
    };
    for agent in pings {
        let inner = inner.clone();
        tokio::spawn(async move {
            let wait = secs(inner.config.ping_timeout);
            let answered =
                crate::repair::agent_responsive_within(&inner.services, &agent, wait).await;
            let lost = lock(&inner.state)
                .tracker
                .ping_result(&agent, answered, Instant::now());
            if let Some(lost) = lost {
                unresponsive_alert(&inner, &lost.vm);
            }
        });
    }
    resurrect(inner, &locks).await
}

fn unresponsive_alert(inner: &Inner, vm: &ExpectedVm) {
    lock(&inner.state)
        .alerts
        .record(&vm.deployment, &vm.uuid, Instant::now());
    let mut alert = Alert::new(
        alerts::SEVERITY_CRITICAL,
        &format!("{} has timed out", vm.agent_id),
        format!(
            "{} has timed out: no heartbeat for {}s and no answer to a ping",
            vm.agent_id, inner.config.unresponsive_timeout
        ),
        &format!(
            "{}: {}({}) [id={}, index={}, cid={}]",
            vm.deployment, vm.group, vm.uuid, vm.agent_id, vm.index, vm.vm_cid
        ),
    );
    alert.category = Some(CATEGORY_VM_HEALTH.to_owned());
    alert.deployment = Some(vm.deployment.clone());
    alert.job = Some(vm.group.clone());
    alert.instance_id = Some(vm.uuid.clone());
    alert.agent_id = Some(vm.agent_id.clone());
    inner.sink.send(alert);
}

/// Queues scan-and-fix tasks for the lost instances the rules allow, one per deployment.
async fn resurrect(inner: &Arc<Inner>, locks: &Locks) -> Result<(), DbError> {
    let rc = &inner.config.resurrector;
    if !rc.enabled {
        return Ok(());
    }
    let window = Duration::from_secs(rc.time_threshold);
    let retry = secs(inner.config.retry_interval);
    let delay = secs(inner.config.resurrection_delay);
    let lost: Vec<ExpectedVm> = {
        let mut st = lock(&inner.state);
        let now = Instant::now();
        st.alerts.prune(window, now);
        st.queued
            .retain(|_, t| now.saturating_duration_since(*t) < retry);
        st.tracker
            .unresponsive()
            .into_iter()
            .filter(|(_, since)| now.saturating_duration_since(*since) >= delay)
            .map(|(vm, _)| vm)
            .filter(|vm| vm.state == "started" && !vm.ignored)
            .filter(|vm| !locks.busy.covers(vm))
            .collect()
    };
    if lost.is_empty() || resurrector::resurrection_paused(&inner.db).await? {
        return Ok(());
    }
    let rules = resurrector::resurrection_configs(&inner.db).await?;
    let mut by_deployment: BTreeMap<String, Vec<ExpectedVm>> = BTreeMap::new();
    for vm in lost {
        if resurrector::resurrection_enabled(&rules, &vm.deployment, &vm.group) {
            by_deployment
                .entry(vm.deployment.clone())
                .or_default()
                .push(vm);
        }
    }
    let mut pending_by_deployment = resurrector::scan_and_fix_pending(&inner.db).await?;
    let mut uuids_by_deployment = {
        let names: BTreeSet<&str> = by_deployment.keys().map(String::as_str).collect();
        lock(&inner.state).tracker.deployments_uuids(&names)
    };
    for (deployment, vms) in by_deployment {
        let tasks = pending_by_deployment
            .remove(&deployment)
            .unwrap_or_default();
        // A repair queued or waiting for the lock gets no sibling: losses found meanwhile are
        // queued together once it runs, so a storm becomes a few large tasks rather than one
        // small task per tick, each waiting for the one before.
        let holder = locks.holders.get(&deployment);
        let waiting = tasks.iter().any(|(id, _)| Some(id) != holder);
        let pending: BTreeSet<String> = tasks.into_iter().flat_map(|(_, keys)| keys).collect();
        let now = Instant::now();
        let (state, summary, todo) = {
            let mut st = lock(&inner.state);
            let uuids = uuids_by_deployment.remove(&deployment).unwrap_or_default();
            let unhealthy = st.alerts.unhealthy_count(
                &deployment,
                uuids.iter().map(String::as_str),
                window,
                now,
            );
            let state = resurrector::meltdown_state(
                uuids.len(),
                unhealthy,
                rc.minimum_down_jobs,
                rc.percent_threshold,
            );
            let summary = resurrector::meltdown_summary(&deployment, uuids.len(), unhealthy);
            let todo: Vec<ExpectedVm> = vms
                .into_iter()
                .filter(|vm| !pending.contains(&vm.uuid))
                .filter(|vm| {
                    st.queued
                        .get(&vm.agent_id)
                        .is_none_or(|t| now.saturating_duration_since(*t) >= retry)
                })
                .collect();
            if state != MeltdownState::Meltdown {
                st.meltdown_alerted.remove(&deployment);
            }
            (state, summary, todo)
        };
        if todo.is_empty() || waiting {
            continue;
        }
        let names = |vms: &[ExpectedVm]| {
            vms.iter()
                .map(|v| format!("'{}/{}'", v.group, v.uuid))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if state == MeltdownState::Meltdown {
            let fresh = lock(&inner.state)
                .meltdown_alerted
                .insert(deployment.clone());
            if fresh {
                let mut alert = Alert::new(
                    alerts::SEVERITY_ALERT,
                    "We are in meltdown",
                    format!(
                        "Skipping resurrection for instances: {}; {summary}",
                        names(&todo)
                    ),
                    "HM plugin resurrector",
                );
                alert.deployment = Some(deployment.clone());
                inner.sink.send(alert);
            }
            continue;
        }
        let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for vm in &todo {
            jobs.entry(vm.group.clone())
                .or_default()
                .push(vm.uuid.clone());
        }
        let task = resurrector::scan_and_fix_queue(&inner.queue, &deployment, jobs).await?;
        {
            let mut st = lock(&inner.state);
            for vm in &todo {
                st.queued.insert(vm.agent_id.clone(), now);
            }
        }
        tracing::info!(%deployment, task, instances = %names(&todo), "resurrection queued");
        let mut alert = Alert::new(
            alerts::SEVERITY_WARNING,
            "Recreating unresponsive VMs",
            format!(
                "Notifying Director to recreate instances: {}; {summary}",
                names(&todo)
            ),
            "HM plugin resurrector",
        );
        alert.deployment = Some(deployment.clone());
        inner.sink.send(alert);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rows_are_read_after_a_change_or_a_refresh_interval_only() {
        let mut st = State::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        assert_eq!(refresh_due(&st, 0, every, t0), Refresh::Periodic);
        st.read_generation = Some(0);
        st.read_at = Some(t0);
        assert_eq!(
            refresh_due(&st, 0, every, t0 + Duration::from_secs(29)),
            Refresh::None
        );
        // A task ended (or an ignore, or a stranger's heartbeat): read at the next tick.
        assert_eq!(
            refresh_due(&st, 1, every, t0 + Duration::from_secs(1)),
            Refresh::Changed
        );
        st.read_generation = Some(1);
        assert_eq!(
            refresh_due(&st, 1, every, t0 + Duration::from_secs(2)),
            Refresh::None
        );
        assert_eq!(
            refresh_due(&st, 1, every, t0 + Duration::from_secs(30)),
            Refresh::Periodic
        );
    }
}
