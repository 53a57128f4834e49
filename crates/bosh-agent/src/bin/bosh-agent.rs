//! The `bosh-agent` binary: the real agent's command line where it matters.

use anyhow::{Context, bail};
use bosh_agent::agent::{self, AgentOptions, ExitRequest};
use bosh_agent::layout::{DEFAULT_BASE, Layout};
use clap::Parser;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "bosh-agent", version, about = "BOSH agent (bosh-rs)")]
struct Cli {
    /// Base directory (the real agent's /var/vcap).
    #[arg(short = 'b', default_value = DEFAULT_BASE)]
    base_dir: PathBuf,
    /// Platform: `dummy` (a process on a shared host) or `ubuntu`.
    #[arg(short = 'P', default_value = "ubuntu")]
    platform: String,
    /// Path to agent.json (default: <base>/bosh/agent.json).
    #[arg(short = 'C')]
    config_path: Option<PathBuf>,
    /// Job supervisor (`monit`, `dummy`, `dummy-nats`); jobs are always supervised in-process.
    #[arg(short = 'M', default_value = "monit")]
    job_supervisor: String,
    /// Accepted for compatibility and ignored.
    #[arg(short = 'r', hide = true)]
    repack: Option<String>,
    /// Accepted for compatibility and ignored.
    #[arg(long = "no-alerts", hide = true)]
    no_alerts: bool,
}

/// Seconds from an environment variable (fractions allowed), for tests on a fast clock.
fn env_secs(name: &str, default: f64) -> anyhow::Result<Duration> {
    match std::env::var(name) {
        Ok(v) => Ok(Duration::from_secs_f64(
            v.parse::<f64>()
                .with_context(|| format!("{name}={v} is not a number"))?,
        )),
        Err(_) => Ok(Duration::from_secs_f64(default)),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // stderr is a log file on VMs: no colour codes in it.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let Some(platform) = bosh_agent::platform::platform_for(&cli.platform) else {
        bail!("unknown platform '{}'", cli.platform);
    };
    tracing::info!(supervisor = %cli.job_supervisor, "job supervisor requested; using the built-in one");
    let layout = Layout::new(&cli.base_dir);
    let options = AgentOptions {
        config_path: cli
            .config_path
            .clone()
            .unwrap_or_else(|| layout.default_agent_config()),
        layout,
        platform,
        heartbeat_interval: env_secs("BOSH_AGENT_HEARTBEAT_INTERVAL", 30.0)?,
        supervisor_tick: env_secs("BOSH_AGENT_SUPERVISOR_INTERVAL", 10.0)?,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the Tokio runtime")?;
    let why = runtime
        .block_on(agent::run(options))
        .map_err(|e| anyhow::anyhow!(bosh_agent::error_chain(&e)))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    match why {
        // No runit on a dummy VM: become a fresh agent in place (same pid, new settings).
        ExitRequest::Restart => {
            let exe = std::env::current_exe().context("locating the agent binary")?;
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .exec();
            Err(err).context("re-executing the agent")
        }
        ExitRequest::PowerOff => Ok(()),
        ExitRequest::Signal => std::process::exit(1),
    }
}
