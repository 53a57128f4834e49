//! Serving the external protocol for a built-in CPI: one request in, one response out,
//! always a valid response (never a panic, never empty stdout). Started with `--worker` or
//! `BOSH_CPI_WORKER=1`, the executable is a persistent worker instead (see
//! [`crate::external::worker`]): one request per stdin line, one response per stdout line.

use crate::Cpi;
use crate::error::CpiError;
use crate::external::worker;
use bosh_cpi_protocol::methods::*;
use bosh_cpi_protocol::{CpiErrorKind, CpiMethod, CpiRequest, CpiResponse, Method};
use serde::Serialize;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Parses raw stdin and answers it. Bad JSON is a `CpiError`, as bosh-cpi-go answers.
pub async fn response_for_bytes(cpi: &dyn Cpi, input: &[u8]) -> CpiResponse {
    match serde_json::from_slice::<CpiRequest>(input) {
        Ok(request) => {
            let mut response = response_for_request(cpi, &request).await;
            if request.method == Method::Info.as_str() {
                declare_worker(&mut response);
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "invalid request");
            CpiResponse::error(
                CpiErrorKind::CpiError,
                "Must provide valid JSON payload",
                false,
            )
        }
    }
}

/// Dispatches a parsed request to `cpi`.
pub async fn response_for_request(cpi: &dyn Cpi, request: &CpiRequest) -> CpiResponse {
    let Some(method) = Method::from_name(&request.method) else {
        return CpiResponse::error(
            CpiErrorKind::NotImplemented,
            format!(
                "Must call implemented method: Unknown method '{}'",
                request.method
            ),
            false,
        );
    };
    tracing::info!(%method, "cpi call");
    match dispatch(cpi, method, &request.arguments).await {
        Ok(Ok(result)) => CpiResponse::ok(result),
        Ok(Err(e)) => {
            tracing::error!(%method, error = %error_chain(&e), "cpi call failed");
            error_response(&e)
        }
        Err(e) => CpiResponse::error(
            CpiErrorKind::CpiError,
            format!("Invalid arguments: {}", error_chain(&e)),
            false,
        ),
    }
}

/// Adds the worker-protocol declaration to an `info` result. Real directors read only the
/// keys they know, so the extra key is harmless to them.
fn declare_worker(response: &mut CpiResponse) {
    if let Value::Object(result) = &mut response.result {
        result.insert(
            worker::INFO_KEY.to_owned(),
            serde_json::json!({"protocol": worker::PROTOCOL}),
        );
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A built-in CPI's error as a response; errors without a CPI type become `CloudError`,
/// as in bosh-cpi-go.
fn error_response(e: &CpiError) -> CpiResponse {
    match e {
        CpiError::Cloud {
            kind,
            message,
            ok_to_retry,
            ..
        } => CpiResponse::error(*kind, message.clone(), *ok_to_retry),
        other => CpiResponse::error(CpiErrorKind::CloudError, error_chain(other), false),
    }
}

fn to_result<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("a CPI result serializes to JSON")
}

type Dispatched = Result<Result<Value, CpiError>, ArgumentsError>;

async fn dispatch(cpi: &dyn Cpi, method: Method, args: &[Value]) -> Dispatched {
    Ok(match method {
        Method::Info => cpi.info().await.map(to_result),
        Method::CreateStemcell => cpi
            .create_stemcell(CreateStemcellArgs::from_arguments(args)?)
            .await
            .map(to_result),
        Method::DeleteStemcell => {
            let a = DeleteStemcellArgs::from_arguments(args)?;
            cpi.delete_stemcell(&a.stemcell_cid).await.map(to_result)
        }
        Method::CreateVm => cpi
            .create_vm(CreateVmArgs::from_arguments(args)?)
            .await
            .map(to_result),
        Method::DeleteVm => cpi
            .delete_vm(&DeleteVmArgs::from_arguments(args)?.vm_cid)
            .await
            .map(to_result),
        Method::HasVm => cpi
            .has_vm(&HasVmArgs::from_arguments(args)?.vm_cid)
            .await
            .map(to_result),
        Method::RebootVm => cpi
            .reboot_vm(&RebootVmArgs::from_arguments(args)?.vm_cid)
            .await
            .map(to_result),
        Method::SetVmMetadata => {
            let a = SetVmMetadataArgs::from_arguments(args)?;
            cpi.set_vm_metadata(&a.vm_cid, &a.metadata)
                .await
                .map(to_result)
        }
        Method::CalculateVmCloudProperties => {
            let a = CalculateVmCloudPropertiesArgs::from_arguments(args)?;
            cpi.calculate_vm_cloud_properties(&a.vm_resources)
                .await
                .map(to_result)
        }
        Method::GetDisks => cpi
            .get_disks(&GetDisksArgs::from_arguments(args)?.vm_cid)
            .await
            .map(to_result),
        Method::CreateDisk => cpi
            .create_disk(CreateDiskArgs::from_arguments(args)?)
            .await
            .map(to_result),
        Method::DeleteDisk => cpi
            .delete_disk(&DeleteDiskArgs::from_arguments(args)?.disk_cid)
            .await
            .map(to_result),
        Method::HasDisk => cpi
            .has_disk(&HasDiskArgs::from_arguments(args)?.disk_cid)
            .await
            .map(to_result),
        Method::AttachDisk => {
            let a = AttachDiskArgs::from_arguments(args)?;
            cpi.attach_disk(&a.vm_cid, &a.disk_cid).await.map(to_result)
        }
        Method::DetachDisk => {
            let a = DetachDiskArgs::from_arguments(args)?;
            cpi.detach_disk(&a.vm_cid, &a.disk_cid).await.map(to_result)
        }
        Method::SetDiskMetadata => {
            let a = SetDiskMetadataArgs::from_arguments(args)?;
            cpi.set_disk_metadata(&a.disk_cid, &a.metadata)
                .await
                .map(to_result)
        }
        Method::ResizeDisk => {
            let a = ResizeDiskArgs::from_arguments(args)?;
            cpi.resize_disk(&a.disk_cid, a.new_size_mib)
                .await
                .map(to_result)
        }
        Method::UpdateDisk => cpi
            .update_disk(UpdateDiskArgs::from_arguments(args)?)
            .await
            .map(to_result),
        Method::SnapshotDisk => {
            let a = SnapshotDiskArgs::from_arguments(args)?;
            cpi.snapshot_disk(&a.disk_cid, &a.metadata)
                .await
                .map(to_result)
        }
        Method::DeleteSnapshot => {
            let a = DeleteSnapshotArgs::from_arguments(args)?;
            cpi.delete_snapshot(&a.snapshot_cid).await.map(to_result)
        }
    })
}

/// The `main` of a built-in CPI executable: `NAME -configPath FILE`, one JSON request on stdin,
/// one JSON response on stdout (always valid JSON, even after a panic), logs on stderr filtered
/// by the `log_env` variable. `load` builds the CPI from its config file.
pub fn executable_main<C, E>(name: &str, log_env: &str, load: impl FnOnce(&Path) -> Result<C, E>)
where
    C: Cpi,
    E: std::error::Error,
{
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(log_env)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // Even a bug must leave valid JSON on stdout for the director.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
        write_response(&CpiResponse::error(
            CpiErrorKind::CpiError,
            format!("Internal error: {info}"),
            false,
        ));
        std::process::exit(1);
    }));
    let fail = |message: String| -> ! {
        tracing::error!("{message}");
        write_response(&CpiResponse::error(CpiErrorKind::CpiError, message, false));
        std::process::exit(1);
    };

    let Some(path) = config_path_arg(std::env::args_os().skip(1)) else {
        fail(format!("Usage: {name} -configPath FILE [--worker]"));
    };
    let cpi = load(&path).unwrap_or_else(|e| fail(format!("Loading config: {}", error_chain(&e))));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("Starting runtime: {e}")));
    if worker_requested(
        std::env::args_os().skip(1),
        std::env::var_os(worker::WORKER_ENV),
    ) {
        runtime.block_on(serve_worker(&cpi));
        return;
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        fail(format!("Reading stdin: {e}"));
    }
    let response = runtime.block_on(response_for_bytes(&cpi, &input));
    write_response(&response);
}

/// `--worker` (or `-worker`) on the command line, or `BOSH_CPI_WORKER=1`.
fn worker_requested(
    mut args: impl Iterator<Item = std::ffi::OsString>,
    env: Option<std::ffi::OsString>,
) -> bool {
    env.is_some_and(|v| v == "1")
        || args.any(|a| a.to_string_lossy().trim_start_matches('-') == "worker")
}

/// Answers one request per stdin line until stdin closes. The runtime keeps running between
/// requests, so child processes a CPI started (sim VMs) are reaped as they exit.
async fn serve_worker(cpi: &dyn Cpi) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading stdin");
                return;
            }
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = response_for_bytes(cpi, &line).await;
        write_response(&response);
        // After the response: the client forwards stderr up to here into this call's log.
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", worker::END_OF_REQUEST);
        let _ = err.flush();
    }
}

/// Go-style flags: `-configPath FILE`, `-configPath=FILE`, or with two dashes.
fn config_path_arg(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<PathBuf> {
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let flag = text.trim_start_matches('-');
        if flag == "configPath" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = flag.strip_prefix("configPath=") {
            return Some(PathBuf::from(value));
        }
    }
    None
}

fn write_response(response: &CpiResponse) {
    let body = serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"result":null,"error":{"type":"Bosh::Clouds::CpiError","message":"Encoding response","ok_to_retry":false},"log":""}"#.to_vec()
    });
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&body);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
