//! Agent processes: started detached in their own process group (so they outlive the CPI
//! process and can be killed with everything they started), identified by pid plus start
//! time so that a reused pid is not mistaken for the VM.

use super::SimAgentConfig;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentProcess {
    /// Also the process group id.
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22, in clock ticks since boot.
    pub start_time: u64,
}

/// Starts `command -b <vm_dir> -P <platform> -M <supervisor> -C <vm_dir>/agent.json` in
/// `vm_dir`, output appended to `log_path`.
pub(super) fn spawn(
    agent: &SimAgentConfig,
    vm_dir: &Path,
    log_path: &Path,
    tmp_dir: &Path,
) -> std::io::Result<AgentProcess> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let log_err = log.try_clone()?;
    let mut cmd = tokio::process::Command::new(&agent.command[0]);
    cmd.args(&agent.command[1..])
        .arg("-b")
        .arg(vm_dir)
        .args(["-P", &agent.platform, "-M", &agent.job_supervisor, "-C"])
        .arg(vm_dir.join("agent.json"))
        .current_dir(vm_dir)
        .env("TMPDIR", tmp_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        .kill_on_drop(false);
    // Dropping the handle detaches the process; tokio reaps it if it exits while we run.
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("agent exited at once"))?;
    let start_time = proc_stat(pid)
        .map(|s| s.start_time)
        .ok_or_else(|| std::io::Error::other(format!("agent process {pid} vanished at start")))?;
    Ok(AgentProcess { pid, start_time })
}

struct ProcStat {
    state: char,
    start_time: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parens; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

impl AgentProcess {
    /// Running (not a zombie) and still the process we started.
    pub fn is_alive(&self) -> bool {
        proc_stat(self.pid)
            .is_some_and(|s| s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X'))
    }

    /// The agent's command line, NUL-separated arguments joined by spaces.
    pub fn cmdline(&self) -> Option<String> {
        let raw = std::fs::read(format!("/proc/{}/cmdline", self.pid)).ok()?;
        Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        )
    }

    fn signal_group(&self, signal: Signal) {
        if !self.is_alive() {
            return;
        }
        let Ok(pgid) = i32::try_from(self.pid) else {
            return;
        };
        // ESRCH just means the group is already gone.
        let _ = killpg(Pid::from_raw(pgid), signal);
    }

    async fn wait_dead(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        !self.is_alive()
    }

    /// SIGTERM to the whole group, then SIGKILL if it lingers. Returns whether it is gone.
    pub async fn terminate(&self) -> bool {
        self.signal_group(Signal::SIGTERM);
        if self.wait_dead(Duration::from_secs(5)).await {
            // Children in the group that ignored SIGTERM must not outlive the VM.
            self.kill_group_leftovers();
            return true;
        }
        self.signal_group(Signal::SIGKILL);
        let gone = self.wait_dead(Duration::from_secs(2)).await;
        self.kill_group_leftovers();
        gone
    }

    fn kill_group_leftovers(&self) {
        if let Ok(pgid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// Kills what the VM's agent started outside its own process group: supervised jobs run in
/// process groups of their own and carry `BOSH_AGENT_BASE_DIR=<vm dir>` in their environment.
/// A deleted VM must not leave them running. Returns how many processes were signalled.
pub(super) fn kill_vm_processes(vm_dir: &Path) -> usize {
    let marker = format!("BOSH_AGENT_BASE_DIR={}", vm_dir.display());
    let me = std::process::id();
    let my_group = nix::unistd::getpgrp();
    let mut killed = 0;
    // A job may fork between scans (a shell loop); repeat until nothing is found.
    for _ in 0..5 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return killed;
        };
        let found: Vec<u32> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == marker.as_bytes()))
            })
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            let pid = Pid::from_raw(raw);
            if let Ok(group) = nix::unistd::getpgid(Some(pid))
                && group != my_group
            {
                let _ = killpg(group, Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            killed += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}
