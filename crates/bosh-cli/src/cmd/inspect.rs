//! Local tarball commands: `inspect-local-release`, `inspect-local-stemcell`,
//! `sha1ify-release`, `sha2ify-release`. Tables match the reference CLI's
//! `cmd/release_tables.go` and `cmd/inspect_stemcell_tarball.go`.

use crate::GlobalOpts;
use crate::ui::{Table, TableOptions, Ui};
use bosh_release::rewrite::redigest_release;
use bosh_release::stemcell::read_stemcell_manifest;
use bosh_release::tarball_read::read_release_tarball;
use bosh_types::digest::DigestAlgo;
use bosh_types::release::ReleaseManifest;
use bosh_yaml::Value;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum InspectCommand {
    /// Display information from release metadata
    #[command(name = "inspect-local-release")]
    InspectLocalRelease {
        /// Path to release
        #[arg(value_name = "PATH-TO-RELEASE")]
        path: PathBuf,
    },
    /// Display information from stemcell metadata
    #[command(name = "inspect-local-stemcell")]
    InspectLocalStemcell {
        /// Path to stemcell
        #[arg(value_name = "PATH-TO-STEMCELL")]
        path: PathBuf,
    },
    /// Convert release tarball to use SHA1
    #[command(name = "sha1ify-release")]
    Sha1ifyRelease {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[arg(value_name = "DESTINATION")]
        destination: PathBuf,
    },
    /// Convert release tarball to use SHA256
    #[command(name = "sha2ify-release")]
    Sha2ifyRelease {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[arg(value_name = "DESTINATION")]
        destination: PathBuf,
    },
}

pub fn run(cmd: InspectCommand, _global: &GlobalOpts, ui: &mut Ui) -> anyhow::Result<()> {
    match cmd {
        InspectCommand::InspectLocalRelease { path } => {
            let release = read_release_tarball(&path)?;
            print_release_tables(ui, &release.manifest, &path.to_string_lossy());
            Ok(())
        }
        InspectCommand::InspectLocalStemcell { path } => {
            let manifest = read_stemcell_manifest(&path)?;
            let prop = |key: &str| {
                manifest
                    .cloud_properties
                    .get(&Value::from(key))
                    .filter(|v| !v.is_null())
                    .map(scalar_text)
            };
            let table = Table {
                content: "stemcell-metadata".into(),
                header: ["Name", "OS", "Version", "Infrastructure", "Hypervisor"]
                    .map(String::from)
                    .to_vec(),
                rows: vec![vec![
                    manifest.name.clone().unwrap_or_default(),
                    manifest.operating_system.clone().unwrap_or_default(),
                    manifest.version.clone().unwrap_or_default(),
                    prop("infrastructure").unwrap_or_else(|| "unknown".into()),
                    prop("hypervisor").unwrap_or_else(|| "-".into()),
                ]],
                notes: vec![],
            };
            ui.table_with(&table, &sort_first_column());
            Ok(())
        }
        InspectCommand::Sha1ifyRelease { path, destination } => {
            redigest(ui, path, destination, DigestAlgo::Sha1)
        }
        InspectCommand::Sha2ifyRelease { path, destination } => {
            redigest(ui, path, destination, DigestAlgo::Sha256)
        }
    }
}

fn redigest(
    ui: &mut Ui,
    path: PathBuf,
    destination: PathBuf,
    algo: DigestAlgo,
) -> anyhow::Result<()> {
    let manifest = redigest_release(&path, &destination, algo)?;
    print_release_tables(ui, &manifest, &destination.to_string_lossy());
    Ok(())
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => bosh_yaml::to_string(other).trim_end().to_string(),
    }
}

fn sort_first_column() -> TableOptions {
    TableOptions {
        sort_by: vec![(0, true)],
        ..Default::default()
    }
}

/// The summary, jobs and packages tables of a release (reference: `ReleaseTables`).
pub fn print_release_tables(ui: &mut Ui, m: &ReleaseManifest, archive_path: &str) {
    let commit = if m.uncommitted_changes {
        format!("{}+", m.commit_hash)
    } else {
        m.commit_hash.clone()
    };
    let mut summary = Table {
        content: String::new(),
        header: ["Name", "Version", "Commit Hash"]
            .map(String::from)
            .to_vec(),
        rows: vec![vec![m.name.clone(), m.version.clone(), commit]],
        notes: vec![],
    };
    if !archive_path.is_empty() {
        summary.header.push("Archive".into());
        summary.rows[0].push(archive_path.to_string());
    }

    let jobs = Table {
        content: "jobs".into(),
        header: ["Job", "Digest", "Packages"].map(String::from).to_vec(),
        rows: m
            .jobs
            .iter()
            .map(|j| {
                vec![
                    format!("{}/{}", j.name, j.fingerprint),
                    j.sha1.clone(),
                    j.packages.join("\n"),
                ]
            })
            .collect(),
        notes: vec![],
    };

    let compiled = !m.compiled_packages.is_empty();
    let mut header: Vec<String> = ["Package", "Digest", "Dependencies"]
        .map(String::from)
        .to_vec();
    if compiled {
        header.push("OS".into());
        header.push("OS Version".into());
    }
    let mut rows: Vec<Vec<String>> = m
        .packages
        .iter()
        .map(|p| {
            let mut row = vec![
                format!("{}/{}", p.name, p.fingerprint),
                p.sha1.clone(),
                p.dependencies.join("\n"),
            ];
            if compiled {
                row.push(String::new());
                row.push(String::new());
            }
            row
        })
        .collect();
    for p in &m.compiled_packages {
        let (os, version) = match p.stemcell.split_once('/') {
            Some((os, rest)) => (
                os.to_string(),
                rest.split('/').next().unwrap_or("").to_string(),
            ),
            None => (p.stemcell.clone(), String::new()),
        };
        rows.push(vec![
            format!("{}/{}", p.name, p.fingerprint),
            p.sha1.clone(),
            p.dependencies.join("\n"),
            os,
            version,
        ]);
    }
    let packages = Table {
        content: "packages".into(),
        header,
        rows,
        notes: vec![],
    };

    ui.table_with(
        &summary,
        &TableOptions {
            transpose: true,
            ..Default::default()
        },
    );
    ui.table_with(&jobs, &sort_first_column());
    ui.table_with(&packages, &sort_first_column());
}
