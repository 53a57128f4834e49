//! Job supervision: a small monit replacement. It reads the monit files `start` writes,
//! starts services in dependency order, watches their pidfiles and restarts crashed
//! processes with back-off. Only services in group `vcap` are managed (§7.2).

pub mod monit;

use crate::layout::Layout;
use bosh_agent_protocol::state::{ProcessCpu, ProcessMem, Uptime};
use bosh_agent_protocol::{JobState, ProcessState, ProcessStatus};
use monit::MonitService;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const VCAP_GROUP: &str = "vcap";
/// A process that stays up this long has its restart back-off reset.
const STABLE_AFTER: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Pidfile polls of a starting service: 10 ms doubling to 500 ms, until it runs or its
/// start timeout passes.
const START_POLL_FIRST: Duration = Duration::from_millis(10);
const START_POLL_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("reading monit file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing monit file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: monit::MonitParseError,
    },
    #[error("Timed out waiting for services to stop: {0}")]
    StopTimeout(String),
}

#[derive(Debug)]
struct Service {
    spec: MonitService,
    monitored: bool,
    state: ProcessState,
    pid: Option<i32>,
    running_since: Option<Instant>,
    starting_since: Option<Instant>,
    /// A start or stop program is running.
    busy: bool,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Service {
    fn new(spec: MonitService) -> Self {
        Service {
            spec,
            monitored: false,
            state: ProcessState::Stopped,
            pid: None,
            running_since: None,
            starting_since: None,
            busy: false,
            failures: 0,
            next_attempt: None,
        }
    }
}

/// A monit-style event about a service, as monit would mail it to the agent (§6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEvent {
    pub service: String,
    /// Monit's event name, e.g. `Does not exist`.
    pub event: &'static str,
    /// What the supervisor does about it, e.g. `restart`.
    pub action: &'static str,
    pub description: String,
}

type EventSink = Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<ServiceEvent>>>;

/// Handle to the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Mutex<Vec<Service>>>,
    layout: Layout,
    events: EventSink,
}

impl Supervisor {
    /// Starts the watch loop, checking every `tick` (monit's daemon interval).
    pub fn start(layout: Layout, tick: Duration) -> Supervisor {
        let sup = Supervisor {
            inner: Arc::default(),
            layout,
            events: EventSink::default(),
        };
        // The loop holds only a weak reference so it ends with the last handle.
        let weak = Arc::downgrade(&sup.inner);
        let layout = sup.layout.clone();
        let events = sup.events.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                Supervisor {
                    inner,
                    layout: layout.clone(),
                    events: events.clone(),
                }
                .check();
            }
        });
        sup
    }

    /// The stream of service events (crashes, failed starts); only the first caller gets it.
    pub fn subscribe_events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ServiceEvent>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.events.set(tx).ok().map(|()| rx)
    }

    fn emit(&self, service: &str, event: &'static str, action: &'static str, description: &str) {
        if let Some(tx) = self.events.get() {
            let _ = tx.send(ServiceEvent {
                service: service.to_owned(),
                event,
                action,
                description: description.to_owned(),
            });
        }
    }

    /// Replaces the service list with the `*.monitrc` files under `monit/job`, keeping the
    /// runtime state of services that are still defined.
    pub fn reload(&self) -> Result<(), SupervisorError> {
        let mut specs = Vec::new();
        let dir = self.layout.monit_jobs();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "monitrc"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(SupervisorError::Read { path: dir, source }),
        };
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| SupervisorError::Read {
                path: path.clone(),
                source,
            })?;
            let parsed = monit::parse(&text).map_err(|source| SupervisorError::Parse {
                path: path.clone(),
                source,
            })?;
            for mut svc in parsed {
                svc.pidfile = PathBuf::from(self.layout.rewrite(&svc.pidfile.to_string_lossy()));
                svc.start_program = self.layout.rewrite(&svc.start_program);
                svc.stop_program = svc.stop_program.map(|p| self.layout.rewrite(&p));
                specs.push(svc);
            }
        }
        let mut services = lock(&self.inner);
        let mut old: Vec<Service> = std::mem::take(&mut *services);
        for spec in specs {
            let svc = match old.iter().position(|s| s.spec.name == spec.name) {
                Some(i) => {
                    let mut s = old.swap_remove(i);
                    s.spec = spec;
                    s
                }
                None => Service::new(spec),
            };
            services.push(svc);
        }
        Ok(())
    }

    /// Forgets every service without stopping it (monit restarted with no job files).
    pub fn clear(&self) {
        lock(&self.inner).clear();
    }

    /// Monitors (and so starts) every `vcap` service; live pids are adopted as running.
    pub fn start_all(&self) {
        for s in lock(&self.inner)
            .iter_mut()
            .filter(|s| s.spec.in_group(VCAP_GROUP))
        {
            s.monitored = true;
            s.failures = 0;
            s.next_attempt = None;
        }
        self.check();
    }

    /// Stops watching every `vcap` service, leaving processes running (drain does this).
    pub fn unmonitor_all(&self) {
        for s in lock(&self.inner)
            .iter_mut()
            .filter(|s| s.spec.in_group(VCAP_GROUP))
        {
            s.monitored = false;
        }
    }

    /// Unmonitors and stops every `vcap` service in reverse dependency order; waits up to
    /// `timeout` for all of them to be gone when `wait` is set.
    pub async fn stop_all(&self, wait: bool, timeout: Duration) -> Result<(), SupervisorError> {
        let order = {
            let mut services = lock(&self.inner);
            for s in services.iter_mut().filter(|s| s.spec.in_group(VCAP_GROUP)) {
                s.monitored = false;
            }
            stop_order(&services)
        };
        let mut stops = Vec::new();
        for name in order {
            let Some((spec, pid)) = ({
                let mut services = lock(&self.inner);
                services.iter_mut().find(|s| s.spec.name == name).map(|s| {
                    s.busy = true;
                    (s.spec.clone(), s.pid.or_else(|| read_pid(&s.spec.pidfile)))
                })
            }) else {
                continue;
            };
            let inner = self.inner.clone();
            let layout = self.layout.clone();
            let stop = async move {
                stop_service(&layout, &spec, pid).await;
                if let Some(s) = lock(&inner).iter_mut().find(|s| s.spec.name == spec.name) {
                    s.busy = false;
                    s.state = ProcessState::Stopped;
                    s.pid = None;
                    s.running_since = None;
                }
            };
            if wait {
                stops.push(stop);
            } else {
                tokio::spawn(stop);
            }
        }
        if !wait {
            return Ok(());
        }
        // Dependents first: each stop finishes before the next begins.
        let all = async {
            for s in stops {
                s.await;
            }
        };
        tokio::time::timeout(timeout, all).await.map_err(|_| {
            let names: Vec<String> = lock(&self.inner)
                .iter()
                .filter(|s| s.busy)
                .map(|s| s.spec.name.clone())
                .collect();
            SupervisorError::StopTimeout(names.join(", "))
        })
    }

    /// Per-process status for `get_state`.
    pub fn processes(&self) -> Vec<ProcessStatus> {
        let mem_total = crate::vitals::mem_total_kb().unwrap_or(0);
        lock(&self.inner)
            .iter()
            .filter(|s| s.spec.in_group(VCAP_GROUP))
            .map(|s| {
                let kb = s.pid.and_then(rss_kb).unwrap_or(0);
                ProcessStatus {
                    name: s.spec.name.clone(),
                    state: if s.monitored {
                        s.state
                    } else {
                        ProcessState::Unknown
                    },
                    uptime: Uptime {
                        secs: s.running_since.map(|t| t.elapsed().as_secs()).unwrap_or(0),
                    },
                    mem: ProcessMem {
                        kb,
                        percent: if mem_total > 0 {
                            (kb as f64 * 1000.0 / mem_total as f64).round() / 10.0
                        } else {
                            0.0
                        },
                    },
                    cpu: ProcessCpu { total: 0.0 },
                }
            })
            .collect()
    }

    /// The aggregate job state (§6.3).
    pub fn job_state(&self) -> JobState {
        if self.layout.stopped_marker().exists() {
            return JobState::Stopped;
        }
        let services = lock(&self.inner);
        let vcap: Vec<&Service> = services
            .iter()
            .filter(|s| s.spec.in_group(VCAP_GROUP))
            .collect();
        if vcap
            .iter()
            .any(|s| s.monitored && s.state == ProcessState::Starting)
        {
            JobState::Starting
        } else if vcap
            .iter()
            .any(|s| !s.monitored || s.state != ProcessState::Running)
        {
            JobState::Failing
        } else {
            JobState::Running
        }
    }

    /// The watch loop's work: passes until no service newly runs, so a dependent starts as
    /// soon as its dependencies run rather than a tick later.
    fn check(&self) {
        while self.check_pass() {}
    }

    /// One pass; true when a service was seen running for the first time.
    fn check_pass(&self) -> bool {
        let mut came_up = false;
        let mut services = lock(&self.inner);
        let running: Vec<String> = services
            .iter()
            .filter(|s| s.state == ProcessState::Running)
            .map(|s| s.spec.name.clone())
            .collect();
        let names: Vec<String> = services.iter().map(|s| s.spec.name.clone()).collect();
        for s in services.iter_mut() {
            let pid = read_pid(&s.spec.pidfile).filter(|p| pid_alive(*p));
            // As monit 5.2 (the stemcells'), a live pidfile counts even while a start
            // program that execs its server has not returned.
            if s.busy && !(s.monitored && pid.is_some()) {
                continue;
            }
            if let Some(pid) = pid {
                if s.state != ProcessState::Running || s.pid != Some(pid) {
                    s.running_since = Some(Instant::now());
                    came_up |= s.state != ProcessState::Running;
                }
                s.state = ProcessState::Running;
                s.pid = Some(pid);
                s.starting_since = None;
                if s.running_since.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                    s.failures = 0;
                }
                continue;
            }
            let was_running = s.state == ProcessState::Running;
            s.pid = None;
            s.running_since = None;
            if !s.monitored {
                s.state = ProcessState::Stopped;
                continue;
            }
            if was_running {
                tracing::warn!(service = %s.spec.name, "process not running, restarting");
                self.emit(
                    &s.spec.name,
                    "Does not exist",
                    "restart",
                    "process is not running",
                );
                s.failures += 1;
                s.next_attempt = Some(Instant::now() + backoff(s.failures));
                s.state = ProcessState::Failing;
            }
            if let Some(since) = s.starting_since {
                if since.elapsed() < s.spec.start_timeout {
                    continue;
                }
                tracing::warn!(service = %s.spec.name, "process did not come up after its start program");
                self.emit(&s.spec.name, "Execution failed", "alert", "failed to start");
                s.starting_since = None;
                s.failures += 1;
                s.next_attempt = Some(Instant::now() + backoff(s.failures));
                s.state = ProcessState::Failing;
            }
            let deps_ready = s
                .spec
                .depends_on
                .iter()
                .all(|d| !names.contains(d) || running.contains(d));
            let due = s.next_attempt.is_none_or(|t| Instant::now() >= t);
            if !deps_ready || !due {
                if s.state == ProcessState::Stopped {
                    s.state = ProcessState::Starting;
                }
                continue;
            }
            s.busy = true;
            s.state = ProcessState::Starting;
            let since = Instant::now();
            s.starting_since = Some(since);
            tokio::spawn(self.clone().start_watch(s.spec.clone(), since));
        }
        came_up
    }

    /// Runs a start program and, while the service is starting, polls its pidfile with a
    /// short back-off: the service is seen running (and `get_state` says so) within
    /// milliseconds instead of at the next tick, and a program that ends is noticed at once.
    async fn start_watch(self, spec: MonitService, since: Instant) {
        let program = run_program(
            &self.layout,
            &spec.name,
            &spec.start_program,
            spec.start_timeout,
        );
        tokio::pin!(program);
        let mut done = false;
        let mut wait = START_POLL_FIRST;
        loop {
            tokio::select! {
                _ = &mut program, if !done => {
                    done = true;
                    if let Some(s) = lock(&self.inner).iter_mut().find(|s| s.spec.name == spec.name) {
                        s.busy = false;
                    }
                }
                _ = tokio::time::sleep(wait) => wait = (wait * 2).min(START_POLL_MAX),
            }
            self.check();
            // Bounded: check() ends the start attempt at its timeout.
            let starting = lock(&self.inner).iter().any(|s| {
                s.spec.name == spec.name && s.monitored && s.starting_since == Some(since)
            });
            if !starting || since.elapsed() > spec.start_timeout + START_POLL_MAX {
                break;
            }
        }
        if !done {
            // A start program that execs its server ends when the server does.
            program.await;
            if let Some(s) = lock(&self.inner)
                .iter_mut()
                .find(|s| s.spec.name == spec.name)
            {
                s.busy = false;
            }
            self.check();
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(5);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Service names ordered so that dependents stop before their dependencies.
fn stop_order(services: &[Service]) -> Vec<String> {
    let vcap: Vec<&Service> = services
        .iter()
        .filter(|s| s.spec.in_group(VCAP_GROUP))
        .collect();
    let mut order: Vec<String> = Vec::new();
    fn visit(name: &str, all: &[&Service], order: &mut Vec<String>, seen: &mut Vec<String>) {
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_owned());
        let Some(svc) = all.iter().find(|s| s.spec.name == name) else {
            return;
        };
        for d in &svc.spec.depends_on {
            visit(d, all, order, seen);
        }
        order.push(name.to_owned());
    }
    let mut seen = Vec::new();
    for s in &vcap {
        visit(&s.spec.name, &vcap, &mut order, &mut seen);
    }
    order.reverse();
    order
}

/// Runs a start or stop program through `sh -c` in its own process group, as monit runs
/// them with a minimal environment; waits at most `timeout` and leaves it running after.
async fn run_program(
    layout: &Layout,
    service: &str,
    program: &str,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let log = layout.monit().join(format!("{service}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .ok();
    let (stdout, stderr) = match out.and_then(|f| f.try_clone().ok().map(|g| (f, g))) {
        Some((f, g)) => (Stdio::from(f), Stdio::from(g)),
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(program)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("BOSH_AGENT_BASE_DIR", layout.base())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%service, error = %e, "spawning program failed");
            return None;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            if !status.success() {
                tracing::warn!(%service, %status, "program exited unsuccessfully");
            }
            Some(status)
        }
        Ok(Err(_)) => None,
        Err(_) => {
            tracing::warn!(%service, "program still running after its timeout");
            // Keep reaping it so it never lingers as a zombie.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            None
        }
    }
}

async fn stop_service(layout: &Layout, spec: &MonitService, pid: Option<i32>) {
    if let Some(stop) = &spec.stop_program {
        run_program(layout, &spec.name, stop, spec.stop_timeout).await;
    }
    let Some(pid) = pid.or_else(|| read_pid(&spec.pidfile)) else {
        return;
    };
    // Monit trusts the stop program; we also make sure the process is really gone so that
    // `stop` means stopped even when a ctl script forgets to kill its daemon.
    for signal in [None, Some(Signal::SIGTERM), Some(Signal::SIGKILL)] {
        if let Some(sig) = signal {
            let _ = kill(Pid::from_raw(pid), sig);
        }
        for _ in 0..50 {
            if !pid_alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Kills the whole process group of `pid` (test cleanup and forced shutdown).
pub fn kill_group(pid: i32) {
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
}

pub fn read_pid(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p: &i32| *p > 0)
}

/// Alive and not a zombie (a reaped-later child of some other parent still has /proc).
pub fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

fn rss_kb(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_job(layout: &Layout, name: &str, depends: &str) {
        let run = layout.base().join("run");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(layout.monit_jobs()).unwrap();
        let pidfile = run.join(format!("{name}.pid"));
        let text = format!(
            "check process {name}\n  with pidfile {pid}\n  start program \"/bin/sh -c 'sleep 300 & echo $! > {pid}'\"\n  stop program \"/bin/sh -c 'kill $(cat {pid})'\"\n  group vcap\n{depends}\n",
            pid = pidfile.display()
        );
        std::fs::write(layout.monit_jobs().join(format!("{name}.monitrc")), text).unwrap();
    }

    async fn wait_for(sup: &Supervisor, want: JobState) {
        for _ in 0..200 {
            if sup.job_state() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "job state stayed {:?}, wanted {want:?}: {:?}",
            sup.job_state(),
            sup.processes()
        );
    }

    #[tokio::test]
    async fn starts_restarts_and_stops_processes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        write_job(&layout, "db", "");
        write_job(&layout, "web", "  depends on db");
        let sup = Supervisor::start(layout.clone(), Duration::from_millis(100));
        sup.reload().unwrap();
        assert_eq!(
            sup.job_state(),
            JobState::Failing,
            "unmonitored services are failing"
        );
        sup.start_all();
        wait_for(&sup, JobState::Running).await;
        let web_pid = read_pid(&dir.path().join("run/web.pid")).unwrap();
        kill(Pid::from_raw(web_pid), Signal::SIGKILL).unwrap();
        // Either the crash is seen (failing/starting) or the restart already happened.
        wait_for(&sup, JobState::Running).await;
        for _ in 0..100 {
            if read_pid(&dir.path().join("run/web.pid")) != Some(web_pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let new_pid = read_pid(&dir.path().join("run/web.pid")).unwrap();
        assert_ne!(new_pid, web_pid, "restarted with a new pid");
        wait_for(&sup, JobState::Running).await;
        sup.stop_all(true, Duration::from_secs(20)).await.unwrap();
        assert!(!pid_alive(new_pid));
        assert!(
            sup.processes()
                .iter()
                .all(|p| p.state == ProcessState::Unknown)
        );
    }

    #[tokio::test]
    async fn start_runs_a_dependency_chain_without_waiting_for_a_tick() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        write_job(&layout, "db", "");
        write_job(&layout, "web", "  depends on db");
        // A tick far beyond the test: only start_all and the pidfile watch can start them.
        let sup = Supervisor::start(layout.clone(), Duration::from_secs(3600));
        sup.reload().unwrap();
        let t0 = Instant::now();
        sup.start_all();
        wait_for(&sup, JobState::Running).await;
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        sup.stop_all(true, Duration::from_secs(20)).await.unwrap();
    }

    #[test]
    fn stop_order_puts_dependents_first() {
        let mk = |n: &str, d: &[&str]| {
            let mut s = MonitService {
                name: n.into(),
                pidfile: "/p".into(),
                start_program: "x".into(),
                start_timeout: Duration::ZERO,
                stop_program: None,
                stop_timeout: Duration::ZERO,
                groups: vec!["vcap".into()],
                depends_on: d.iter().map(|s| s.to_string()).collect(),
            };
            s.groups.push("other".into());
            Service::new(s)
        };
        let order = stop_order(&[mk("web", &["db"]), mk("db", &[])]);
        assert_eq!(order, vec!["web", "db"]);
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }
}
