//! The client for external CPI executables: one process per call, the director's
//! environment scrubbing, strict response validation and API version negotiation; and, for
//! CPIs that declare it, persistent workers ([`worker`]) instead of a fork per call.

mod invoke;
pub mod redact;
pub mod worker;

use crate::Cpi;
use crate::error::CpiError;
use crate::log_sink::CpiLogSink;
use async_trait::async_trait;
use bosh_cpi_protocol::methods::*;
use bosh_cpi_protocol::{
    CpiMethod, CpiRequest, MINIMUM_API_VERSION, PREFERRED_API_VERSION, RequestContext,
    StemcellContext, VmContext,
};
use bosh_types::ids::{DiskCid, StemcellCid, VmCid};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How to run one external CPI (a `cloud.provider.path` or a cpi-config entry).
#[derive(Debug, Clone)]
pub struct ExternalCpiConfig {
    /// Run with no arguments, like `/var/vcap/jobs/<cpi>/bin/cpi`.
    pub exec_path: PathBuf,
    pub director_uuid: String,
    /// cpi-config `properties`, merged into every request's context.
    pub properties: Map<String, Value>,
    /// Per call; the process group is killed when it runs out.
    pub timeout: Duration,
    /// The highest contract version to ask for (3 by default, configurable down to 2).
    pub preferred_api_version: u32,
    /// Persistent workers to keep (0, the default: one process per call as BOSH does).
    /// Used only if the CPI's `info` declares the worker protocol; otherwise ignored.
    pub workers: usize,
}

impl ExternalCpiConfig {
    pub fn new(exec_path: impl Into<PathBuf>, director_uuid: impl Into<String>) -> Self {
        Self {
            exec_path: exec_path.into(),
            director_uuid: director_uuid.into(),
            properties: Map::new(),
            timeout: Duration::from_secs(600),
            preferred_api_version: PREFERRED_API_VERSION,
            workers: 0,
        }
    }
}

struct Shared {
    config: ExternalCpiConfig,
    /// `min(info.api_version, preferred)`, asked once per client and shared by its clones.
    api_version: OnceCell<u32>,
    /// Present when `config.workers > 0`.
    pool: Option<worker::WorkerPool>,
    /// Whether the CPI's `info` declared the worker protocol; set by the first `info`.
    declares_worker: OnceLock<bool>,
}

impl Shared {
    /// The pool, once the CPI is known to speak the worker protocol.
    fn pool(&self) -> Option<&worker::WorkerPool> {
        self.pool
            .as_ref()
            .filter(|_| self.declares_worker.get() == Some(&true))
    }
}

/// An external CPI. Cheap to clone; clones share the negotiated API version.
#[derive(Clone)]
pub struct ExternalCpi {
    shared: Arc<Shared>,
    stemcell_api_version: Option<u32>,
    log_sink: Option<Arc<dyn CpiLogSink>>,
}

impl std::fmt::Debug for ExternalCpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalCpi")
            .field("exec_path", &self.shared.config.exec_path)
            .field("stemcell_api_version", &self.stemcell_api_version)
            .finish_non_exhaustive()
    }
}

/// `min(reported, preferred)`, refusing CPIs below v2 or silent about their version.
pub fn negotiate_api_version(reported: Option<u32>, preferred: u32) -> Result<u32, CpiError> {
    let reported = reported.ok_or(CpiError::UnsupportedApiVersion { version: None })?;
    let version = reported.min(preferred);
    if version < MINIMUM_API_VERSION {
        return Err(CpiError::UnsupportedApiVersion {
            version: Some(version),
        });
    }
    Ok(version)
}

impl ExternalCpi {
    pub fn new(config: ExternalCpiConfig) -> Self {
        let pool = (config.workers > 0).then(|| worker::WorkerPool::new(config.workers));
        Self {
            shared: Arc::new(Shared {
                config,
                api_version: OnceCell::new(),
                pool,
                declares_worker: OnceLock::new(),
            }),
            stemcell_api_version: None,
            log_sink: None,
        }
    }

    /// A handle whose requests carry `context.vm.stemcell.api_version` (calls about a VM).
    pub fn with_stemcell_api_version(&self, version: Option<u32>) -> Self {
        Self {
            stemcell_api_version: version,
            ..self.clone()
        }
    }

    /// A handle that sends stderr and `log` to `sink` (e.g. a task's CPI log).
    pub fn with_log_sink(&self, sink: Arc<dyn CpiLogSink>) -> Self {
        Self {
            log_sink: Some(sink),
            ..self.clone()
        }
    }

    pub fn config(&self) -> &ExternalCpiConfig {
        &self.shared.config
    }

    /// The contract version sent with every call but `info`; the first use runs `info`.
    pub async fn api_version(&self) -> Result<u32, CpiError> {
        self.shared
            .api_version
            .get_or_try_init(|| async {
                let info = self.info().await?;
                negotiate_api_version(info.api_version, self.shared.config.preferred_api_version)
            })
            .await
            .copied()
    }

    /// Calls any method by name with raw positional arguments (after negotiation); returns
    /// the raw `result`.
    pub async fn call_raw(&self, method: &str, arguments: Vec<Value>) -> Result<Value, CpiError> {
        let version = self.api_version().await?;
        self.invoke(method, arguments, Some(version)).await
    }

    async fn call<M: CpiMethod>(&self, args: M) -> Result<M::Output, CpiError> {
        let method = M::METHOD.as_str();
        let result = self.call_raw(method, args.to_arguments()).await?;
        decode_result::<M::Output>(method, result)
    }

    fn request(&self, method: &str, arguments: Vec<Value>, api_version: Option<u32>) -> CpiRequest {
        let request_id = format!(
            "cpi-{}",
            rand::Rng::gen_range(&mut rand::thread_rng(), 100_000..=999_999)
        );
        CpiRequest {
            method: method.to_owned(),
            arguments,
            context: RequestContext {
                director_uuid: self.shared.config.director_uuid.clone(),
                request_id: Some(request_id),
                vm: self.stemcell_api_version.map(|api_version| VmContext {
                    stemcell: StemcellContext { api_version },
                }),
                properties: self.shared.config.properties.clone(),
            },
            api_version,
        }
    }

    async fn invoke(
        &self,
        method: &str,
        arguments: Vec<Value>,
        api_version: Option<u32>,
    ) -> Result<Value, CpiError> {
        let request = self.request(method, arguments, api_version);
        let request_id = request.context.request_id.clone();
        let config = &self.shared.config;
        let sink = self.log_sink.as_deref();
        let response = match self.shared.pool() {
            Some(pool) => pool.call(config, &request, sink).await?,
            None => {
                let response = invoke::run(config, &request, sink).await?;
                if self.shared.pool.is_some() && method == Method::Info.as_str() {
                    let declared = worker::declares_worker(&response.result);
                    if self.shared.declares_worker.set(declared).is_ok() {
                        tracing::info!(
                            path = %config.exec_path.display(),
                            persistent_workers = declared,
                            "cpi worker mode decided"
                        );
                    }
                }
                response
            }
        };
        if let Some(error) = response.error {
            return Err(match error.kind() {
                Some(kind) => CpiError::Cloud {
                    kind,
                    message: error.message,
                    ok_to_retry: error.ok_to_retry,
                    method: method.to_owned(),
                    request_id,
                },
                None => CpiError::Unknown {
                    error_type: error.error_type,
                    message: error.message,
                    ok_to_retry: error.ok_to_retry,
                    method: method.to_owned(),
                    request_id,
                },
            });
        }
        Ok(response.result)
    }
}

fn decode_result<T: serde::de::DeserializeOwned>(
    method: &str,
    result: Value,
) -> Result<T, CpiError> {
    let text = result.to_string();
    serde_json::from_value(result).map_err(|e| CpiError::InvalidResponse {
        method: method.to_owned(),
        reason: format!("unexpected result: {e}"),
        stdout: text,
        stderr: String::new(),
        exit_status: None,
    })
}

#[async_trait]
impl Cpi for ExternalCpi {
    async fn info(&self) -> Result<InfoResult, CpiError> {
        // Always without `api_version`: that is what tells a CPI the director is probing.
        let result = self.invoke(Method::Info.as_str(), vec![], None).await?;
        decode_result(Method::Info.as_str(), result)
    }

    async fn create_stemcell(&self, mut args: CreateStemcellArgs) -> Result<StemcellCid, CpiError> {
        if self.api_version().await? < 3 {
            args.options = None;
        }
        self.call(args).await
    }

    fn with_log_sink(&self, sink: Arc<dyn CpiLogSink>) -> Option<Arc<dyn Cpi>> {
        Some(Arc::new(ExternalCpi::with_log_sink(self, sink)))
    }

    async fn delete_stemcell(&self, stemcell_cid: &StemcellCid) -> Result<(), CpiError> {
        self.call(DeleteStemcellArgs {
            stemcell_cid: stemcell_cid.clone(),
        })
        .await
    }

    async fn create_vm(&self, args: CreateVmArgs) -> Result<CreateVmResult, CpiError> {
        self.call(args).await
    }

    async fn delete_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        self.call(DeleteVmArgs {
            vm_cid: vm_cid.clone(),
        })
        .await
    }

    async fn has_vm(&self, vm_cid: &VmCid) -> Result<bool, CpiError> {
        self.call(HasVmArgs {
            vm_cid: vm_cid.clone(),
        })
        .await
    }

    async fn reboot_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        self.call(RebootVmArgs {
            vm_cid: vm_cid.clone(),
        })
        .await
    }

    async fn set_vm_metadata(&self, vm_cid: &VmCid, metadata: &Metadata) -> Result<(), CpiError> {
        self.call(SetVmMetadataArgs {
            vm_cid: vm_cid.clone(),
            metadata: metadata.clone(),
        })
        .await
    }

    async fn calculate_vm_cloud_properties(
        &self,
        resources: &VmResources,
    ) -> Result<CloudProperties, CpiError> {
        self.call(CalculateVmCloudPropertiesArgs {
            vm_resources: resources.clone(),
        })
        .await
    }

    async fn get_disks(&self, vm_cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
        self.call(GetDisksArgs {
            vm_cid: vm_cid.clone(),
        })
        .await
    }

    async fn create_disk(&self, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
        self.call(args).await
    }

    async fn delete_disk(&self, disk_cid: &DiskCid) -> Result<(), CpiError> {
        self.call(DeleteDiskArgs {
            disk_cid: disk_cid.clone(),
        })
        .await
    }

    async fn has_disk(&self, disk_cid: &DiskCid) -> Result<bool, CpiError> {
        self.call(HasDiskArgs {
            disk_cid: disk_cid.clone(),
        })
        .await
    }

    async fn attach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<DiskHint, CpiError> {
        let args = AttachDiskArgs {
            vm_cid: vm_cid.clone(),
            disk_cid: disk_cid.clone(),
        };
        let method = Method::AttachDisk.as_str();
        let result = self.call_raw(method, args.to_arguments()).await?;
        let no_hint = || CpiError::InvalidResponse {
            method: method.to_owned(),
            reason: "No disk_hint".to_owned(),
            stdout: String::new(),
            stderr: String::new(),
            exit_status: None,
        };
        if result.is_null() {
            return Err(no_hint());
        }
        let hint: DiskHint = decode_result(method, result)?;
        if hint.is_empty() {
            return Err(no_hint());
        }
        Ok(hint)
    }

    async fn detach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<(), CpiError> {
        self.call(DetachDiskArgs {
            vm_cid: vm_cid.clone(),
            disk_cid: disk_cid.clone(),
        })
        .await
    }

    async fn set_disk_metadata(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<(), CpiError> {
        self.call(SetDiskMetadataArgs {
            disk_cid: disk_cid.clone(),
            metadata: metadata.clone(),
        })
        .await
    }

    async fn resize_disk(&self, disk_cid: &DiskCid, new_size_mib: u64) -> Result<(), CpiError> {
        self.call(ResizeDiskArgs {
            disk_cid: disk_cid.clone(),
            new_size_mib,
        })
        .await
    }

    async fn update_disk(&self, args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError> {
        self.call(args).await
    }

    async fn snapshot_disk(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<SnapshotCid, CpiError> {
        self.call(SnapshotDiskArgs {
            disk_cid: disk_cid.clone(),
            metadata: metadata.clone(),
        })
        .await
    }

    async fn delete_snapshot(&self, snapshot_cid: &SnapshotCid) -> Result<(), CpiError> {
        self.call(DeleteSnapshotArgs {
            snapshot_cid: snapshot_cid.clone(),
        })
        .await
    }
}
