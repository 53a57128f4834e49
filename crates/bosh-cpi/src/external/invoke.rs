//! Running one CPI process for one request.

use super::ExternalCpiConfig;
use super::redact::redact_arguments;
use crate::error::CpiError;
use crate::log_sink::CpiLogSink;
use bosh_cpi_protocol::{CpiRequest, CpiResponse};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The only `PATH` a CPI gets; everything but `TMPDIR` and `HOME` is unset.
pub(crate) const CPI_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Spawns the CPI, writes the request, reads stdout and stderr concurrently (stderr lines go
/// to the sink as they come), and validates the response strictly. The exit status is
/// ignored, as BOSH ignores it.
pub(crate) async fn run(
    config: &ExternalCpiConfig,
    request: &CpiRequest,
    sink: Option<&dyn CpiLogSink>,
) -> Result<CpiResponse, CpiError> {
    let method = request.method.as_str();
    let path = &config.exec_path;
    log_request(config, request);
    let body = serde_json::to_vec(request).expect("a CPI request serializes to JSON");

    let mut cmd = command(config);
    let mut child = spawn_retrying_busy(&mut cmd)
        .await
        .map_err(|source| CpiError::Spawn {
            path: path.clone(),
            source,
        })?;
    let pid = child.id();
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        unreachable!("all three pipes were requested");
    };
    let stderr_text = Arc::new(Mutex::new(String::new()));

    let exchange = async {
        let write = async {
            // A CPI that exits without reading stdin is judged by its stdout alone.
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
            drop(stdin);
        };
        let read_out = async {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).await.map(|_| buf)
        };
        let read_err = async {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        if let Some(sink) = sink {
                            sink.append(&text);
                        }
                        stderr_text
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push_str(&text);
                    }
                }
            }
        };
        let ((), out, ()) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (out, status)
    };

    let (out, status) = match tokio::time::timeout(config.timeout, exchange).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.kill().await;
            let stderr = stderr_text
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            tracing::warn!(method, timeout = ?config.timeout, "cpi call timed out");
            return Err(CpiError::Timeout {
                method: method.to_owned(),
                timeout: config.timeout,
                stderr,
            });
        }
    };
    let stdout = out.map_err(|source| CpiError::Io {
        path: path.clone(),
        method: method.to_owned(),
        source,
    })?;
    let exit_status = status.ok().and_then(|s| s.code());
    let stderr = stderr_text
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    tracing::debug!(
        response = %String::from_utf8_lossy(&stdout),
        exit_status = ?exit_status,
        "cpi response"
    );

    let response =
        CpiResponse::from_slice_strict(&stdout).map_err(|e| CpiError::InvalidResponse {
            method: method.to_owned(),
            reason: e.to_string(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
            exit_status,
        })?;
    if let Some(sink) = sink {
        sink.append(&response.log);
    }
    Ok(response)
}

/// Logs `request` at debug level with credentials redacted.
pub(crate) fn log_request(config: &ExternalCpiConfig, request: &CpiRequest) {
    let redacted = CpiRequest {
        arguments: redact_arguments(&request.method, &request.arguments),
        context: request.context_redacted(),
        ..request.clone()
    };
    tracing::debug!(
        request = %serde_json::to_string(&redacted).unwrap_or_default(),
        command = %config.exec_path.display(),
        "cpi request"
    );
}

/// The CPI command with the director's scrubbed environment, its three pipes, and a
/// process group of its own so a timeout can kill the CPI and whatever it started.
pub(crate) fn command(config: &ExternalCpiConfig) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&config.exec_path);
    cmd.env_clear().env("PATH", CPI_PATH);
    for key in ["TMPDIR", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// A freshly written wrapper script can be briefly "text file busy" while another thread's
/// fork still holds its write descriptor; that clears within milliseconds.
pub(crate) async fn spawn_retrying_busy(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

pub(crate) fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // The group may already be gone; nothing else to do then.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}
