//! The director's NATS: its PKI (generated once in `DATA_DIR/nats/`), the nats-server
//! configuration (TLS `verify_and_map`: the client certificate's subject is the user), and the
//! embedded `nats-server` child process.
//!
//! Per-agent users: nats-server 2.9 maps a certificate to a user only by its exact subject and
//! has no permission templates outside JWT accounts, so, as `bosh-nats-sync` does, every agent
//! gets its own user (publish only on its own subjects) and the config is rewritten and
//! reloaded (`nats-server --signal reload=PIDFILE`) when an agent is added or removed.
//!
//! The child dies with the director: it runs under a small `sh` wrapper whose stdin is a pipe
//! from the director; when the director exits (even on SIGKILL) the pipe closes and the wrapper
//! kills nats-server. A supervisor task restarts the child if it exits on its own.

use bosh_agent_protocol::MbusCert;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build a NATS certificate")]
    Cert(#[from] rcgen::Error),
    #[error("cannot start {bin} (is Debian's nats-server installed? set NATS_SERVER to its path)")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server did not accept connections on port {port} within {after:?}: {log}")]
    NotReady {
        port: u16,
        after: Duration,
        log: String,
    },
    #[error("nats-server did not reload its configuration: {0}")]
    Reload(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NatsError + '_ {
    move |source| NatsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `C=USA, O=Cloud Foundry, CN=<cn>`: the subject nats-server maps to a user.
pub fn bosh_subject(cn: &str) -> String {
    format!("C=USA, O=Cloud Foundry, CN={cn}")
}

pub const DIRECTOR_CN: &str = "default.director.bosh-internal";
pub const HM_CN: &str = "default.hm.bosh-internal";
pub const SERVER_CN: &str = "default.nats.bosh-internal";

/// The agent's certificate name, as the Ruby director issues it.
pub fn agent_cn(agent_id: &str) -> String {
    format!("{agent_id}.agent.bosh-internal")
}

/// The CA and identities of the director's NATS, kept in `DATA_DIR/nats/`.
pub struct NatsPki {
    dir: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    pub ca_pem: String,
}

impl std::fmt::Debug for NatsPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
/// The names the server certificate was issued for: a data dir reused with another
/// `nats.host` (or Docker gateway) gets a certificate naming the new one.
const SERVER_HOSTS: &str = "server.hosts";
const DIRECTOR_CERT: &str = "director.crt";
const DIRECTOR_KEY: &str = "director.key";

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bosh-rs NATS CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    Ok(params)
}

fn write_private(path: &Path, text: &str) -> Result<(), NatsError> {
    crate::private_file::private_file_write(path, text).map_err(io(path))
}

fn write_public(path: &Path, text: &str) -> Result<(), NatsError> {
    std::fs::write(path, text).map_err(io(path))
}

fn read(path: &Path) -> Result<String, NatsError> {
    std::fs::read_to_string(path).map_err(io(path))
}

impl NatsPki {
    /// Loads the CA, server and director certificates from `dir`, generating what is missing.
    /// ECDSA P-256 keys: fast to make, and every party (nats-server, rustls) speaks them.
    pub fn ensure(dir: &Path, server_hosts: &[String]) -> Result<NatsPki, NatsError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (ca_cert_path, ca_key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        let (ca_key, fresh) = if ca_cert_path.exists() && ca_key_path.exists() {
            (KeyPair::from_pem(&read(&ca_key_path)?)?, false)
        } else {
            let key = KeyPair::generate()?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            (key, true)
        };
        // Re-signing the same subject with the same key yields a certificate that verifies
        // exactly what the stored one does; the stored PEM is what peers trust.
        let ca_cert = ca_params()?.self_signed(&ca_key)?;
        let ca_pem = if fresh {
            let pem = ca_cert.pem();
            write_public(&ca_cert_path, &pem)?;
            pem
        } else {
            read(&ca_cert_path)?
        };
        let pki = NatsPki {
            dir: dir.to_owned(),
            ca_cert,
            ca_key,
            ca_pem,
        };
        let mut sans = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        for h in server_hosts {
            if !h.is_empty() && !sans.contains(h) {
                sans.push(h.clone());
            }
        }
        let hosts = sans.join("\n");
        let issued_for = std::fs::read_to_string(dir.join(SERVER_HOSTS)).unwrap_or_default();
        if fresh
            || !dir.join(SERVER_CERT).exists()
            || !dir.join(SERVER_KEY).exists()
            || issued_for != hosts
        {
            let (cert, key) = pki.issue(SERVER_CN, &sans, true)?;
            write_private(&dir.join(SERVER_KEY), &key)?;
            write_public(&dir.join(SERVER_CERT), &cert)?;
            write_public(&dir.join(SERVER_HOSTS), &hosts)?;
        }
        if fresh || !dir.join(DIRECTOR_CERT).exists() || !dir.join(DIRECTOR_KEY).exists() {
            let (cert, key) = pki.issue(DIRECTOR_CN, &[], false)?;
            write_private(&dir.join(DIRECTOR_KEY), &key)?;
            write_public(&dir.join(DIRECTOR_CERT), &cert)?;
        }
        Ok(pki)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join(SERVER_CERT)
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join(SERVER_KEY)
    }

    /// `(certificate PEM, key PEM)` signed by the CA.
    fn issue(
        &self,
        cn: &str,
        sans: &[String],
        server: bool,
    ) -> Result<(String, String), NatsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = sans
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "USA");
        dn.push(DnType::OrganizationName, "Cloud Foundry");
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2044, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The director's client identity.
    pub fn director_cert(&self) -> Result<MbusCert, NatsError> {
        Ok(MbusCert {
            ca: self.ca_pem.clone(),
            certificate: read(&self.dir.join(DIRECTOR_CERT))?,
            private_key: read(&self.dir.join(DIRECTOR_KEY))?,
        })
    }

    /// A fresh client certificate for one agent (`env.bosh.mbus.cert`); never stored.
    pub fn agent_cert(&self, agent_id: &str) -> Result<MbusCert, NatsError> {
        let (certificate, private_key) = self.issue(&agent_cn(agent_id), &[], false)?;
        Ok(MbusCert {
            ca: self.ca_pem.clone(),
            certificate,
            private_key,
        })
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The permissions `bosh-nats-sync` gives one agent identity: publish only its own
/// heartbeats, alerts, shutdown notice and replies; subscribe only to its inbox.
fn agent_user(cn: &str, agent_id: &str) -> String {
    let publish = [
        format!("hm.agent.heartbeat.{agent_id}"),
        format!("hm.agent.alert.{agent_id}"),
        format!("hm.agent.shutdown.{agent_id}"),
        format!("director.*.{agent_id}.*"),
    ];
    format!(
        "    {{ user: {:?}, permissions: {{ publish: [{}], subscribe: [{:?}] }} }}\n",
        bosh_subject(cn),
        quoted_list(&publish),
        format!("agent.{agent_id}")
    )
}

/// Where nats-server listens and which files it reads.
#[derive(Debug, Clone)]
pub struct NatsServerConfig {
    pub host: String,
    pub port: u16,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca: PathBuf,
}

/// The nats-server configuration: the director and health-monitor users, and for every agent
/// id its permanent and bootstrap users.
pub fn nats_config_render<'a>(
    c: &NatsServerConfig,
    agent_ids: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut users = String::new();
    // The health monitor runs inside the director, on its connection: it reads `hm.agent.*`.
    users.push_str(&format!(
        "    {{ user: {:?}, permissions: {{ publish: [\"agent.*\", \"hm.director.alert\"], subscribe: [\"director.>\", \"hm.agent.heartbeat.*\", \"hm.agent.alert.*\", \"hm.agent.shutdown.*\"] }} }}\n",
        bosh_subject(DIRECTOR_CN)
    ));
    users.push_str(&format!(
        "    {{ user: {:?}, permissions: {{ subscribe: [\"hm.agent.heartbeat.*\", \"hm.agent.alert.*\", \"hm.agent.shutdown.*\", \"hm.director.alert\"] }} }}\n",
        bosh_subject(HM_CN)
    ));
    for id in agent_ids {
        users.push_str(&agent_user(&agent_cn(id), id));
        users.push_str(&agent_user(
            &format!("{id}.bootstrap.agent.bosh-internal"),
            id,
        ));
    }
    format!(
        "listen: \"{}:{}\"\nping_interval: \"5s\"\nping_max: 2\nmax_payload: 1048576\n\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify_and_map: true\n  timeout: 5\n}}\n\nauthorization {{\n  users: [\n{users}  ]\n}}\n",
        c.host,
        c.port,
        c.server_cert.display().to_string(),
        c.server_key.display().to_string(),
        c.ca.display().to_string(),
    )
}

/// The nats-server binary: `$NATS_SERVER`, else Debian's.
pub fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned())
}

/// Kills nats-server from `$1`'s config when the director's end of stdin closes; exits when
/// nats-server does. fd 3 keeps the director's pipe for the watcher.
const WRAPPER: &str = r#"exec 3<&0
"$0" -c "$1" -P "$2" 3<&- </dev/null &
n=$!
{ read _ignored; kill "$n" 2>/dev/null; } <&3 &
w=$!
wait "$n"
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

struct ServerState {
    agents: BTreeSet<String>,
}

/// The embedded nats-server: a supervised child process and its per-agent users.
pub struct EmbeddedNats {
    config: NatsServerConfig,
    dir: PathBuf,
    bin: String,
    state: tokio::sync::Mutex<ServerState>,
    /// User changes not yet written (agent id → add or remove). Whoever holds `state` next
    /// writes them all with one reload: at thousands of VMs created at once a reload per
    /// agent would serialise VM creation behind nats-server.
    pending: Mutex<BTreeMap<String, bool>>,
    /// Wakes the removal flusher: a removed user is written by a background task so that
    /// deleting VMs never waits for nats-server.
    removals: Notify,
    /// Configuration reloads signalled so far (tests and diagnostics).
    reloads: AtomicU64,
    stop: watch::Sender<bool>,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for EmbeddedNats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedNats")
            .field("port", &self.config.port)
            .finish_non_exhaustive()
    }
}

impl EmbeddedNats {
    fn conf_path(&self) -> PathBuf {
        self.dir.join("nats.conf")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("nats.pid")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.config.host, self.config.port)
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// The server's log so far (for messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Writes the config for `agents` and starts the supervised child; returns once the
    /// server accepts TCP connections. A nats-server left by a dead director of the same data
    /// dir is stopped first.
    pub async fn start(
        dir: &Path,
        config: NatsServerConfig,
        agents: BTreeSet<String>,
    ) -> Result<Arc<EmbeddedNats>, NatsError> {
        let (stop, _) = watch::channel(false);
        let nats = Arc::new(EmbeddedNats {
            config,
            dir: dir.to_owned(),
            bin: nats_server_bin(),
            state: tokio::sync::Mutex::new(ServerState { agents }),
            pending: Mutex::new(BTreeMap::new()),
            removals: Notify::new(),
            reloads: AtomicU64::new(0),
            stop,
            supervisor: Mutex::new(None),
        });
        nats.stale_kill().await;
        {
            let state = nats.state.lock().await;
            nats.config_write(&state.agents)?;
        }
        let child = nats.spawn()?;
        nats.ready_wait(Duration::from_secs(10)).await?;
        let handle = tokio::spawn(supervise(nats.clone(), child));
        if let Ok(mut s) = nats.supervisor.lock() {
            *s = Some(handle);
        }
        tokio::spawn(removals_flush(Arc::downgrade(&nats), nats.stop.subscribe()));
        Ok(nats)
    }

    fn config_write(&self, agents: &BTreeSet<String>) -> Result<(), NatsError> {
        let text = nats_config_render(&self.config, agents.iter().map(String::as_str));
        let path = self.conf_path();
        // Atomic replace: a reload must never read half a file.
        let tmp = self.dir.join("nats.conf.tmp");
        write_private(&tmp, &text)?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    fn spawn(&self) -> Result<Child, NatsError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(io(&self.log_path()))?;
        let err = log.try_clone().map_err(io(&self.log_path()))?;
        Command::new("/bin/sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(&self.bin)
            .arg(self.conf_path())
            .arg(self.pid_path())
            .stdin(std::process::Stdio::piped())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NatsError::Spawn {
                bin: self.bin.clone(),
                source,
            })
    }

    async fn ready_wait(&self, limit: Duration) -> Result<(), NatsError> {
        let deadline = tokio::time::Instant::now() + limit;
        let addr = (self.config.host.clone(), self.config.port);
        loop {
            if tokio::net::TcpStream::connect(addr.clone()).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NatsError::NotReady {
                    port: self.config.port,
                    after: limit,
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid_read(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops a nats-server whose pidfile is ours and whose command line names our config.
    async fn stale_kill(&self) {
        let Some(pid) = self.pid_read() else {
            return;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let conf = self.conf_path().display().to_string();
        if cmdline.windows(conf.len()).any(|w| w == conf.as_bytes()) {
            tracing::warn!(pid, "stopping a nats-server left by a previous director");
            let _ = Command::new("kill").arg(pid.to_string()).status().await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = std::fs::remove_file(self.pid_path());
    }

    async fn reload(&self) -> Result<(), NatsError> {
        let out = Command::new(&self.bin)
            .arg("--signal")
            .arg(format!("reload={}", self.pid_path().display()))
            .output()
            .await
            .map_err(|source| NatsError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NatsError::Reload(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }

    /// Adds an agent's users and reloads. The reload is asynchronous in nats-server; callers
    /// that need the user in place poll (see `Agents::agent_register`). An agent already known
    /// costs nothing: no write, no reload.
    pub async fn agent_add(&self, agent_id: &str) -> Result<(), NatsError> {
        self.changes_apply([(agent_id, true)]).await
    }

    /// Adds many agents' users with one config write and one reload (a deploy registers the
    /// agents of all the VMs it is about to create at once).
    pub async fn agents_add<'a>(
        &self,
        agent_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), NatsError> {
        self.changes_apply(agent_ids.into_iter().map(|id| (id, true)))
            .await
    }

    /// Removes an agent's users. Returns once the removal is queued: a background task writes
    /// queued removals together (or the next addition does), so deleting a thousand VMs costs
    /// a few reloads and never waits for one. A removal lost to a crash is harmless: on start
    /// the configuration is rebuilt from the VM rows.
    pub fn agent_remove(&self, agent_id: &str) {
        self.agents_remove([agent_id]);
    }

    /// [`EmbeddedNats::agent_remove`] for many agents.
    pub fn agents_remove<'a>(&self, agent_ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut p) = self.pending.lock() {
            for id in agent_ids {
                p.insert(id.to_owned(), false);
            }
        }
        self.removals.notify_one();
    }

    /// Whether the written configuration has the agent's users.
    pub async fn agent_known(&self, agent_id: &str) -> bool {
        self.state.lock().await.agents.contains(agent_id)
    }

    /// How many agents the written configuration has users for.
    pub async fn agents_known_count(&self) -> usize {
        self.state.lock().await.agents.len()
    }

    /// Configuration reloads signalled since start.
    pub fn reload_count(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Queues user changes and returns once they are written and a reload signalled: changes
    /// queued while a reload runs are written together by the next lock holder (group
    /// commit), so N concurrent registrations cost a few reloads, not N. A failed write or
    /// reload is reported to the caller that ran it; the others see their user missing when
    /// they probe.
    async fn changes_apply<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Result<(), NatsError> {
        if let Ok(mut p) = self.pending.lock() {
            for (id, add) in changes {
                p.insert(id.to_owned(), add);
            }
        }
        self.pending_flush().await
    }

    /// Writes every queued change with at most one reload.
    async fn pending_flush(&self) -> Result<(), NatsError> {
        let mut state = self.state.lock().await;
        let batch = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        let mut changed = false;
        for (id, add) in batch {
            changed |= if add {
                state.agents.insert(id)
            } else {
                state.agents.remove(&id)
            };
        }
        if changed {
            let log_from = self.log_len();
            self.config_write(&state.agents)?;
            self.reloads.fetch_add(1, Ordering::Relaxed);
            self.reload().await?;
            self.reload_applied_wait(log_from, Duration::from_secs(5))
                .await;
        }
        Ok(())
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// Waits until nats-server logs the outcome of the reload signalled after `log_from`
    /// bytes of its log. The reload is asynchronous: without this, every new agent's
    /// registration probes NATS with TLS handshakes until its user appears, and hundreds of
    /// concurrent registrations then spend the CPU on failed handshakes.
    async fn reload_applied_wait(&self, log_from: u64, limit: Duration) {
        use std::io::{Read, Seek, SeekFrom};
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(self.log_path())
                && f.seek(SeekFrom::Start(log_from)).is_ok()
            {
                let _ = f.read_to_string(&mut text);
            }
            if text.contains("Reloaded server configuration") || text.contains("Failed to reload") {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(after = ?limit, "nats-server did not log the reload's outcome");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the child and its supervisor.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = self.supervisor.lock().ok().and_then(|mut s| s.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

/// Writes queued removals in the background. It waits a little after being woken so that
/// the removals of VMs deleted together share one reload.
async fn removals_flush(nats: Weak<EmbeddedNats>, mut stop: watch::Receiver<bool>) {
    loop {
        let Some(n) = nats.upgrade() else { return };
        tokio::select! {
            _ = n.removals.notified() => {}
            _ = stop.changed() => return,
        }
        drop(n);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.changed() => return,
        }
        let Some(n) = nats.upgrade() else { return };
        if let Err(e) = n.pending_flush().await {
            tracing::warn!(error = %crate::error::error_chain(&e), "cannot remove agents' NATS users");
        }
    }
}

/// Waits on the child; restarts it (with back-off) when it exits unless the director stops.
async fn supervise(nats: Arc<EmbeddedNats>, mut child: Child) {
    let mut stop = nats.stop.subscribe();
    let mut backoff = Duration::from_millis(200);
    // Tokio's `wait` closes a child's stdin first; the wrapper must keep its pipe open.
    let mut stdin = child.stdin.take();
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, "nats-server exited; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                match nats.spawn() {
                    Ok(mut c) => {
                        stdin = c.stdin.take();
                        child = c;
                    }
                    Err(e) => {
                        tracing::error!(error = %crate::error::error_chain(&e), "cannot restart nats-server");
                        return;
                    }
                }
            }
            _ = stop.changed() => {
                // Closing stdin makes the wrapper kill nats-server; then reap the wrapper.
                drop(stdin.take());
                if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                let _ = std::fs::remove_file(nats.pid_path());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_grants_agents_only_their_own_subjects() {
        let c = NatsServerConfig {
            host: "127.0.0.1".into(),
            port: 4222,
            server_cert: "/s.pem".into(),
            server_key: "/s.key".into(),
            ca: "/ca.pem".into(),
        };
        let conf = nats_config_render(&c, ["a1"]);
        assert!(conf.contains("verify_and_map: true"));
        assert!(conf.contains(r#""C=USA, O=Cloud Foundry, CN=a1.agent.bosh-internal""#));
        assert!(conf.contains(r#""C=USA, O=Cloud Foundry, CN=a1.bootstrap.agent.bosh-internal""#));
        assert!(conf.contains(r#""director.*.a1.*""#));
        assert!(conf.contains(r#"subscribe: ["agent.a1"]"#));
        assert!(conf.contains(r#"CN=default.director.bosh-internal""#));
    }

    async fn server_start(dir: &Path) -> Arc<EmbeddedNats> {
        let pki = NatsPki::ensure(&dir.join("pki"), &[]).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = NatsServerConfig {
            host: "127.0.0.1".into(),
            port,
            server_cert: pki.server_cert_path(),
            server_key: pki.server_key_path(),
            ca: pki.ca_path(),
        };
        let agents = BTreeSet::from(["old".to_owned()]);
        std::fs::create_dir_all(dir.join("nats")).unwrap();
        EmbeddedNats::start(&dir.join("nats"), config, agents)
            .await
            .unwrap()
    }

    fn conf_has(nats: &EmbeddedNats, id: &str) -> bool {
        std::fs::read_to_string(nats.conf_path())
            .unwrap()
            .contains(&format!("CN={id}.agent.bosh-internal\""))
    }

    #[tokio::test]
    async fn agents_added_together_cost_one_reload_and_removals_are_batched() {
        let dir = tempfile::tempdir().unwrap();
        let nats = server_start(dir.path()).await;
        assert!(
            conf_has(&nats, "old"),
            "users of existing VMs are written at start"
        );
        assert_eq!(nats.reload_count(), 0);

        nats.agents_add(["a1", "a2", "a3"]).await.unwrap();
        assert_eq!(nats.reload_count(), 1, "one reload for the whole batch");
        for id in ["old", "a1", "a2", "a3"] {
            assert!(conf_has(&nats, id), "{id}");
            assert!(nats.agent_known(id).await, "{id}");
        }
        // Registering an agent already added changes nothing.
        nats.agent_add("a2").await.unwrap();
        assert_eq!(nats.reload_count(), 1);

        // Removals return at once; the background flusher writes them together.
        nats.agents_remove(["a1", "a2", "old"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while nats.agent_known("a1").await || nats.agent_known("old").await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "removals were never written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(nats.reload_count(), 2, "one reload for the three removals");
        assert!(!conf_has(&nats, "a1") && !conf_has(&nats, "a2") && !conf_has(&nats, "old"));
        assert!(
            conf_has(&nats, "a3"),
            "the agent not removed keeps its users"
        );
        // Removing an unknown agent does not reload.
        nats.agent_remove("never-added");
        nats.agent_add("a3").await.unwrap();
        assert_eq!(nats.reload_count(), 2);
        nats.shutdown().await;
    }

    #[test]
    fn pki_is_generated_once_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = NatsPki::ensure(dir.path(), &[]).unwrap();
        let first = a.director_cert().unwrap();
        let b = NatsPki::ensure(dir.path(), &[]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(first.certificate, b.director_cert().unwrap().certificate);
        for key in [CA_KEY, SERVER_KEY, DIRECTOR_KEY] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let agent = b.agent_cert("a1").unwrap();
        assert!(agent.certificate.contains("BEGIN CERTIFICATE"));
        // Another host (e.g. a Docker gateway) gets a new server certificate naming it.
        let before = std::fs::read_to_string(dir.path().join(SERVER_CERT)).unwrap();
        NatsPki::ensure(dir.path(), &[]).unwrap();
        assert_eq!(
            before,
            std::fs::read_to_string(dir.path().join(SERVER_CERT)).unwrap()
        );
        NatsPki::ensure(dir.path(), &["10.9.8.1".to_owned()]).unwrap();
        assert_ne!(
            before,
            std::fs::read_to_string(dir.path().join(SERVER_CERT)).unwrap()
        );
    }
}
