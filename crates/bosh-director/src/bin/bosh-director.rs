//! `bosh-director --data-dir DIR --listen ADDR --cpi sim|docker|PATH [--config FILE]`

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;

use bosh_director::config::DirectorConfig;
use bosh_director::server::{DirectorOptions, director_start};

#[derive(Parser, Debug)]
#[command(name = "bosh-director", about = "BOSH director (bosh-rs)")]
struct Args {
    /// Where the database, certificates, credentials and task logs live.
    #[arg(long)]
    data_dir: PathBuf,
    /// HOST:PORT to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:25555")]
    listen: String,
    /// `sim`, `docker`, or the path of an external CPI executable.
    #[arg(long, default_value = "sim")]
    cpi: String,
    /// Director config (YAML): database_url, workers, users, name.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => DirectorConfig::load(path)?,
        None => DirectorConfig::default(),
    };
    let director = director_start(DirectorOptions::new(
        args.data_dir.clone(),
        &args.listen,
        &args.cpi,
        config,
    ))
    .await
    .context("cannot start the director")?;
    // The first stdout line is the URL; scripts and tests read it (the port may be 0).
    println!("Director listening on {}", director.url);
    println!("CA certificate: {}", director.ca_cert_path.display());
    match &director.credentials_path {
        Some(p) => println!("Credentials (username/password): {}", p.display()),
        None => println!("Users come from the config file"),
    }
    tokio::select! {
        res = director.wait() => res.context("the HTTPS listener stopped")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
