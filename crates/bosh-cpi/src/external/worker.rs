//! Persistent-worker mode: one long-running CPI process answers many requests, one JSON
//! request per stdin line and one JSON response per stdout line, instead of a fork per call.
//!
//! Only CPIs that declare it in `info` (our built-in executables, through
//! [`crate::serve::executable_main`]) are driven this way. A worker is started with
//! [`WORKER_ENV`]`=1` rather than a flag because `bin/cpi` wrapper scripts `exec` the real
//! binary without forwarding arguments, while the environment does pass through. After each
//! response the worker writes [`END_OF_REQUEST`] on stderr, so every stderr line of a call
//! reaches that call's log sink before the call returns. A worker that dies, hangs or breaks
//! the protocol is killed with its process group and replaced by the next call.

use super::ExternalCpiConfig;
use super::invoke::{command, kill_group, log_request, spawn_retrying_busy};
use crate::error::CpiError;
use crate::log_sink::CpiLogSink;
use bosh_cpi_protocol::{CpiRequest, CpiResponse};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{Semaphore, mpsc};

/// Set to `1` in a worker's environment.
pub const WORKER_ENV: &str = "BOSH_CPI_WORKER";
/// The `info` result key by which a CPI declares the worker protocol it speaks.
pub const INFO_KEY: &str = "persistent_worker";
/// The worker protocol version this client speaks.
pub const PROTOCOL: u64 = 1;
/// The stderr line a worker writes after each response (never shown in a log).
pub const END_OF_REQUEST: &str = "\u{1e}bosh-cpi-worker: end of request";
/// How long to wait for [`END_OF_REQUEST`] once the response is in: the worker writes it
/// right after the response, so only a non-conforming worker ever runs into this.
const END_MARKER_GRACE: Duration = Duration::from_secs(2);

/// True when an `info` result declares the worker protocol this client speaks.
pub fn declares_worker(info_result: &Value) -> bool {
    info_result
        .get(INFO_KEY)
        .and_then(|w| w.get("protocol"))
        .and_then(Value::as_u64)
        == Some(PROTOCOL)
}

/// One live worker process.
struct Worker {
    child: Child,
    pid: Option<u32>,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// stderr lines as they come, from a reader task; closed when the worker exits.
    stderr: mpsc::UnboundedReceiver<String>,
}

impl Worker {
    async fn spawn(config: &ExternalCpiConfig) -> Result<Worker, CpiError> {
        let mut cmd = command(config);
        cmd.env(WORKER_ENV, "1");
        let mut child = spawn_retrying_busy(&mut cmd)
            .await
            .map_err(|source| CpiError::Spawn {
                path: config.exec_path.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three pipes were requested");
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                match lines.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx
                            .send(String::from_utf8_lossy(&line).into_owned())
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let pid = child.id();
        tracing::debug!(pid, path = %config.exec_path.display(), "cpi worker started");
        Ok(Worker {
            child,
            pid,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: rx,
        })
    }

    /// Still running (an idle worker may have died between calls).
    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the worker and everything in its process group.
    fn kill(&mut self) {
        if let Some(pid) = self.pid {
            kill_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A worker is dropped idle (client gone) or broken; either way it must not linger.
        self.kill();
    }
}

/// Why a call ended without a usable worker afterwards.
enum Broken {
    /// The worker exited (or closed stdout) before its response line.
    Exited,
    /// Writing the request or reading stdout failed.
    Io(std::io::Error),
    /// The response line is not a valid response.
    Invalid(String, Vec<u8>),
}

/// What one exchange produced.
struct Exchange {
    response: Result<CpiResponse, Broken>,
    /// The worker followed the protocol to the end and may serve the next call.
    reusable: bool,
}

/// Up to `size` workers, each serving one request at a time.
pub(crate) struct WorkerPool {
    idle: Mutex<Vec<Worker>>,
    slots: Semaphore,
}

impl WorkerPool {
    pub(crate) fn new(size: usize) -> Self {
        WorkerPool {
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(size.max(1)),
        }
    }

    fn take_idle(&self) -> Option<Worker> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut w) = idle.pop() {
            if w.is_alive() {
                return Some(w);
            }
            tracing::info!(pid = w.pid, "cpi worker exited while idle; replacing it");
        }
        None
    }

    /// Sends `request` to a worker and waits for its response, at most `config.timeout`.
    pub(crate) async fn call(
        &self,
        config: &ExternalCpiConfig,
        request: &CpiRequest,
        sink: Option<&dyn CpiLogSink>,
    ) -> Result<CpiResponse, CpiError> {
        let method = request.method.as_str();
        let _slot = self.slots.acquire().await.expect("the pool never closes");
        let mut worker = match self.take_idle() {
            Some(w) => w,
            None => Worker::spawn(config).await?,
        };
        log_request(config, request);
        let mut line = serde_json::to_vec(request).expect("a CPI request serializes to JSON");
        line.push(b'\n');
        let mut stderr_text = String::new();
        let exchanged = tokio::time::timeout(
            config.timeout,
            exchange(&mut worker, &line, sink, &mut stderr_text),
        )
        .await;
        let Ok(Exchange { response, reusable }) = exchanged else {
            tracing::warn!(method, timeout = ?config.timeout, pid = worker.pid, "cpi worker timed out; killing it");
            worker.kill();
            return Err(CpiError::Timeout {
                method: method.to_owned(),
                timeout: config.timeout,
                stderr: stderr_text,
            });
        };
        let response = match response {
            Ok(r) => r,
            Err(broken) => {
                worker.kill();
                return Err(match broken {
                    Broken::Io(source) => CpiError::Io {
                        path: config.exec_path.clone(),
                        method: method.to_owned(),
                        source,
                    },
                    Broken::Exited => {
                        // Reaped already or about to be: it was killed or closed stdout.
                        let status =
                            tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
                                .await
                                .ok()
                                .and_then(Result::ok);
                        drain_stderr(&mut worker, sink, &mut stderr_text).await;
                        CpiError::InvalidResponse {
                            method: method.to_owned(),
                            reason: match status {
                                Some(s) => format!("CPI worker exited ({s}) before answering"),
                                None => "CPI worker closed its stdout before answering".to_owned(),
                            },
                            stdout: String::new(),
                            stderr: stderr_text,
                            exit_status: status.and_then(|s| s.code()),
                        }
                    }
                    Broken::Invalid(reason, stdout) => CpiError::InvalidResponse {
                        method: method.to_owned(),
                        reason,
                        stdout: String::from_utf8_lossy(&stdout).into_owned(),
                        stderr: stderr_text,
                        exit_status: None,
                    },
                });
            }
        };
        if let Some(sink) = sink {
            sink.append(&response.log);
        }
        if reusable && worker.is_alive() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(worker);
        }
        Ok(response)
    }
}

/// Forwards one stderr line to the sink and the call's text, unless it is the end marker.
/// Returns true for the end marker.
fn on_stderr(line: &str, sink: Option<&dyn CpiLogSink>, text: &mut String) -> bool {
    if line.trim_end_matches(['\n', '\r']) == END_OF_REQUEST {
        return true;
    }
    if let Some(sink) = sink {
        sink.append(line);
    }
    text.push_str(line);
    false
}

/// Whatever a dead worker left on stderr.
async fn drain_stderr(worker: &mut Worker, sink: Option<&dyn CpiLogSink>, text: &mut String) {
    let drain = async {
        while let Some(line) = worker.stderr.recv().await {
            on_stderr(&line, sink, text);
        }
    };
    let _ = tokio::time::timeout(END_MARKER_GRACE, drain).await;
}

async fn exchange(
    worker: &mut Worker,
    line: &[u8],
    sink: Option<&dyn CpiLogSink>,
    stderr_text: &mut String,
) -> Exchange {
    let broken = |b: Broken| Exchange {
        response: Err(b),
        reusable: false,
    };
    // Lines a previous call's marker left behind cannot exist: each call waits for its marker.
    let written = async {
        worker.stdin.write_all(line).await?;
        worker.stdin.flush().await
    }
    .await;
    if let Err(e) = written {
        return broken(if e.kind() == std::io::ErrorKind::BrokenPipe {
            Broken::Exited
        } else {
            Broken::Io(e)
        });
    }
    let mut out = Vec::new();
    let mut stderr_open = true;
    // Read the response line while forwarding stderr.
    loop {
        tokio::select! {
            // Stdout first: a worker that answered and then exited still answered.
            biased;
            read = worker.stdout.read_until(b'\n', &mut out) => match read {
                Ok(0) => return broken(Broken::Exited),
                Ok(_) => break,
                Err(e) => return broken(Broken::Io(e)),
            },
            err = worker.stderr.recv(), if stderr_open => match err {
                // A marker before the response would be a protocol error; treat it as text.
                Some(l) => { on_stderr(&l, sink, stderr_text); }
                None => stderr_open = false,
            },
            // Its children may hold stdout open; the worker's own exit is what counts.
            _ = worker.child.wait() => return broken(Broken::Exited),
        }
    }
    let response = match CpiResponse::from_slice_strict(&out) {
        Ok(r) => r,
        Err(e) => return broken(Broken::Invalid(e.to_string(), out)),
    };
    // Then the rest of this call's stderr, up to the marker.
    let mut reusable = false;
    if stderr_open {
        let until_marker = async {
            while let Some(l) = worker.stderr.recv().await {
                if on_stderr(&l, sink, stderr_text) {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(END_MARKER_GRACE, until_marker).await {
            Ok(found) => reusable = found,
            Err(_) => tracing::warn!(
                pid = worker.pid,
                "cpi worker wrote no end-of-request marker; retiring it"
            ),
        }
    }
    tracing::debug!(response = %String::from_utf8_lossy(&out).trim_end(), "cpi response");
    Exchange {
        response: Ok(response),
        reusable,
    }
}
