//! Starting a director: data dir, database, users, TLS, task workers and the HTTPS listener.
//! The binary and the integration tests both go through [`director_start`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::{self, AppState, DirectorInfo};
use crate::auth::{AuthError, Authenticator};
use crate::blobstore::{DavCredentials, LocalBlobstore};
use crate::config::DirectorConfig;
use crate::db::{Db, DbError};
use crate::deployments::{DELETE_DEPLOYMENT, DeleteDeploymentJob};
use crate::pki::{self, PkiError};
use crate::releases::{DELETE_RELEASE, DeleteReleaseJob, UPDATE_RELEASE, UpdateReleaseJob};
use crate::services::Services;
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
    handle: axum_server::Handle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningDirector {
    /// Stops accepting connections and waits for the listener to close.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.server.await;
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

/// The CPI behind `--cpi`: the built-in sim CPI rooted in `DIR/sim-cpi`, or an external
/// executable. `docker` needs engine settings this director does not take yet.
fn cpi_build(
    cpi: &str,
    dir: &Path,
    director_uuid: &str,
) -> Result<Option<Arc<dyn bosh_cpi::Cpi>>, StartError> {
    match cpi {
        "sim" => {
            let config = bosh_cpi::SimCpiConfig {
                root_dir: dir.join("sim-cpi"),
                // VMs are not created yet; the deployer replaces this with the real agent.
                agent: bosh_cpi::sim::SimAgentConfig {
                    command: vec!["bosh-agent".to_owned()],
                    mbus: "nats://127.0.0.1:4222".to_owned(),
                    ntp: Vec::new(),
                    blobstore: None,
                    platform: "dummy".to_owned(),
                    job_supervisor: "dummy-nats".to_owned(),
                },
                stemcell_formats: ["general-tar", "warden-tar", "warden-light", "docker-light"]
                    .map(str::to_owned)
                    .to_vec(),
            };
            let sim = bosh_cpi::SimCpi::new(config).map_err(|e| StartError::Cpi(e.to_string()))?;
            Ok(Some(Arc::new(sim)))
        }
        "docker" => Ok(None),
        path => Ok(Some(Arc::new(bosh_cpi::ExternalCpi::new(
            bosh_cpi::ExternalCpiConfig::new(path, director_uuid),
        )))),
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

    let tls = {
        let dir = dir.clone();
        let host = host.clone();
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

    let blobstore = LocalBlobstore::new(dir.join("blobstore"))?;
    let dav = DavCredentials::ensure(&dir)?;
    let services = Services {
        data_dir: dir.clone(),
        blobstore: Arc::new(blobstore),
        cpi: cpi_build(&opts.cpi, &dir, &uuid)?,
        cpi_name: opts.cpi.clone(),
    };
    // Upload bodies left by a previous run belong to tasks that were ended above or will
    // be ended by recovery; they are never read again.
    let _ = std::fs::remove_dir_all(dir.join("tmp"));

    let mut registry = TaskRegistry::new();
    registry.register(DELETE_DEPLOYMENT, Arc::new(DeleteDeploymentJob));
    let svc = || services.clone();
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
    };

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
    let handle = axum_server::Handle::new();
    let app = api::router(state.clone());
    let server = tokio::spawn(
        axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls_config)),
        )
        .handle(handle.clone())
        .serve(app.into_make_service()),
    );
    let url_host = if host.contains(':') {
        format!("[{host}]")
    } else if host.is_empty() || host == "0.0.0.0" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    Ok(RunningDirector {
        addr,
        url: format!("https://{url_host}:{}", addr.port()),
        ca_cert_path: tls.ca_cert_path,
        credentials_path,
        state,
        handle,
        server,
    })
}
