//! What the health monitor knows about each agent: the VMs it expects (from the database) and
//! what the agents said (heartbeats, shutdown notices, pings), and the verdict for each.

use bosh_agent_protocol::{Heartbeat, Vitals};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

/// A VM the director expects to be alive: it has a cid, an instance and is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedVm {
    pub agent_id: String,
    pub vm_cid: String,
    pub deployment: String,
    pub group: String,
    pub uuid: String,
    pub index: i64,
    /// `instances.state`: started | stopped | detached.
    pub state: String,
    pub ignored: bool,
}

/// What an agent last told us.
#[derive(Debug, Clone)]
struct Contact {
    at: Instant,
    heartbeat_at: Option<SystemTime>,
    heartbeat: Option<Heartbeat>,
    /// When the agent announced a planned shutdown (`hm.agent.shutdown`).
    shutdown: Option<Instant>,
}

/// The tracker's verdict on one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentHealth {
    /// Heartbeats (or pings) arrive and its jobs run.
    Running,
    /// Alive, but its jobs are failing.
    Failing,
    /// Alive, jobs stopped, starting or unknown.
    Stopped,
    /// Not heard from yet, still within its grace period.
    Unknown,
    /// Announced a planned shutdown.
    Shutdown,
    /// No heartbeat within the timeout and no answer to a ping.
    Unresponsive,
}

impl AgentHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentHealth::Running => "running",
            AgentHealth::Failing => "failing",
            AgentHealth::Stopped => "stopped",
            AgentHealth::Unknown => "unknown",
            AgentHealth::Shutdown => "shutdown",
            AgentHealth::Unresponsive => "unresponsive",
        }
    }
}

/// One agent as [`super::HealthMonitor::agent_states`] shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub agent_id: String,
    pub vm_cid: String,
    pub deployment: String,
    pub instance_group: String,
    pub instance_id: String,
    pub index: i64,
    pub health: AgentHealth,
    /// `job_state` of the last heartbeat.
    pub job_state: Option<String>,
    pub number_of_processes: Option<u64>,
    pub vitals: Option<Vitals>,
    /// Unix seconds of the last heartbeat.
    pub last_heartbeat: Option<i64>,
}

#[derive(Debug)]
struct Tracked {
    vm: ExpectedVm,
    /// When this tracker first expected the VM, or when its deployment's lock was last
    /// seen: the grace period starts here.
    since: Instant,
    ping_in_flight: bool,
    last_ping: Option<Instant>,
    unresponsive_since: Option<Instant>,
}

/// What a tick asks of its caller.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TickActions {
    /// Agents to ping (late heartbeats).
    pub pings: Vec<String>,
}

/// What running tasks are working on, from the deployment locks: their VMs are not judged.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Busy {
    /// Deployments locked by a task that may touch any of their VMs (a deploy, a stop, ...).
    pub deployments: HashSet<String>,
    /// `(deployment, group, uuid or index)` a running scan-and-fix repairs; the other
    /// instances of its deployment are still judged.
    pub instances: HashSet<(String, String, String)>,
}

impl Busy {
    pub fn covers(&self, vm: &ExpectedVm) -> bool {
        if self.deployments.contains(&vm.deployment) {
            return true;
        }
        if self.instances.is_empty() {
            return false;
        }
        let key = |k: String| (vm.deployment.clone(), vm.group.clone(), k);
        self.instances.contains(&key(vm.uuid.clone()))
            || self.instances.contains(&key(vm.index.to_string()))
    }
}

/// How long after a shutdown notice the agent's heartbeats do not cancel it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// An agent that just became unresponsive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub vm: ExpectedVm,
}

#[derive(Debug, Default)]
pub struct Tracker {
    expected: HashMap<String, Tracked>,
    contacts: HashMap<String, Contact>,
}

impl Tracker {
    /// Records a heartbeat; false when the agent is not an expected VM (yet).
    pub fn heartbeat(&mut self, agent_id: &str, hb: Heartbeat, now: Instant) -> bool {
        // The agent heartbeats on while it drains and stops after announcing a shutdown: only
        // a heartbeat well after the notice means the VM stayed up.
        let shutdown = self
            .contacts
            .get(agent_id)
            .and_then(|c| c.shutdown)
            .filter(|at| now.saturating_duration_since(*at) < SHUTDOWN_GRACE);
        self.contacts.insert(
            agent_id.to_owned(),
            Contact {
                at: now,
                heartbeat_at: Some(SystemTime::now()),
                heartbeat: Some(hb),
                shutdown,
            },
        );
        match self.expected.get_mut(agent_id) {
            Some(t) => {
                t.unresponsive_since = None;
                true
            }
            None => false,
        }
    }

    pub fn shutdown(&mut self, agent_id: &str, now: Instant) {
        let c = self
            .contacts
            .entry(agent_id.to_owned())
            .or_insert_with(|| Contact {
                at: now,
                heartbeat_at: None,
                heartbeat: None,
                shutdown: Some(now),
            });
        c.at = now;
        c.shutdown = Some(now);
    }

    /// A ping's result: an answer counts as contact; silence makes the agent unresponsive
    /// (returned once, when that happens).
    pub fn ping_result(&mut self, agent_id: &str, answered: bool, now: Instant) -> Option<Lost> {
        let t = self.expected.get_mut(agent_id)?;
        t.ping_in_flight = false;
        if answered {
            t.unresponsive_since = None;
            let c = self
                .contacts
                .entry(agent_id.to_owned())
                .or_insert_with(|| Contact {
                    at: now,
                    heartbeat_at: None,
                    heartbeat: None,
                    shutdown: None,
                });
            c.at = now;
            return None;
        }
        // A heartbeat may have arrived while the ping was out.
        let late = self
            .contacts
            .get(agent_id)
            .is_none_or(|c| c.at <= t.last_ping.unwrap_or(now));
        if late && t.unresponsive_since.is_none() {
            t.unresponsive_since = Some(now);
            return Some(Lost { vm: t.vm.clone() });
        }
        None
    }

    /// Replaces the expected VMs with `vms` (a full read of the VM rows); a VM first seen is
    /// given a grace period, a VM no longer listed is forgotten.
    pub fn expected_set(&mut self, vms: Vec<ExpectedVm>, now: Instant) {
        let mut next = HashMap::with_capacity(vms.len());
        for vm in vms {
            let mut t = self.expected.remove(&vm.agent_id).unwrap_or(Tracked {
                vm: vm.clone(),
                since: now,
                ping_in_flight: false,
                last_ping: None,
                unresponsive_since: None,
            });
            t.vm = vm;
            next.insert(t.vm.agent_id.clone(), t);
        }
        self.expected = next;
        // Forget agents that are gone and have been silent for a while.
        let expected = &self.expected;
        self.contacts.retain(|id, c| {
            expected.contains_key(id)
                || now.saturating_duration_since(c.at) < Duration::from_secs(600)
        });
    }

    /// The expected VM of `agent_id`.
    pub fn expected_vm(&self, agent_id: &str) -> Option<&ExpectedVm> {
        self.expected.get(agent_id).map(|t| &t.vm)
    }

    /// Whether `agent_id` is one of the expected VMs.
    pub fn is_expected(&self, agent_id: &str) -> bool {
        self.expected.contains_key(agent_id)
    }

    /// Which agents are late and need a ping. An agent is late when neither a heartbeat, a
    /// ping answer nor its grace period is more recent than `timeout`. VMs `busy` covers are
    /// not judged (a running task may make, repair or delete them) and lose an earlier
    /// verdict, but keep their grace period: when the task ends, one silent all along is
    /// pinged at once instead of a full timeout later (the ping still guards against false
    /// alarms).
    pub fn tick(&mut self, busy: &Busy, timeout: Duration, now: Instant) -> TickActions {
        let mut actions = TickActions::default();
        for (id, t) in &mut self.expected {
            if busy.covers(&t.vm) {
                t.unresponsive_since = None;
                continue;
            }
            if t.ping_in_flight {
                continue;
            }
            let contact = self.contacts.get(id);
            if contact.is_some_and(|c| c.shutdown.is_some()) {
                continue;
            }
            let last = contact.map_or(t.since, |c| c.at.max(t.since));
            if now.saturating_duration_since(last) < timeout {
                continue;
            }
            // An unresponsive agent is pinged again once per timeout, to notice a return.
            if t.unresponsive_since.is_some()
                && t.last_ping
                    .is_some_and(|p| now.saturating_duration_since(p) < timeout)
            {
                continue;
            }
            t.ping_in_flight = true;
            t.last_ping = Some(now);
            actions.pings.push(id.clone());
        }
        actions
    }

    /// The expected VMs that are unresponsive now, with when they became so.
    pub fn unresponsive(&self) -> Vec<(ExpectedVm, Instant)> {
        self.expected
            .values()
            .filter_map(|t| Some((t.vm.clone(), t.unresponsive_since?)))
            .collect()
    }

    /// The uuids of every watched instance of each of `deployments`, in one pass over the
    /// watched VMs (a per-deployment scan costs deployments × VMs in a mass outage).
    pub fn deployments_uuids(
        &self,
        deployments: &std::collections::BTreeSet<&str>,
    ) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for t in self.expected.values() {
            if deployments.contains(t.vm.deployment.as_str()) {
                out.entry(t.vm.deployment.clone())
                    .or_default()
                    .push(t.vm.uuid.clone());
            }
        }
        out
    }

    fn health(&self, t: &Tracked) -> AgentHealth {
        let contact = self.contacts.get(&t.vm.agent_id);
        if contact.is_some_and(|c| c.shutdown.is_some()) {
            return AgentHealth::Shutdown;
        }
        if t.unresponsive_since.is_some() {
            return AgentHealth::Unresponsive;
        }
        match contact.and_then(|c| c.heartbeat.as_ref()) {
            None => AgentHealth::Unknown,
            Some(hb) => match hb.job_state.as_str() {
                "running" => AgentHealth::Running,
                "failing" => AgentHealth::Failing,
                _ => AgentHealth::Stopped,
            },
        }
    }

    pub fn statuses(&self) -> Vec<AgentStatus> {
        let mut out: Vec<AgentStatus> = self
            .expected
            .values()
            .map(|t| {
                let hb = self
                    .contacts
                    .get(&t.vm.agent_id)
                    .and_then(|c| c.heartbeat.as_ref().map(|h| (h, c.heartbeat_at)));
                AgentStatus {
                    agent_id: t.vm.agent_id.clone(),
                    vm_cid: t.vm.vm_cid.clone(),
                    deployment: t.vm.deployment.clone(),
                    instance_group: t.vm.group.clone(),
                    instance_id: t.vm.uuid.clone(),
                    index: t.vm.index,
                    health: self.health(t),
                    job_state: hb.map(|(h, _)| h.job_state.as_str().to_owned()),
                    number_of_processes: hb.and_then(|(h, _)| h.number_of_processes),
                    vitals: hb.map(|(h, _)| h.vitals.clone()),
                    last_heartbeat: hb.and_then(|(_, at)| {
                        at?.duration_since(SystemTime::UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_secs() as i64)
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.deployment, &a.instance_group, a.index).cmp(&(
                &b.deployment,
                &b.instance_group,
                b.index,
            ))
        });
        out
    }

    pub fn health_counts(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = [
            AgentHealth::Running,
            AgentHealth::Failing,
            AgentHealth::Stopped,
            AgentHealth::Unknown,
            AgentHealth::Shutdown,
            AgentHealth::Unresponsive,
        ]
        .iter()
        .map(|h| (h.as_str().to_owned(), 0))
        .collect();
        for t in self.expected.values() {
            *out.entry(self.health(t).as_str().to_owned()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosh_agent_protocol::JobState;

    fn vm(id: &str) -> ExpectedVm {
        ExpectedVm {
            agent_id: id.into(),
            vm_cid: format!("vm-{id}"),
            deployment: "dep".into(),
            group: "web".into(),
            uuid: format!("u-{id}"),
            index: 0,
            state: "started".into(),
            ignored: false,
        }
    }

    fn hb(state: JobState) -> Heartbeat {
        Heartbeat {
            deployment: "dep".into(),
            job: Some("web".into()),
            index: Some(0),
            job_state: state,
            vitals: Vitals::default(),
            node_id: "u-a".into(),
            number_of_processes: Some(1),
        }
    }

    const T: Duration = Duration::from_secs(10);

    fn idle() -> Busy {
        Busy::default()
    }

    #[test]
    fn a_silent_agent_is_pinged_after_the_timeout_and_lost_when_the_ping_fails() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        tr.expected_set(vec![vm("a")], t0);
        assert!(
            tr.tick(&idle(), T, t0 + Duration::from_secs(5))
                .pings
                .is_empty()
        );
        assert_eq!(tr.health_counts()["unknown"], 1);
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(tr.tick(&idle(), T, t1).pings, vec!["a".to_owned()]);
        // Not pinged twice while the first ping is out.
        assert!(tr.tick(&idle(), T, t1).pings.is_empty());
        let lost = tr.ping_result("a", false, t1 + Duration::from_secs(5));
        assert_eq!(lost.map(|l| l.vm.agent_id), Some("a".to_owned()));
        assert_eq!(tr.unresponsive().len(), 1);
        assert_eq!(tr.health_counts()["unresponsive"], 1);
        // A heartbeat brings it back.
        tr.heartbeat("a", hb(JobState::Running), t1 + Duration::from_secs(6));
        assert!(tr.unresponsive().is_empty());
        assert_eq!(tr.health_counts()["running"], 1);
    }

    #[test]
    fn heartbeats_and_answered_pings_keep_an_agent_responsive() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        tr.expected_set(vec![vm("a")], t0);
        tr.heartbeat("a", hb(JobState::Failing), t0 + Duration::from_secs(8));
        assert!(
            tr.tick(&idle(), T, t0 + Duration::from_secs(15))
                .pings
                .is_empty()
        );
        assert_eq!(tr.health_counts()["failing"], 1);
        let t1 = t0 + Duration::from_secs(19);
        assert_eq!(tr.tick(&idle(), T, t1).pings.len(), 1);
        assert_eq!(tr.ping_result("a", true, t1), None);
        assert!(
            tr.tick(&idle(), T, t1 + Duration::from_secs(9))
                .pings
                .is_empty()
        );
        assert!(tr.unresponsive().is_empty());
    }

    #[test]
    fn shutdown_and_locked_deployments_are_not_judged() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        tr.expected_set(vec![vm("a"), vm("b")], t0);
        tr.shutdown("a", t0);
        // It heartbeats on while it drains and stops: still a planned shutdown.
        tr.heartbeat("a", hb(JobState::Running), t0 + Duration::from_secs(1));
        let later = t0 + Duration::from_secs(30);
        assert_eq!(tr.tick(&idle(), T, later).pings, vec!["b".to_owned()]);
        assert_eq!(tr.health_counts()["shutdown"], 1);
        // One that heartbeats long after the notice stayed up: judged again.
        tr.heartbeat("a", hb(JobState::Running), t0 + Duration::from_secs(61));
        assert_eq!(tr.health_counts()["shutdown"], 0);
        assert_eq!(tr.health_counts()["running"], 1);

        let mut tr = Tracker::default();
        tr.expected_set(vec![vm("b")], t0);
        let locked = Busy {
            deployments: ["dep".to_owned()].into(),
            ..Busy::default()
        };
        assert!(tr.tick(&locked, T, later).pings.is_empty());
        // Once the lock is gone, the agent silent all along is pinged at once.
        assert_eq!(
            tr.tick(&idle(), T, later + Duration::from_secs(1))
                .pings
                .len(),
            1
        );
        // A VM that appears during a lock still gets its grace period.
        tr.expected_set(vec![vm("b"), vm("c")], later);
        tr.ping_result("b", true, later + Duration::from_secs(1));
        assert!(
            tr.tick(&idle(), T, later + Duration::from_secs(5))
                .pings
                .is_empty()
        );
        assert_eq!(
            tr.tick(&idle(), T, later + Duration::from_millis(10_500))
                .pings,
            vec!["c".to_owned()]
        );
    }

    #[test]
    fn an_instance_being_repaired_is_not_judged_while_its_siblings_are() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        let mut by_index = vm("c");
        by_index.index = 7;
        tr.expected_set(vec![vm("a"), vm("b"), by_index], t0);
        let t1 = t0 + Duration::from_secs(11);
        let mut pings = tr.tick(&idle(), T, t1).pings;
        pings.sort();
        assert_eq!(pings, vec!["a", "b", "c"]);
        for id in ["a", "b", "c"] {
            assert!(tr.ping_result(id, false, t1).is_some());
        }
        assert_eq!(tr.unresponsive().len(), 3);
        // A scan-and-fix repairs `a` (named by uuid) and `c` (named by index): their verdict
        // is dropped and they are not pinged; `b` still is.
        let repairing = Busy {
            instances: [
                ("dep".to_owned(), "web".to_owned(), "u-a".to_owned()),
                ("dep".to_owned(), "web".to_owned(), "7".to_owned()),
            ]
            .into(),
            ..Busy::default()
        };
        let t2 = t1 + Duration::from_secs(11);
        assert_eq!(tr.tick(&repairing, T, t2).pings, vec!["b".to_owned()]);
        let lost: Vec<String> = tr
            .unresponsive()
            .into_iter()
            .map(|(v, _)| v.agent_id)
            .collect();
        assert_eq!(lost, vec!["b".to_owned()]);
        // Another deployment's instance with the same group and index is not covered.
        let mut other = vm("d");
        other.deployment = "other".into();
        other.index = 7;
        assert!(!repairing.covers(&other));
        assert!(repairing.covers(&vm("a")));
    }

    #[test]
    fn a_full_read_adds_new_vms_and_forgets_deleted_ones() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        tr.expected_set(vec![vm("a"), vm("b")], t0);
        assert!(tr.heartbeat("a", hb(JobState::Running), t0));
        assert!(!tr.heartbeat("new", hb(JobState::Running), t0));
        tr.expected_set(vec![vm("a"), vm("new")], t0 + Duration::from_secs(1));
        assert!(tr.is_expected("new"));
        assert!(!tr.is_expected("b"));
        let ids: Vec<String> = tr.statuses().into_iter().map(|s| s.agent_id).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&"a".to_owned()) && ids.contains(&"new".to_owned()));
        // The known agent keeps its contact: not pinged within the timeout of its heartbeat.
        assert!(
            tr.tick(&idle(), T, t0 + Duration::from_secs(5))
                .pings
                .is_empty()
        );
    }

    #[test]
    fn statuses_carry_the_last_heartbeat() {
        let mut tr = Tracker::default();
        let t0 = Instant::now();
        tr.expected_set(vec![vm("a")], t0);
        tr.heartbeat("a", hb(JobState::Running), t0);
        let s = tr.statuses();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].health, AgentHealth::Running);
        assert_eq!(s[0].job_state.as_deref(), Some("running"));
        assert_eq!(s[0].number_of_processes, Some(1));
        assert!(s[0].last_heartbeat.is_some());
    }
}
