//! The resurrector's decisions: the meltdown guard (as BOSH's resurrector plugin and its alert
//! tracker), the `resurrection` config rules, the director-wide pause, and queueing one
//! `cck_scan_and_fix` task per deployment.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::cck::{SCAN_AND_FIX, ScanAndFixPayload};
use crate::db::{Db, DbError};
use crate::tasks::runner::TaskQueue;
use crate::tasks::store::NewTask;

/// `director_attributes` name of `bosh update-resurrection off`.
pub const PAUSED_ATTRIBUTE: &str = "resurrection_paused";
/// The user the resurrector's tasks and events are recorded under.
pub const HM_USER: &str = "hm";

/// Where a deployment stands, as the resurrector plugin's `DeploymentState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeltdownState {
    /// No unhealthy agent.
    Normal,
    /// Some agents are unhealthy: resurrect them.
    Managed,
    /// Too many are: resurrect nothing, alert instead.
    Meltdown,
}

/// The meltdown arithmetic: a deployment melts down when at least `minimum_down_jobs` of its
/// `agents` are unhealthy and they are at least `percent_threshold` of them.
pub fn meltdown_state(
    agents: usize,
    unhealthy: usize,
    minimum_down_jobs: usize,
    percent_threshold: f64,
) -> MeltdownState {
    if unhealthy == 0 {
        return MeltdownState::Normal;
    }
    let percent = unhealthy as f64 / agents.max(1) as f64;
    if unhealthy >= minimum_down_jobs && percent >= percent_threshold {
        MeltdownState::Meltdown
    } else {
        MeltdownState::Managed
    }
}

/// The summary the resurrector's alerts carry.
pub fn meltdown_summary(deployment: &str, agents: usize, unhealthy: usize) -> String {
    let percent = unhealthy as f64 * 100.0 / agents.max(1) as f64;
    format!(
        "deployment: '{deployment}'; {unhealthy} of {agents} agents are unhealthy ({percent:.1}%)"
    )
}

/// When each instance last became unhealthy; only those within `time_threshold` count.
#[derive(Debug, Default)]
pub struct AlertTracker {
    unhealthy: HashMap<(String, String), Instant>,
}

impl AlertTracker {
    /// Records that `deployment`'s instance `uuid` became unhealthy at `at`.
    pub fn record(&mut self, deployment: &str, uuid: &str, at: Instant) {
        self.unhealthy
            .insert((deployment.to_owned(), uuid.to_owned()), at);
    }

    /// How many of `uuids` were recorded unhealthy within `window` of `now`.
    pub fn unhealthy_count<'a>(
        &self,
        deployment: &str,
        uuids: impl IntoIterator<Item = &'a str>,
        window: Duration,
        now: Instant,
    ) -> usize {
        uuids
            .into_iter()
            .filter(|u| {
                self.unhealthy
                    .get(&(deployment.to_owned(), (*u).to_owned()))
                    .is_some_and(|t| now.saturating_duration_since(*t) <= window)
            })
            .count()
    }

    /// Drops records older than `window`.
    pub fn prune(&mut self, window: Duration, now: Instant) {
        self.unhealthy
            .retain(|_, t| now.saturating_duration_since(*t) <= window);
    }
}

/// A `resurrection` config's content: `rules: [{enabled, include, exclude}]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ResurrectionConfig {
    #[serde(default)]
    pub rules: Vec<ResurrectionRule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResurrectionRule {
    pub enabled: bool,
    #[serde(default)]
    pub include: RuleFilter,
    #[serde(default)]
    pub exclude: RuleFilter,
}

/// Empty lists match everything in `include` and nothing in `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RuleFilter {
    #[serde(default)]
    pub deployments: Vec<String>,
    #[serde(default)]
    pub instance_groups: Vec<String>,
}

impl RuleFilter {
    fn is_empty(&self) -> bool {
        self.deployments.is_empty() && self.instance_groups.is_empty()
    }

    /// Every non-empty list must name the instance's deployment / group.
    fn matches(&self, deployment: &str, group: &str) -> bool {
        (self.deployments.is_empty() || self.deployments.iter().any(|d| d == deployment))
            && (self.instance_groups.is_empty() || self.instance_groups.iter().any(|g| g == group))
    }
}

impl ResurrectionRule {
    /// Whether the rule speaks about `deployment`'s group `group`.
    pub fn applies(&self, deployment: &str, group: &str) -> bool {
        let included = self.include.is_empty() || self.include.matches(deployment, group);
        let excluded = !self.exclude.is_empty() && self.exclude.matches(deployment, group);
        included && !excluded
    }
}

/// Resurrection is on unless a rule that applies to the instance turns it off.
pub fn resurrection_enabled(configs: &[ResurrectionConfig], deployment: &str, group: &str) -> bool {
    !configs
        .iter()
        .flat_map(|c| &c.rules)
        .any(|r| !r.enabled && r.applies(deployment, group))
}

/// Every current `resurrection` config; one that does not parse is skipped with a warning
/// (the configs API validates YAML, not this shape).
pub async fn resurrection_configs(db: &Db) -> Result<Vec<ResurrectionConfig>, DbError> {
    let configs = crate::configs::config_list(db, Some("resurrection"), None, true, None).await?;
    Ok(configs
        .into_iter()
        .filter_map(|(c, _)| {
            let value = match bosh_yaml::parse(&c.content) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(config = %c.name, error = %e, "resurrection config is not YAML");
                    return None;
                }
            };
            match bosh_yaml::from_value::<ResurrectionConfig>(&value) {
                Ok(rc) => Some(rc),
                Err(e) => {
                    tracing::warn!(config = %c.name, error = %e, "resurrection config skipped");
                    None
                }
            }
        })
        .collect())
}

/// `bosh update-resurrection off` in effect.
pub async fn resurrection_paused(db: &Db) -> Result<bool, DbError> {
    Ok(db
        .attribute_fetch(PAUSED_ATTRIBUTE)
        .await?
        .is_some_and(|v| v == "true"))
}

/// Stores the director-wide pause (`PUT /resurrection`).
pub async fn resurrection_pause_set(db: &Db, paused: bool) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO director_attributes (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(PAUSED_ATTRIBUTE)
    .bind(paused.to_string())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The queued or running scan-and-fix tasks by deployment: id and the instance uuids (or
/// indexes) each covers.
pub async fn scan_and_fix_pending(
    db: &Db,
) -> Result<BTreeMap<String, Vec<(i64, BTreeSet<String>)>>, DbError> {
    // One query for every deployment: the resurrector asks each tick, and during a mass
    // outage (meltdown) that is every deployment at once.
    let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
        "SELECT id, deployment, payload FROM tasks WHERE type = $1 \
         AND state IN ('queued', 'processing', 'cancelling')",
    )
    .bind(SCAN_AND_FIX)
    .fetch_all(db.pool())
    .await?;
    let mut pending: BTreeMap<String, Vec<(i64, BTreeSet<String>)>> = BTreeMap::new();
    for (id, deployment, p) in rows {
        let Some(deployment) = deployment else {
            continue;
        };
        let keys = serde_json::from_str::<ScanAndFixPayload>(&p)
            .map(|p| p.jobs.into_values().flatten().collect())
            .unwrap_or_default();
        pending.entry(deployment).or_default().push((id, keys));
    }
    Ok(pending)
}

/// Queues the scan-and-fix of `jobs` (group → uuids) in `deployment`.
pub async fn scan_and_fix_queue(
    queue: &TaskQueue,
    deployment: &str,
    jobs: BTreeMap<String, Vec<String>>,
) -> Result<i64, DbError> {
    let payload = ScanAndFixPayload {
        deployment: deployment.to_owned(),
        jobs,
    };
    let task = queue
        .task_enqueue(&NewTask {
            task_type: SCAN_AND_FIX.to_owned(),
            description: "scan and fix".to_owned(),
            payload: serde_json::to_value(&payload).unwrap_or_default(),
            user: HM_USER.to_owned(),
            deployment: Some(deployment.to_owned()),
            context_id: String::new(),
        })
        .await?;
    Ok(task.id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meltdown_needs_both_the_count_and_the_percentage() {
        assert_eq!(meltdown_state(10, 0, 5, 0.2), MeltdownState::Normal);
        assert_eq!(meltdown_state(10, 1, 5, 0.2), MeltdownState::Managed);
        // Below the minimum count: always managed, whatever the share.
        assert_eq!(meltdown_state(4, 4, 5, 0.2), MeltdownState::Managed);
        assert_eq!(meltdown_state(10, 5, 5, 0.2), MeltdownState::Meltdown);
        // Enough down, but too small a share of a large deployment.
        assert_eq!(meltdown_state(100, 5, 5, 0.2), MeltdownState::Managed);
        assert_eq!(meltdown_state(100, 19, 5, 0.2), MeltdownState::Managed);
        assert_eq!(meltdown_state(100, 20, 5, 0.2), MeltdownState::Meltdown);
        // The minimum is inclusive, as `>=` in the plugin.
        assert_eq!(meltdown_state(2, 1, 1, 0.5), MeltdownState::Meltdown);
        assert_eq!(
            meltdown_summary("dep", 8, 2),
            "deployment: 'dep'; 2 of 8 agents are unhealthy (25.0%)"
        );
    }

    #[test]
    fn only_recent_unhealthy_records_count() {
        let mut t = AlertTracker::default();
        let now = Instant::now();
        let window = Duration::from_secs(600);
        t.record("dep", "a", now);
        t.record("dep", "b", now);
        t.record("other", "c", now);
        assert_eq!(
            t.unhealthy_count("dep", ["a", "b", "c", "d"], window, now),
            2
        );
        let later = now + Duration::from_secs(601);
        assert_eq!(t.unhealthy_count("dep", ["a", "b"], window, later), 0);
        t.prune(window, later);
        assert!(t.unhealthy.is_empty());
    }

    fn config(yaml: &str) -> ResurrectionConfig {
        bosh_yaml::from_value(&bosh_yaml::parse(yaml).unwrap()).unwrap()
    }

    #[test]
    fn rules_turn_resurrection_off_where_they_apply() {
        assert!(resurrection_enabled(&[], "dep", "web"));
        let all_off = config("rules: [{enabled: false}]");
        assert!(!resurrection_enabled(
            std::slice::from_ref(&all_off),
            "dep",
            "web"
        ));

        let by_deployment = config(
            "rules:\n- enabled: false\n  include: {deployments: [dep]}\n  exclude: {instance_groups: [db]}\n",
        );
        let c = std::slice::from_ref(&by_deployment);
        assert!(!resurrection_enabled(c, "dep", "web"));
        assert!(resurrection_enabled(c, "dep", "db"), "excluded group");
        assert!(resurrection_enabled(c, "other", "web"), "not included");

        let both = config(
            "rules:\n- enabled: false\n  include: {deployments: [dep], instance_groups: [web]}\n",
        );
        let c = std::slice::from_ref(&both);
        assert!(!resurrection_enabled(c, "dep", "web"));
        assert!(resurrection_enabled(c, "dep", "db"));
        assert!(resurrection_enabled(c, "other", "web"));

        // An enabled rule never turns it off; another config's rule still does.
        let on = config("rules: [{enabled: true, include: {deployments: [dep]}}]");
        assert!(resurrection_enabled(
            std::slice::from_ref(&on),
            "dep",
            "web"
        ));
        assert!(!resurrection_enabled(&[on, all_off], "dep", "web"));
    }
}
