//! Starting a director: data dir, database, users, TLS, task workers and the HTTPS listener.
//! The binary and the integration tests both go through [`director_start`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::agents::{Agents, AgentsError};
use crate::api::{self, AppState, DirectorInfo};
use crate::auth::{AuthError, Authenticator};
use crate::blobstore::{DavCredentials, blobstore_open};
use crate::config::DirectorConfig;
use crate::db::{Db, DbError};
use crate::deployments::{DELETE_DEPLOYMENT, DeleteDeploymentJob};
use crate::nats::{EmbeddedNats, NatsError, NatsPki, NatsServerConfig};
use crate::pki::{self, PkiError};
use crate::releases::{DELETE_RELEASE, DeleteReleaseJob, UPDATE_RELEASE, UpdateReleaseJob};
use crate::services::{AgentEnvDefaults, Services};
use crate::stemcells::{DELETE_STEMCELL, DeleteStemcellJob, UPDATE_STEMCELL, UpdateStemcellJob};
use crate::tasks::events::TaskOutputs;
use crate::tasks::runner::{TaskJob, TaskQueue, TaskRegistry, TaskTimings};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid listen address '{0}' (expected HOST:PORT)")]
    Listen(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database")]
    Db(#[from] DbError),
    #[error("cannot set up users")]
    Auth(#[from] AuthError),
    #[error("cannot set up TLS")]
    Pki(#[from] PkiError),
    #[error("cannot set up the blobstore")]
    Blobstore(#[from] crate::blobstore::BlobstoreError),
    #[error("cannot set up the CPI")]
    Cpi(String),
    #[error("cannot recover tasks left by a previous director")]
    Recover(#[source] DbError),
    #[error("cannot start NATS")]
    Nats(#[from] NatsError),
    #[error("cannot reach agents over NATS")]
    Agents(#[from] AgentsError),
}

/// How to start a director.
#[derive(Clone)]
pub struct DirectorOptions {
    pub data_dir: PathBuf,
    /// `HOST:PORT`; port 0 picks a free port.
    pub listen: String,
    /// `sim`, `docker` or the path of an external CPI executable (reported by `/info`).
    pub cpi: String,
    pub config: DirectorConfig,
    pub timings: TaskTimings,
    /// Extra task types (other components register theirs here).
    pub extra_jobs: Vec<(String, Arc<dyn TaskJob>)>,
    /// The argv prefix the sim CPI runs as each VM's agent; by default `$BOSH_AGENT_BIN`, else
    /// `bosh-agent` next to this executable, else `bosh-agent` on `PATH`.
    pub agent_command: Option<Vec<String>>,
}

impl DirectorOptions {
    pub fn new(data_dir: PathBuf, listen: &str, cpi: &str, config: DirectorConfig) -> Self {
        let timings = TaskTimings {
            lock_wait: Duration::from_secs(config.lock_wait_seconds),
            ..TaskTimings::default()
        };
        DirectorOptions {
            data_dir,
            listen: listen.to_owned(),
            cpi: cpi.to_owned(),
            config,
            timings,
            extra_jobs: Vec::new(),
            agent_command: None,
        }
    }
}

/// A started director. Dropping it does not stop it; call [`RunningDirector::shutdown`].
pub struct RunningDirector {
    pub addr: SocketAddr,
    /// `https://HOST:PORT`
    pub url: String,
    pub ca_cert_path: PathBuf,
    /// `DIR/credentials.yml`, when the generated admin user is in use.
    pub credentials_path: Option<PathBuf>,
    pub state: AppState,
    /// The embedded nats-server (`None` with an external NATS).
    pub nats: Option<Arc<EmbeddedNats>>,
    handle: axum_server::Handle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningDirector {
    /// Stops accepting connections and waits for the listener to close.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.server.await;
        if let Some(hm) = &self.state.hm {
            hm.stop().await;
        }
        if let Some(nats) = &self.nats {
            nats.shutdown().await;
        }
    }

    /// Waits until the listener stops (it normally never does).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The CPI name `/info` shows: the executable's file name for an external CPI.
fn cpi_name(cpi: &str) -> String {
    match cpi {
        "sim" | "docker" => cpi.to_owned(),
        path => Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.to_owned()),
    }
}

/// The sim CPI's agent command when none is given: `$BOSH_AGENT_BIN`, else `bosh-agent` next
/// to this executable, else `bosh-agent` on `PATH`.
fn agent_command_default() -> Vec<String> {
    if let Ok(bin) = std::env::var("BOSH_AGENT_BIN") {
        return vec![bin];
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("bosh-agent")))
        .filter(|p| p.is_file());
    match sibling {
        Some(p) => vec![p.display().to_string()],
        None => vec!["bosh-agent".to_owned()],
    }
}

/// The CPI behind `--cpi`: the built-in sim CPI rooted in `DIR/sim-cpi`, the built-in docker
/// CPI (the engine at `$DOCKER_HOST`, default the local socket; refused when it does not
/// answer), or an external executable. Agents dial `mbus_url`.
async fn cpi_build(
    cpi: &str,
    dir: &Path,
    director_uuid: &str,
    mbus_url: &str,
    agent_command: Vec<String>,
    docker_config: &crate::config::DockerConfig,
    sim_config: &crate::config::SimConfig,
) -> Result<Option<Arc<dyn bosh_cpi::Cpi>>, StartError> {
    match cpi {
        "sim" => {
            let config = bosh_cpi::SimCpiConfig {
                root_dir: dir.join("sim-cpi"),
                agent: bosh_cpi::sim::SimAgentConfig {
                    command: agent_command,
                    mbus: mbus_url.to_owned(),
                    ntp: Vec::new(),
                    // The blobstore reaches agents through `env.bosh.blobstores`.
                    blobstore: None,
                    platform: "dummy".to_owned(),
                    job_supervisor: "dummy-nats".to_owned(),
                },
                stemcell_formats: ["general-tar", "warden-tar", "warden-light", "docker-light"]
                    .map(str::to_owned)
                    .to_vec(),
            };
            let sim = bosh_cpi::SimCpi::new(config)
                .map_err(|e| StartError::Cpi(e.to_string()))?
                .options_set(bosh_cpi::sim::SimOptions {
                    create_vm_delay: std::time::Duration::from_millis(
                        sim_config.create_vm_delay_ms,
                    ),
                    agent_boot_delay: std::time::Duration::from_millis(
                        sim_config.agent_boot_delay_ms,
                    ),
                    simulated_agents: sim_config.simulated_agents,
                });
            Ok(Some(Arc::new(sim)))
        }
        "docker" => {
            let engine = bosh_cpi::docker::config::DockerEngineConfig {
                host: docker_host(docker_config),
                api_version: None,
            };
            let host = engine.host.clone();
            let agent = bosh_cpi::docker::config::DockerAgentConfig {
                mbus: mbus_url.to_owned(),
                ntp: Vec::new(),
                blobstore: None,
            };
            let mut config = bosh_cpi::docker::config::DockerCpiConfig::new(engine, agent);
            config.name_prefix = docker_config.name_prefix.clone();
            let docker = bosh_cpi::docker::DockerCpi::new(config)
                .map_err(|e| StartError::Cpi(crate::error::error_chain(&e)))?;
            // Any engine call will do: an unknown container is `false`, no engine an error.
            let probe = bosh_types::ids::VmCid::new("bosh-rs-engine-probe")
                .map_err(|e| StartError::Cpi(e.to_string()))?;
            if let Err(e) = bosh_cpi::Cpi::has_vm(&docker, &probe).await {
                return Err(StartError::Cpi(format!(
                    "--cpi docker: no Docker engine answers at {host} ({}); start Docker, set DOCKER_HOST, or use --cpi sim",
                    crate::error::error_chain(&e)
                )));
            }
            Ok(Some(Arc::new(docker)))
        }
        path => Ok(Some(Arc::new(bosh_cpi::ExternalCpi::new(
            bosh_cpi::ExternalCpiConfig::new(path, director_uuid),
        )))),
    }
}

/// The Docker engine of `--cpi docker`: the config's, else `$DOCKER_HOST`, else the local socket.
fn docker_host(config: &crate::config::DockerConfig) -> String {
    config
        .host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// The gateway of the configured Docker network, which is created when missing. Agents in
/// containers reach the director there, and the address exists on this host as soon as the
/// network does, so NATS and HTTPS can listen on it before any VM.
async fn docker_gateway(config: &crate::config::DockerConfig) -> Result<Ipv4Addr, StartError> {
    use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
    let host = docker_host(config);
    let fail = |doing: &str, e: &dyn std::fmt::Display| {
        StartError::Cpi(format!(
            "--cpi docker: {doing} (engine {host}): {e}; start Docker, set DOCKER_HOST, or use --cpi sim"
        ))
    };
    let docker = if let Some(path) = host.strip_prefix("unix://") {
        bollard::Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
    } else {
        bollard::Docker::connect_with_http(&host, 120, bollard::API_DEFAULT_VERSION)
    }
    .map_err(|e| fail("connecting", &e))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| fail("no Docker engine answers", &e))?;
    let name = &config.network;
    let subnet_gateway = || -> Option<Ipv4Addr> {
        let (ip, _) = config.subnet.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        Some(Ipv4Addr::from(u32::from(ip) + 1))
    };
    let ipv4_gateway = |net: &bollard::models::Network| {
        net.ipam
            .as_ref()?
            .config
            .as_ref()?
            .iter()
            .find_map(|c| c.gateway.as_deref()?.parse::<Ipv4Addr>().ok())
    };
    match docker
        .inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
    {
        Ok(net) => {
            return ipv4_gateway(&net).ok_or_else(|| {
                fail(
                    &format!("Docker network '{name}' has no IPv4 gateway"),
                    &"choose another docker.network",
                )
            });
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(fail(&format!("inspecting network '{name}'"), &e)),
    }
    let gateway = subnet_gateway().ok_or_else(|| {
        fail(
            &format!("docker.subnet '{}' is not an IPv4 CIDR", config.subnet),
            &"e.g. 10.245.0.0/24",
        )
    })?;
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".to_owned()),
        ipam: Some(Ipam {
            driver: Some("default".to_owned()),
            config: Some(vec![IpamConfig {
                subnet: Some(config.subnet.clone()),
                gateway: Some(gateway.to_string()),
                ..Default::default()
            }]),
            options: None,
        }),
        // The docker CPI's label: its networks and the director's are one family.
        labels: Some(std::collections::HashMap::from([(
            "io.bosh-rs.cpi".to_owned(),
            "docker".to_owned(),
        )])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = %name, subnet = %config.subnet, %gateway, "Docker network created");
            Ok(gateway)
        }
        // Created meanwhile by another director on this engine.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(gateway),
        Err(e) => Err(fail(
            &format!("creating network '{name}' ({})", config.subnet),
            &e,
        )),
    }
}

/// Whether agents in containers cannot reach a listener on `host`.
fn host_is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The embedded NATS port: the configured one, else one picked once and kept in
/// `DIR/nats/port` (agents keep the URL they booted with).
fn nats_port(nats_dir: &Path, configured: Option<u16>) -> std::io::Result<u16> {
    if let Some(p) = configured {
        return Ok(p);
    }
    let path = nats_dir.join("port");
    if let Some(p) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
    {
        return Ok(p);
    }
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port();
    std::fs::write(&path, port.to_string())?;
    Ok(port)
}

/// NATS (embedded child or external) and the director's agent client.
async fn agents_start(
    dir: &Path,
    config: &crate::config::NatsConfig,
    db: &Db,
    uuid: &str,
) -> Result<(Arc<Agents>, Option<Arc<EmbeddedNats>>), StartError> {
    let nats_dir = dir.join("nats");
    let host = config
        .host
        .clone()
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let pki = {
        let nats_dir = nats_dir.clone();
        let hosts = vec![host.clone()];
        tokio::task::spawn_blocking(move || NatsPki::ensure(&nats_dir, &hosts))
            .await
            .map_err(|e| StartError::Cpi(format!("generating NATS certificates: {e}")))??
    };
    let pki = Arc::new(pki);
    let (url, embedded) = match &config.url {
        Some(url) => (url.clone(), None),
        None => {
            let port = nats_port(&nats_dir, config.port).map_err(|source| StartError::DataDir {
                path: nats_dir.join("port"),
                source,
            })?;
            let server = NatsServerConfig {
                host: host.clone(),
                port,
                server_cert: pki.server_cert_path(),
                server_key: pki.server_key_path(),
                ca: pki.ca_path(),
            };
            let agent_ids = crate::vms::vm_agent_ids(db).await?.into_iter().collect();
            let nats = EmbeddedNats::start(&nats_dir, server, agent_ids).await?;
            (nats.url(), Some(nats))
        }
    };
    let agents = Agents::connect(pki, embedded.clone(), url, uuid).await;
    match agents {
        Ok(a) => Ok((Arc::new(a), embedded)),
        Err(e) => {
            if let Some(n) = &embedded {
                n.shutdown().await;
            }
            Err(e.into())
        }
    }
}

fn listen_host(listen: &str) -> Result<String, StartError> {
    let (host, port) = listen
        .rsplit_once(':')
        .ok_or_else(|| StartError::Listen(listen.to_owned()))?;
    port.parse::<u16>()
        .map_err(|_| StartError::Listen(listen.to_owned()))?;
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

pub async fn director_start(opts: DirectorOptions) -> Result<RunningDirector, StartError> {
    let dir = opts.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    // Files written here name each other (nats.conf names its certificates) and are read
    // by children that may run elsewhere: a relative `--data-dir` must not leak into them.
    let dir = std::path::absolute(&dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let host = listen_host(&opts.listen)?;

    let db = match &opts.config.database_url {
        Some(url) => Db::connect(url).await?,
        None => Db::open_sqlite_in(&dir).await?,
    };
    let uuid = db
        .attribute_ensure("uuid", &uuid::Uuid::new_v4().to_string())
        .await?;

    let auth = Authenticator::new(db.clone())?;
    auth.users_ensure(&opts.config.users, &dir).await?;
    let credentials_path = opts
        .config
        .users
        .is_empty()
        .then(|| dir.join("credentials.yml"));

    // `--cpi docker`: agents reach NATS and the blobstore on the Docker network's gateway.
    let gateway = if opts.cpi == "docker" {
        Some(docker_gateway(&opts.config.docker).await?)
    } else {
        None
    };
    // The host agents dial for the director's HTTPS, which its certificate must name.
    let agent_host = match gateway {
        Some(gw)
            if host.is_empty() || host_is_loopback(&host) || host == "0.0.0.0" || host == "::" =>
        {
            gw.to_string()
        }
        _ => host.clone(),
    };
    let tls = {
        let dir = dir.clone();
        let host = agent_host.clone();
        tokio::task::spawn_blocking(move || pki::server_tls_ensure(&dir, &host))
            .await
            .map_err(|e| {
                StartError::Pki(PkiError::Load {
                    path: opts.data_dir.clone(),
                    reason: e.to_string(),
                })
            })??
    };
    let rustls_config = pki::rustls_config(&tls)?;

    // Local files in DIR/blobstore unless the config names an S3 bucket.
    let blobstore = blobstore_open(&opts.config.blobstore, &dir)?;
    let dav = DavCredentials::ensure(&dir)?;
    let listener =
        std::net::TcpListener::bind(&opts.listen).map_err(|source| StartError::Bind {
            addr: opts.listen.clone(),
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            addr: opts.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: opts.listen.clone(),
        source,
    })?;
    // A loopback listener is out of the containers' reach: serve them on the gateway too.
    let agent_listener = match gateway {
        Some(gw) if host.is_empty() || host_is_loopback(&host) => {
            let bind = |port| std::net::TcpListener::bind((gw, port));
            let l = bind(addr.port())
                .or_else(|_| bind(0))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| StartError::Bind {
                    addr: format!("{gw}:{}", addr.port()),
                    source,
                })?;
            Some(l)
        }
        _ => None,
    };
    let agent_port = match &agent_listener {
        Some(l) => l.local_addr().map(|a| a.port()).unwrap_or(addr.port()),
        None => addr.port(),
    };
    let mut nats_config = opts.config.nats.clone();
    if let Some(gw) = gateway {
        nats_config.host.get_or_insert_with(|| gw.to_string());
    }
    let (agents, nats) = agents_start(&dir, &nats_config, &db, &uuid).await?;
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else if host.is_empty() || host == "0.0.0.0" {
        "127.0.0.1".to_owned()
    } else {
        host.clone()
    };
    let url = format!("https://{url_host}:{}", addr.port());
    let director_ca =
        std::fs::read_to_string(&tls.ca_cert_path).map_err(|source| StartError::DataDir {
            path: tls.ca_cert_path.clone(),
            source,
        })?;
    // Where agents fetch blobs: the clients' URL, or the Docker gateway's listener.
    let agent_url = match gateway {
        Some(_) if agent_host.contains(':') => format!("https://[{agent_host}]:{agent_port}"),
        Some(_) => format!("https://{agent_host}:{agent_port}"),
        None => url.clone(),
    };
    let agent_env = AgentEnvDefaults {
        blobstores: vec![serde_json::json!({
            "provider": "dav",
            "options": {
                "endpoint": format!("{agent_url}{}", crate::api::blobstore::DAV_PREFIX),
                "user": dav.user,
                "password": dav.password,
                "tls": {"cert": {"ca": director_ca}},
            },
        })],
    };
    let cpi = match cpi_build(
        &opts.cpi,
        &dir,
        &uuid,
        agents.mbus_url(),
        opts.agent_command
            .clone()
            .unwrap_or_else(agent_command_default),
        &opts.config.docker,
        &opts.config.sim,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            if let Some(n) = &nats {
                n.shutdown().await;
            }
            return Err(e);
        }
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let observed = metrics.clone();
    agents
        .client()
        .round_trip_observer_set(Arc::new(move |method, took| {
            observed.nats_round_trip_observe(method, took)
        }));
    let cpi = cpi.map(|c| {
        Arc::new(crate::metrics::MeteredCpi::new(c, metrics.clone())) as Arc<dyn bosh_cpi::Cpi>
    });
    let services = Services {
        data_dir: dir.clone(),
        blobstore,
        cpi,
        cpi_name: opts.cpi.clone(),
        agents: Some(agents),
        agent_env,
        metrics,
    };
    // Upload bodies left by a previous run belong to tasks that were ended above or will
    // be ended by recovery; they are never read again.
    let _ = std::fs::remove_dir_all(dir.join("tmp"));

    let mut registry = TaskRegistry::new();
    let svc = || services.clone();
    registry.register(DELETE_DEPLOYMENT, Arc::new(DeleteDeploymentJob::new(svc())));
    registry.register(
        crate::deploy::DEPLOY,
        Arc::new(crate::deploy::DeployJob {
            services: svc(),
            director_name: opts.config.name.clone(),
            vm_create_concurrency: opts.config.deploy.vm_create_concurrency,
        }),
    );
    registry.register(
        crate::instance_listing::VMS,
        Arc::new(crate::instance_listing::VmStateJob::new(svc())),
    );
    registry.register(
        UPDATE_STEMCELL,
        Arc::new(UpdateStemcellJob { services: svc() }),
    );
    registry.register(
        DELETE_STEMCELL,
        Arc::new(DeleteStemcellJob { services: svc() }),
    );
    registry.register(
        UPDATE_RELEASE,
        Arc::new(UpdateReleaseJob { services: svc() }),
    );
    registry.register(
        DELETE_RELEASE,
        Arc::new(DeleteReleaseJob { services: svc() }),
    );
    crate::day2::tasks_register(&mut registry, &services, &opts.config.name);
    for (name, job) in &opts.extra_jobs {
        registry.register(name, job.clone());
    }
    let queue = TaskQueue::new(
        db.clone(),
        TaskOutputs::new(dir.join("tasks")),
        registry,
        opts.timings,
    );
    let recovered = queue.recover().await.map_err(StartError::Recover)?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "ended tasks left running by a previous director"
        );
    }
    queue.workers_start(opts.config.workers);
    let hm = match crate::hm::HealthMonitor::start(
        opts.config.hm.clone(),
        db.clone(),
        services.clone(),
        queue.clone(),
    )
    .await
    {
        Ok(hm) => hm,
        // Deploys still work without it; say so loudly.
        Err(e) => {
            tracing::error!(error = %e, "health monitor not started");
            None
        }
    };

    let state = AppState {
        db,
        auth,
        queue,
        info: Arc::new(DirectorInfo {
            name: opts.config.name.clone(),
            uuid,
            version: format!("{} (bosh-rs)", env!("CARGO_PKG_VERSION")),
            cpi: cpi_name(&opts.cpi),
        }),
        services,
        dav,
        hm,
    };

    let handle = axum_server::Handle::new();
    let app = api::router(state.clone());
    let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls_config));
    // TCP_NODELAY: without it a response written in several TLS records waits on the client's
    // delayed ACK (Nagle), a 40 ms step in the list requests' tail.
    let tls_nodelay = |config| {
        axum_server::tls_rustls::RustlsAcceptor::new(config)
            .acceptor(axum_server::accept::NoDelayAcceptor::new())
    };
    let main = axum_server::from_tcp(listener)
        .acceptor(tls_nodelay(rustls_config.clone()))
        .handle(handle.clone())
        .serve(app.clone().into_make_service());
    // One handle for both listeners: shutdown stops them together.
    let server = match agent_listener {
        None => tokio::spawn(main),
        Some(l) => {
            let agents = axum_server::from_tcp(l)
                .acceptor(tls_nodelay(rustls_config))
                .handle(handle.clone())
                .serve(app.into_make_service());
            tokio::spawn(async move {
                let (a, b) = tokio::join!(main, agents);
                a.and(b)
            })
        }
    };
    Ok(RunningDirector {
        addr,
        url,
        ca_cert_path: tls.ca_cert_path,
        credentials_path,
        state,
        nats,
        handle,
        server,
    })
}
