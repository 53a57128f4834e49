//! `create-stemcell docker|sim`: build stemcell tarballs locally (bosh-rs only; the official
//! CLI has no such command).

use crate::GlobalOpts;
use crate::ui::Ui;
use anyhow::Context;
use bosh_stemcell::{
    BuiltStemcell, DockerStemcellOptions, SimStemcellOptions, build_docker_stemcell,
    build_sim_stemcell,
};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum StemcellCommand {
    /// Build a stemcell tarball (docker: Debian rootfs + bosh-agent; sim: light stemcell)
    #[command(name = "create-stemcell")]
    CreateStemcell {
        #[command(subcommand)]
        kind: StemcellKind,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum StemcellKind {
    /// Debian rootfs (debootstrap, cached) with bosh-agent, for the docker CPI
    Docker(DockerArgs),
    /// Light stemcell for the sim CPI
    Sim(SimArgs),
}

#[derive(clap::Args, Debug)]
pub struct DockerArgs {
    /// Where to write the stemcell tarball
    #[arg(long = "output", value_name = "FILE")]
    output: PathBuf,
    /// bosh-agent executable to install (default: bosh-agent next to this executable)
    #[arg(long = "agent", value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Stemcell version
    #[arg(long = "version", default_value = "1")]
    version: String,
    /// Stemcell name
    #[arg(long = "name")]
    name: Option<String>,
    /// Debian suite
    #[arg(long = "suite", default_value = "bookworm")]
    suite: String,
    /// Debian mirror
    #[arg(long = "mirror", default_value = bosh_stemcell::docker::DEFAULT_MIRROR)]
    mirror: String,
    /// Extra Debian package to install (repeatable)
    #[arg(long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// Base rootfs cache (default: $BOSH_RS_CACHE/stemcell or ~/.cache/bosh-rs/stemcell)
    #[arg(long = "cache-dir", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Where to write the stemcell tarball
    #[arg(long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Stemcell version
    #[arg(long = "version", default_value = "1")]
    version: String,
    /// Stemcell name
    #[arg(long = "name")]
    name: Option<String>,
}

pub fn run(cmd: StemcellCommand, _global: &GlobalOpts, ui: &mut Ui) -> anyhow::Result<()> {
    let StemcellCommand::CreateStemcell { kind } = cmd;
    let built = match kind {
        StemcellKind::Docker(a) => docker(a)?,
        StemcellKind::Sim(a) => {
            let mut opts = SimStemcellOptions::new(a.output);
            opts.version = a.version;
            if let Some(name) = a.name {
                opts.name = name;
            }
            build_sim_stemcell(&opts).context("Building the sim stemcell")?
        }
    };
    ui.line(format!("Stemcell name: {}", built.name));
    ui.line(format!("Stemcell version: {}", built.version));
    ui.line(format!("Stemcell sha1: {}", built.sha1));
    ui.line(format!("Stemcell tarball: {}", built.path.display()));
    Ok(())
}

fn docker(a: DockerArgs) -> anyhow::Result<BuiltStemcell> {
    let agent = match a.agent {
        Some(p) => p,
        None => std::env::current_exe()
            .context("Locating the running executable")?
            .with_file_name("bosh-agent"),
    };
    let mut opts = DockerStemcellOptions::new(a.output, agent);
    opts.version = a.version;
    opts.suite = a.suite;
    opts.mirror = a.mirror;
    opts.name = a
        .name
        .unwrap_or_else(|| format!("bosh-docker-debian-{}-go_agent", opts.suite));
    opts.packages.extend(a.packages);
    if let Some(dir) = a.cache_dir {
        opts.cache_dir = dir;
    }
    build_docker_stemcell(&opts).context("Building the docker stemcell")
}
