//! `bosh-rs`: the bosh-rs command-line interface. Command names, flags, output shapes and
//! exit codes follow the official `bosh` CLI so that scripts written for it keep working.

mod cmd;
mod config_file;
mod director;
mod ui;

use clap::{Args, Parser};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "bosh-rs",
    version,
    about = "BOSH, rebuilt in Rust",
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: cmd::Command,
}

/// Options every command accepts, with the official CLI's names and environment variables.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Director environment name or URL
    #[arg(
        short = 'e',
        long = "environment",
        env = "BOSH_ENVIRONMENT",
        global = true
    )]
    pub environment: Option<String>,
    /// Director CA certificate path or value
    #[arg(long = "ca-cert", env = "BOSH_CA_CERT", global = true)]
    pub ca_cert: Option<String>,
    /// Override username or UAA client
    #[arg(long = "client", env = "BOSH_CLIENT", global = true)]
    pub client: Option<String>,
    /// Override password or UAA client secret
    #[arg(long = "client-secret", env = "BOSH_CLIENT_SECRET", global = true)]
    pub client_secret: Option<String>,
    /// Deployment name
    #[arg(
        short = 'd',
        long = "deployment",
        env = "BOSH_DEPLOYMENT",
        global = true
    )]
    pub deployment: Option<String>,
    /// Output as JSON
    #[arg(long = "json", global = true)]
    pub json: bool,
    /// Force TTY-like output
    #[arg(long = "tty", global = true)]
    pub tty: bool,
    /// Toggle colorized output
    #[arg(long = "no-color", global = true)]
    pub no_color: bool,
    /// Don't ask for user input
    #[arg(short = 'n', long = "non-interactive", global = true)]
    pub non_interactive: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOSH_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut ui = ui::Ui::new(cli.global.json);
    let result = cmd::run(cli.command, &cli.global, &mut ui);
    ui.finish(result)
}
