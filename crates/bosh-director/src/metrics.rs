//! The director's Prometheus metrics (`GET /metrics`, issue 7): what is observed as it
//! happens (deploy phase durations, CPI call and NATS round-trip latencies) lives in
//! histograms here; what is a state of the world (tasks by state and type, agents by health,
//! free IPs per network) is read at scrape time, so it can never drift from the database.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bosh_cpi::protocol::methods::{
    CloudProperties, CreateDiskArgs, CreateStemcellArgs, CreateVmArgs, CreateVmResult, DiskHint,
    InfoResult, Metadata, Method, SnapshotCid, UpdateDiskArgs, VmResources,
};
use bosh_cpi::{Cpi, CpiError, CpiLogSink};
use bosh_types::ids::{DiskCid, StemcellCid, VmCid};

use bosh_types::cloud_config::{CloudConfig, IpRange, Network};

use crate::db::{Db, DbError};
use crate::services::Services;
use crate::tasks::runner::TaskRegistry;

/// Registers this component's task types (none: metrics only observe).
pub fn tasks_register(_registry: &mut TaskRegistry, _services: &Services, _director_name: &str) {}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading the database for metrics")]
    Db(#[from] DbError),
    #[error("reading the database for metrics")]
    Sql(#[from] sqlx::Error),
    #[error("encoding metrics")]
    Encode(#[from] std::fmt::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    r#type: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabels {
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Deploy phases take seconds to an hour.
fn phase_histogram() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ])
}

/// CPI calls and agent round trips: a millisecond (sim CPI, local NATS) to minutes.
fn call_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0,
    ])
}

/// The director's registry and the series it records.
pub struct Metrics {
    registry: Registry,
    deploy_phase: Histograms<PhaseLabels>,
    cpi_call: Histograms<MethodLabels>,
    cpi_errors: Family<MethodLabels, Counter>,
    nats_round_trip: Histograms<MethodLabels>,
    tasks: Family<TaskLabels, Gauge>,
    agents: Family<HealthLabels, Gauge>,
    ips_free: Family<NetworkLabels, Gauge>,
    /// One scrape at a time: scrape-time gauges are cleared and refilled.
    scrape: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A deploy phase, as the `phase` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployPhase {
    Plan,
    Compile,
    CreateVms,
    Update,
}

impl DeployPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployPhase::Plan => "plan",
            DeployPhase::Compile => "compile",
            DeployPhase::CreateVms => "create_vms",
            DeployPhase::Update => "update",
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bosh_director");
        let deploy_phase: Histograms<PhaseLabels> =
            Family::new_with_constructor(phase_histogram as fn() -> Histogram);
        let cpi_call: Histograms<MethodLabels> =
            Family::new_with_constructor(call_histogram as fn() -> Histogram);
        let nats_round_trip: Histograms<MethodLabels> =
            Family::new_with_constructor(call_histogram as fn() -> Histogram);
        let cpi_errors = Family::<MethodLabels, Counter>::default();
        let tasks = Family::<TaskLabels, Gauge>::default();
        let agents = Family::<HealthLabels, Gauge>::default();
        let ips_free = Family::<NetworkLabels, Gauge>::default();
        registry.register(
            "tasks",
            "Tasks in the database by type and state",
            tasks.clone(),
        );
        registry.register(
            "deploy_phase_duration_seconds",
            "Duration of each deploy phase that completed (plan, compile, create_vms, update)",
            deploy_phase.clone(),
        );
        registry.register(
            "agents",
            "Agents by health as the health monitor last saw them",
            agents.clone(),
        );
        registry.register(
            "cpi_call_duration_seconds",
            "CPI call latency by method",
            cpi_call.clone(),
        );
        registry.register(
            "cpi_call_errors",
            "CPI calls that failed, by method",
            cpi_errors.clone(),
        );
        registry.register(
            "nats_round_trip_seconds",
            "Agent request to reply over NATS, by method",
            nats_round_trip.clone(),
        );
        registry.register(
            "network_ips_free",
            "Dynamic IPs still free per manual network of the current cloud configs",
            ips_free.clone(),
        );
        Metrics {
            registry,
            deploy_phase,
            cpi_call,
            cpi_errors,
            nats_round_trip,
            tasks,
            agents,
            ips_free,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    pub fn deploy_phase_observe(&self, phase: DeployPhase, took: Duration) {
        self.deploy_phase
            .get_or_create(&PhaseLabels {
                phase: phase.as_str().to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn cpi_call_observe(&self, method: &str, took: Duration, ok: bool) {
        let labels = MethodLabels {
            method: method.to_owned(),
        };
        self.cpi_call
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.cpi_errors.get_or_create(&labels).inc();
        }
    }

    pub fn nats_round_trip_observe(&self, method: &str, took: Duration) {
        self.nats_round_trip
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition: scrape-time series refreshed from `db` and the health
    /// monitor's `agent_health` counts (`None` when there is no health monitor).
    pub async fn scrape(
        &self,
        db: &Db,
        agent_health: Option<BTreeMap<String, u64>>,
    ) -> Result<String, MetricsError> {
        let _one = self.scrape.lock().await;
        let tasks = task_counts(db).await?;
        let free = ips_free(db).await?;

        self.tasks.clear();
        for ((r#type, state), n) in tasks {
            self.tasks
                .get_or_create(&TaskLabels { r#type, state })
                .set(n);
        }
        self.agents.clear();
        for (health, n) in agent_health.unwrap_or_default() {
            self.agents
                .get_or_create(&HealthLabels { health })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.ips_free.clear();
        for (network, n) in free {
            self.ips_free
                .get_or_create(&NetworkLabels { network })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }

        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A CPI whose every call's latency goes to [`Metrics`], by method. The server wraps the
/// director's CPI in it once, so task CPIs (`cpi_log::TaskCpi`) and direct callers are both
/// counted, each call once.
pub struct MeteredCpi {
    inner: Arc<dyn Cpi>,
    metrics: Arc<Metrics>,
}

impl MeteredCpi {
    pub fn new(inner: Arc<dyn Cpi>, metrics: Arc<Metrics>) -> MeteredCpi {
        MeteredCpi { inner, metrics }
    }

    async fn timed<T>(
        &self,
        method: Method,
        call: impl Future<Output = Result<T, CpiError>>,
    ) -> Result<T, CpiError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .cpi_call_observe(method.as_str(), started.elapsed(), result.is_ok());
        result
    }
}

#[async_trait]
impl Cpi for MeteredCpi {
    async fn info(&self) -> Result<InfoResult, CpiError> {
        self.timed(Method::Info, self.inner.info()).await
    }
    async fn create_stemcell(&self, args: CreateStemcellArgs) -> Result<StemcellCid, CpiError> {
        self.timed(Method::CreateStemcell, self.inner.create_stemcell(args))
            .await
    }
    async fn delete_stemcell(&self, stemcell_cid: &StemcellCid) -> Result<(), CpiError> {
        self.timed(
            Method::DeleteStemcell,
            self.inner.delete_stemcell(stemcell_cid),
        )
        .await
    }
    async fn create_vm(&self, args: CreateVmArgs) -> Result<CreateVmResult, CpiError> {
        self.timed(Method::CreateVm, self.inner.create_vm(args))
            .await
    }
    async fn delete_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        self.timed(Method::DeleteVm, self.inner.delete_vm(vm_cid))
            .await
    }
    async fn has_vm(&self, vm_cid: &VmCid) -> Result<bool, CpiError> {
        self.timed(Method::HasVm, self.inner.has_vm(vm_cid)).await
    }
    async fn reboot_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        self.timed(Method::RebootVm, self.inner.reboot_vm(vm_cid))
            .await
    }
    async fn set_vm_metadata(&self, vm_cid: &VmCid, metadata: &Metadata) -> Result<(), CpiError> {
        self.timed(
            Method::SetVmMetadata,
            self.inner.set_vm_metadata(vm_cid, metadata),
        )
        .await
    }
    async fn calculate_vm_cloud_properties(
        &self,
        resources: &VmResources,
    ) -> Result<CloudProperties, CpiError> {
        self.timed(
            Method::CalculateVmCloudProperties,
            self.inner.calculate_vm_cloud_properties(resources),
        )
        .await
    }
    async fn get_disks(&self, vm_cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
        self.timed(Method::GetDisks, self.inner.get_disks(vm_cid))
            .await
    }
    async fn create_disk(&self, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
        self.timed(Method::CreateDisk, self.inner.create_disk(args))
            .await
    }
    async fn delete_disk(&self, disk_cid: &DiskCid) -> Result<(), CpiError> {
        self.timed(Method::DeleteDisk, self.inner.delete_disk(disk_cid))
            .await
    }
    async fn has_disk(&self, disk_cid: &DiskCid) -> Result<bool, CpiError> {
        self.timed(Method::HasDisk, self.inner.has_disk(disk_cid))
            .await
    }
    async fn attach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<DiskHint, CpiError> {
        self.timed(Method::AttachDisk, self.inner.attach_disk(vm_cid, disk_cid))
            .await
    }
    async fn detach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<(), CpiError> {
        self.timed(Method::DetachDisk, self.inner.detach_disk(vm_cid, disk_cid))
            .await
    }
    async fn set_disk_metadata(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<(), CpiError> {
        self.timed(
            Method::SetDiskMetadata,
            self.inner.set_disk_metadata(disk_cid, metadata),
        )
        .await
    }
    async fn resize_disk(&self, disk_cid: &DiskCid, new_size_mib: u64) -> Result<(), CpiError> {
        self.timed(
            Method::ResizeDisk,
            self.inner.resize_disk(disk_cid, new_size_mib),
        )
        .await
    }
    async fn update_disk(&self, args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError> {
        self.timed(Method::UpdateDisk, self.inner.update_disk(args))
            .await
    }
    async fn snapshot_disk(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<SnapshotCid, CpiError> {
        self.timed(
            Method::SnapshotDisk,
            self.inner.snapshot_disk(disk_cid, metadata),
        )
        .await
    }
    async fn delete_snapshot(&self, snapshot_cid: &SnapshotCid) -> Result<(), CpiError> {
        self.timed(
            Method::DeleteSnapshot,
            self.inner.delete_snapshot(snapshot_cid),
        )
        .await
    }
    fn with_log_sink(&self, sink: Arc<dyn CpiLogSink>) -> Option<Arc<dyn Cpi>> {
        let inner = self.inner.with_log_sink(sink)?;
        Some(Arc::new(MeteredCpi::new(inner, self.metrics.clone())))
    }
}

/// Task counts by (type, state), one GROUP BY.
async fn task_counts(db: &Db) -> Result<Vec<((String, String), i64)>, MetricsError> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT type, state, COUNT(*) FROM tasks GROUP BY type, state")
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(|(t, s, n)| ((t, s), n)).collect())
}

/// Free dynamic addresses per manual network of the merged current cloud configs: each
/// subnet's range minus network/broadcast/gateway/reserved and static addresses, minus the
/// reserved rows that fall in what is left. Configs that do not parse or merge count as none.
async fn ips_free(db: &Db) -> Result<BTreeMap<String, u128>, MetricsError> {
    let configs = crate::configs::config_list(db, Some("cloud"), None, true, None).await?;
    let parsed: Vec<CloudConfig> = configs
        .iter()
        .filter_map(|(c, _)| CloudConfig::parse(&c.content).ok())
        .collect();
    if parsed.is_empty() {
        return Ok(BTreeMap::new());
    }
    let Ok(cloud) = CloudConfig::merge(parsed) else {
        return Ok(BTreeMap::new());
    };
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT network_name, address FROM ip_addresses")
            .fetch_all(db.pool())
            .await?;
    let mut used: HashMap<&str, Vec<IpAddr>> = HashMap::new();
    for (network, address) in &rows {
        // Prefix-delegated rows may carry a `/n`; the first address stands for them.
        let ip = address.split('/').next().unwrap_or(address);
        if let Ok(ip) = ip.parse() {
            used.entry(network.as_str()).or_default().push(ip);
        }
    }
    let mut out = BTreeMap::new();
    for network in &cloud.networks {
        let Network::Manual(n) = network else {
            continue;
        };
        let mut free: u128 = 0;
        for s in &n.subnets {
            let Some(range) = s.range else { continue };
            let range = range.as_range();
            let mut excluded = s.restricted();
            excluded.extend(s.static_ips.iter().copied());
            let pool = range.len() - covered(&range, &excluded);
            let taken = used
                .get(n.name.as_str())
                .map(|ips| {
                    ips.iter()
                        .filter(|ip| {
                            range.contains(**ip) && !excluded.iter().any(|r| r.contains(**ip))
                        })
                        .count() as u128
                })
                .unwrap_or(0);
            free += pool.saturating_sub(taken);
        }
        out.insert(n.name.clone(), free);
    }
    Ok(out)
}

fn ip_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

/// How many addresses of `range` the (possibly overlapping) `ranges` cover.
fn covered(range: &IpRange, ranges: &[IpRange]) -> u128 {
    let (lo, hi) = (ip_u128(range.first), ip_u128(range.last));
    let mut spans: Vec<(u128, u128)> = ranges
        .iter()
        .filter(|r| r.first.is_ipv4() == range.first.is_ipv4())
        .map(|r| (ip_u128(r.first).max(lo), ip_u128(r.last).min(hi)))
        .filter(|(a, b)| a <= b)
        .collect();
    spans.sort_unstable();
    let mut total = 0u128;
    let mut end: Option<u128> = None;
    for (a, b) in spans {
        let start = match end {
            Some(e) if a <= e => e.saturating_add(1),
            _ => a,
        };
        if start <= b {
            total += b - start + 1;
        }
        end = Some(end.map_or(b, |e| e.max(b)));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: &str, b: &str) -> IpRange {
        IpRange {
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
        }
    }

    #[test]
    fn covered_counts_overlaps_once_and_clips_to_the_range() {
        let range = r("10.0.0.0", "10.0.0.255");
        let ranges = [
            r("10.0.0.0", "10.0.0.0"),
            r("10.0.0.255", "10.0.0.255"),
            r("10.0.0.2", "10.0.0.9"),
            r("10.0.0.5", "10.0.0.12"),
            r("10.0.0.250", "10.0.1.20"),
            r("10.0.0.1", "10.0.0.1"),
        ];
        // .0, .1-.12, .250-.255
        assert_eq!(covered(&range, &ranges), 1 + 12 + 6);
        assert_eq!(covered(&range, &[]), 0);
    }

    #[test]
    fn scrape_text_names_observed_series() {
        let m = Metrics::new();
        m.deploy_phase_observe(DeployPhase::Compile, Duration::from_millis(20));
        m.cpi_call_observe("create_vm", Duration::from_millis(3), false);
        m.nats_round_trip_observe("ping", Duration::from_micros(500));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("bosh_director_deploy_phase_duration_seconds_count{phase=\"compile\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("bosh_director_cpi_call_errors_total{method=\"create_vm\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("bosh_director_nats_round_trip_seconds_count{method=\"ping\"} 1"),
            "{out}"
        );
    }
}
