//! A task's CPI log (`GET /tasks/N/output?type=cpi`): every CPI call a task makes, as the
//! redacted request and the response, plus whatever the CPI itself logs (an external CPI's
//! stderr and response `log`, as the Ruby director saves them).
//!
//! Jobs get the wrapped CPI from [`crate::services::Services::task_cpi`].

use async_trait::async_trait;
use bosh_cpi::external::redact::redact_arguments;
use bosh_cpi::protocol::methods::*;
use bosh_cpi::{Cpi, CpiError, CpiLogSink};
use bosh_types::ids::{DiskCid, StemcellCid, VmCid};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::tasks::events::{OutputFile, debug_line};

impl CpiLogSink for OutputFile {
    fn append(&self, text: &str) {
        OutputFile::append(self, text.as_bytes());
    }
}

/// A CPI whose calls are written to one task's CPI log.
pub struct TaskCpi {
    inner: Arc<dyn Cpi>,
    log: OutputFile,
    /// The `--cpi` value, for the request line.
    command: String,
}

impl TaskCpi {
    pub fn new(inner: Arc<dyn Cpi>, log: OutputFile, command: &str) -> TaskCpi {
        let sink: Arc<dyn CpiLogSink> = Arc::new(log.clone());
        let inner = inner.with_log_sink(sink).unwrap_or(inner);
        TaskCpi {
            inner,
            log,
            command: command.to_owned(),
        }
    }

    /// Writes the request, runs `call`, writes the response; lines are tagged like the
    /// Ruby director's `[external-cpi] [cpi-NNNNNN]` debug lines.
    async fn logged<M, F>(&self, args: &M, call: F) -> Result<M::Output, CpiError>
    where
        M: CpiMethod,
        F: Future<Output = Result<M::Output, CpiError>>,
    {
        let method = M::METHOD.as_str();
        let id = format!(
            "cpi-{}",
            rand::Rng::gen_range(&mut rand::thread_rng(), 100_000..=999_999)
        );
        let request = json!({
            "method": method,
            "arguments": redact_arguments(method, &args.to_arguments()),
        });
        self.log.append_line(&debug_line(
            "DEBUG",
            &format!(
                "[external-cpi] [{id}] request: {request} with command: {}",
                self.command
            ),
        ));
        let result = call.await;
        let response = match &result {
            Ok(out) => json!({
                "result": serde_json::to_value(out).unwrap_or(Value::Null),
                "error": null,
            }),
            Err(e) => json!({"result": null, "error": error_json(e)}),
        };
        self.log.append_line(&debug_line(
            "DEBUG",
            &format!("[external-cpi] [{id}] response: {response}"),
        ));
        result
    }
}

/// The response `error` object for errors the CPI returned; the message otherwise.
fn error_json(e: &CpiError) -> Value {
    match e {
        CpiError::Cloud {
            kind,
            message,
            ok_to_retry,
            ..
        } => json!({"type": kind.type_name(), "message": message, "ok_to_retry": ok_to_retry}),
        CpiError::Unknown {
            error_type,
            message,
            ok_to_retry,
            ..
        } => json!({"type": error_type, "message": message, "ok_to_retry": ok_to_retry}),
        other => json!({"message": crate::error::error_chain(other)}),
    }
}

#[async_trait]
impl Cpi for TaskCpi {
    async fn info(&self) -> Result<InfoResult, CpiError> {
        self.logged(&InfoArgs {}, self.inner.info()).await
    }

    async fn create_stemcell(&self, args: CreateStemcellArgs) -> Result<StemcellCid, CpiError> {
        self.logged(&args, self.inner.create_stemcell(args.clone()))
            .await
    }

    async fn delete_stemcell(&self, stemcell_cid: &StemcellCid) -> Result<(), CpiError> {
        let args = DeleteStemcellArgs {
            stemcell_cid: stemcell_cid.clone(),
        };
        self.logged(&args, self.inner.delete_stemcell(stemcell_cid))
            .await
    }

    async fn create_vm(&self, args: CreateVmArgs) -> Result<CreateVmResult, CpiError> {
        self.logged(&args, self.inner.create_vm(args.clone())).await
    }

    async fn delete_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        let args = DeleteVmArgs {
            vm_cid: vm_cid.clone(),
        };
        self.logged(&args, self.inner.delete_vm(vm_cid)).await
    }

    async fn has_vm(&self, vm_cid: &VmCid) -> Result<bool, CpiError> {
        let args = HasVmArgs {
            vm_cid: vm_cid.clone(),
        };
        self.logged(&args, self.inner.has_vm(vm_cid)).await
    }

    async fn reboot_vm(&self, vm_cid: &VmCid) -> Result<(), CpiError> {
        let args = RebootVmArgs {
            vm_cid: vm_cid.clone(),
        };
        self.logged(&args, self.inner.reboot_vm(vm_cid)).await
    }

    async fn set_vm_metadata(&self, vm_cid: &VmCid, metadata: &Metadata) -> Result<(), CpiError> {
        let args = SetVmMetadataArgs {
            vm_cid: vm_cid.clone(),
            metadata: metadata.clone(),
        };
        self.logged(&args, self.inner.set_vm_metadata(vm_cid, metadata))
            .await
    }

    async fn calculate_vm_cloud_properties(
        &self,
        resources: &VmResources,
    ) -> Result<CloudProperties, CpiError> {
        let args = CalculateVmCloudPropertiesArgs {
            vm_resources: resources.clone(),
        };
        self.logged(&args, self.inner.calculate_vm_cloud_properties(resources))
            .await
    }

    async fn get_disks(&self, vm_cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
        let args = GetDisksArgs {
            vm_cid: vm_cid.clone(),
        };
        self.logged(&args, self.inner.get_disks(vm_cid)).await
    }

    async fn create_disk(&self, args: CreateDiskArgs) -> Result<DiskCid, CpiError> {
        self.logged(&args, self.inner.create_disk(args.clone()))
            .await
    }

    async fn delete_disk(&self, disk_cid: &DiskCid) -> Result<(), CpiError> {
        let args = DeleteDiskArgs {
            disk_cid: disk_cid.clone(),
        };
        self.logged(&args, self.inner.delete_disk(disk_cid)).await
    }

    async fn has_disk(&self, disk_cid: &DiskCid) -> Result<bool, CpiError> {
        let args = HasDiskArgs {
            disk_cid: disk_cid.clone(),
        };
        self.logged(&args, self.inner.has_disk(disk_cid)).await
    }

    async fn attach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<DiskHint, CpiError> {
        let args = AttachDiskArgs {
            vm_cid: vm_cid.clone(),
            disk_cid: disk_cid.clone(),
        };
        self.logged(&args, self.inner.attach_disk(vm_cid, disk_cid))
            .await
    }

    async fn detach_disk(&self, vm_cid: &VmCid, disk_cid: &DiskCid) -> Result<(), CpiError> {
        let args = DetachDiskArgs {
            vm_cid: vm_cid.clone(),
            disk_cid: disk_cid.clone(),
        };
        self.logged(&args, self.inner.detach_disk(vm_cid, disk_cid))
            .await
    }

    async fn set_disk_metadata(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<(), CpiError> {
        let args = SetDiskMetadataArgs {
            disk_cid: disk_cid.clone(),
            metadata: metadata.clone(),
        };
        self.logged(&args, self.inner.set_disk_metadata(disk_cid, metadata))
            .await
    }

    async fn resize_disk(&self, disk_cid: &DiskCid, new_size_mib: u64) -> Result<(), CpiError> {
        let args = ResizeDiskArgs {
            disk_cid: disk_cid.clone(),
            new_size_mib,
        };
        self.logged(&args, self.inner.resize_disk(disk_cid, new_size_mib))
            .await
    }

    async fn update_disk(&self, args: UpdateDiskArgs) -> Result<Option<DiskCid>, CpiError> {
        self.logged(&args, self.inner.update_disk(args.clone()))
            .await
    }

    async fn snapshot_disk(
        &self,
        disk_cid: &DiskCid,
        metadata: &Metadata,
    ) -> Result<SnapshotCid, CpiError> {
        let args = SnapshotDiskArgs {
            disk_cid: disk_cid.clone(),
            metadata: metadata.clone(),
        };
        self.logged(&args, self.inner.snapshot_disk(disk_cid, metadata))
            .await
    }

    async fn delete_snapshot(&self, snapshot_cid: &SnapshotCid) -> Result<(), CpiError> {
        let args = DeleteSnapshotArgs {
            snapshot_cid: snapshot_cid.clone(),
        };
        self.logged(&args, self.inner.delete_snapshot(snapshot_cid))
            .await
    }

    fn with_log_sink(&self, _sink: Arc<dyn CpiLogSink>) -> Option<Arc<dyn Cpi>> {
        // Already logging to its task; a second sink would split the log.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::TaskId;
    use crate::tasks::events::{OutputType, TaskOutputs};

    #[tokio::test]
    async fn calls_are_logged_with_method_redacted_arguments_and_response() {
        let dir = tempfile::tempdir().unwrap();
        let sim = bosh_cpi::SimCpi::new(bosh_cpi::SimCpiConfig {
            root_dir: dir.path().join("sim"),
            agent: bosh_cpi::sim::SimAgentConfig {
                command: vec!["true".into()],
                mbus: "nats://127.0.0.1:1".into(),
                ntp: Vec::new(),
                blobstore: None,
                platform: "dummy".into(),
                job_supervisor: "dummy-nats".into(),
            },
            stemcell_formats: vec!["general-tar".into()],
        })
        .unwrap();
        let outputs = TaskOutputs::new(dir.path().join("tasks"));
        let log = outputs.open_append(TaskId(3), OutputType::Cpi).unwrap();
        let cpi = TaskCpi::new(Arc::new(sim), log, "sim");
        let disk = cpi
            .create_disk(CreateDiskArgs {
                size_mib: 10,
                cloud_properties: [("secret".to_owned(), json!("hunter2"))]
                    .into_iter()
                    .collect(),
                vm_cid: None,
            })
            .await
            .unwrap();
        assert!(cpi.has_disk(&disk).await.unwrap());
        let text = std::fs::read_to_string(outputs.path(TaskId(3), OutputType::Cpi)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].contains(
                r#"request: {"method":"create_disk","arguments":[10,{"secret":"<redacted>"},null]} with command: sim"#
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            lines[1].contains(&format!(r#"response: {{"result":"{disk}","error":null}}"#)),
            "{text}"
        );
        assert!(lines[2].contains(r#""method":"has_disk""#), "{text}");
        assert!(lines[3].contains(r#""result":true"#), "{text}");
    }
}
