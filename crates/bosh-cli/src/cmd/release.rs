//! Release directory commands: `init-release`, `generate-job`, `generate-package`,
//! `add-blob`, `remove-blob`, `blobs`, `create-release`, `finalize-release`, `reset-release`.

use crate::GlobalOpts;
use crate::ui::{Table, TableOptions, Ui};
use anyhow::Context;
use bosh_release::blobs::BlobsDir;
use bosh_release::create::{
    AssembledRelease, CreateOptions, create_release, expand_tarball_path, release_from_manifest,
};
use bosh_release::finalize::finalize_release_tarball;
use bosh_release::index::ArchiveCache;
use bosh_release::release_dir::ReleaseDir;
use bosh_types::version::Version;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Initialize release
    #[command(name = "init-release")]
    InitRelease {
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
        /// Initialize git repository
        #[arg(long = "git")]
        git: bool,
    },
    /// Generate job
    #[command(name = "generate-job")]
    GenerateJob {
        #[arg(value_name = "NAME")]
        name: String,
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
    },
    /// Generate package
    #[command(name = "generate-package")]
    GeneratePackage {
        #[arg(value_name = "NAME")]
        name: String,
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
    },
    /// Add blob
    #[command(name = "add-blob")]
    AddBlob {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[arg(value_name = "BLOBS-PATH")]
        blobs_path: String,
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
    },
    /// Remove blob
    #[command(name = "remove-blob")]
    RemoveBlob {
        #[arg(value_name = "BLOBS-PATH")]
        blobs_path: String,
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
    },
    /// List blobs
    #[command(name = "blobs")]
    Blobs {
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
    },
    /// Create release
    #[command(name = "create-release")]
    CreateRelease {
        /// Path to a release manifest (e.g. releases/foo/foo-3.yml)
        #[arg(value_name = "PATH")]
        manifest: Option<PathBuf>,
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
        /// Custom release name
        #[arg(long = "name")]
        name: Option<String>,
        /// Custom release version (e.g.: 1.0.0, 1.0-beta.2+dev.10)
        #[arg(long = "version", value_parser = parse_version)]
        version: Option<Version>,
        /// Create release with the timestamp as the dev version (e.g.: 1+dev.TIMESTAMP)
        #[arg(long = "timestamp-version")]
        timestamp_version: bool,
        /// Make it a final release
        #[arg(long = "final")]
        final_: bool,
        /// Create release tarball at path (e.g. /tmp/release.tgz)
        #[arg(long = "tarball")]
        tarball: Option<String>,
        /// Ignore Git dirty state check
        #[arg(long = "force")]
        force: bool,
    },
    /// Create final release from dev release tarball
    #[command(name = "finalize-release")]
    FinalizeRelease {
        #[arg(value_name = "PATH")]
        tarball: PathBuf,
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
        /// Custom release name
        #[arg(long = "name")]
        name: Option<String>,
        /// Custom release version (e.g.: 1.0.0, 1.0-beta.2+dev.10)
        #[arg(long = "version", value_parser = parse_version)]
        version: Option<Version>,
        /// Ignore Git dirty state check
        #[arg(long = "force")]
        force: bool,
    },
    /// Reset release
    #[command(name = "reset-release")]
    ResetRelease {
        /// Release directory path if not current working directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
    },
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).map_err(|e| e.to_string())
}

pub fn run(cmd: ReleaseCommand, _global: &GlobalOpts, ui: &mut Ui) -> anyhow::Result<()> {
    match cmd {
        ReleaseCommand::InitRelease { dir, git } => Ok(ReleaseDir::new(dir).init(git)?),
        ReleaseCommand::GenerateJob { name, dir } => Ok(ReleaseDir::new(dir).generate_job(&name)?),
        ReleaseCommand::GeneratePackage { name, dir } => {
            Ok(ReleaseDir::new(dir).generate_package(&name)?)
        }
        ReleaseCommand::AddBlob {
            path,
            blobs_path,
            dir,
        } => {
            let blob = BlobsDir::new(&dir)
                .track_blob(&path, &blobs_path)
                .context("Tracking blob")?;
            ui.line(format!("Added blob '{}'", blob.path));
            Ok(())
        }
        ReleaseCommand::RemoveBlob { blobs_path, dir } => {
            BlobsDir::new(&dir)
                .untrack_blob(&blobs_path)
                .context("Untracking blob")?;
            ui.line(format!("Removed blob '{blobs_path}'"));
            Ok(())
        }
        ReleaseCommand::Blobs { dir } => {
            let blobs = BlobsDir::new(&dir).blobs()?;
            let rows = blobs
                .iter()
                .map(|b| {
                    let id = if b.object_id.is_empty() {
                        "(local)".to_string()
                    } else {
                        b.object_id.clone()
                    };
                    vec![b.path.clone(), human_bytes(b.size), id, b.sha.clone()]
                })
                .collect();
            let table = Table {
                content: "blobs".into(),
                header: ["Path", "Size", "Blobstore ID", "Digest"]
                    .map(String::from)
                    .to_vec(),
                rows,
                notes: Vec::new(),
            };
            ui.table_with(
                &table,
                &TableOptions {
                    sort_by: vec![(0, true)],
                    ..TableOptions::default()
                },
            );
            Ok(())
        }
        ReleaseCommand::CreateRelease {
            manifest,
            dir,
            name,
            version,
            timestamp_version,
            final_,
            tarball,
            force,
        } => {
            let release_dir = ReleaseDir::new(&dir);
            let cache = ArchiveCache::from_home();
            let mut lines = Vec::new();
            let result = match manifest {
                Some(path) => release_from_manifest(&release_dir, cache, &path, &mut |l| {
                    lines.push(l.to_string())
                }),
                None => {
                    let opts = CreateOptions {
                        name,
                        version,
                        timestamp_version,
                        final_,
                        force,
                        ..CreateOptions::default()
                    };
                    create_release(&release_dir, cache, &opts, &mut |l| {
                        lines.push(l.to_string())
                    })
                }
            };
            for l in lines {
                ui.line(l);
            }
            let release = match result {
                Ok(r) => r,
                Err(bosh_release::create::CreateError::Dir(e)) if is_name_error(&e) => {
                    return Err(anyhow::Error::new(e)
                        .context("Check that you're in the top-level of the release directory"));
                }
                Err(e) => return Err(e.into()),
            };
            let archive = match tarball {
                Some(t) => {
                    let dst = absolute(&expand_tarball_path(&t, &release.name, &release.version));
                    release
                        .write_tarball(&dst)
                        .context("Moving release archive to final destination")?;
                    Some(dst)
                }
                None => None,
            };
            print_release_tables(ui, &release, archive.as_deref());
            Ok(())
        }
        ReleaseCommand::FinalizeRelease {
            tarball,
            dir,
            name,
            version,
            force,
        } => {
            let release_dir = ReleaseDir::new(&dir);
            let mut lines = Vec::new();
            let result = finalize_release_tarball(
                &release_dir,
                ArchiveCache::from_home(),
                &tarball,
                name.as_deref(),
                version.as_ref(),
                force,
                &mut |l| lines.push(l.to_string()),
            );
            for l in lines {
                ui.line(l);
            }
            print_release_tables(ui, &result?, None);
            Ok(())
        }
        ReleaseCommand::ResetRelease { dir } => Ok(ReleaseDir::new(dir).reset()?),
    }
}

fn is_name_error(e: &bosh_release::release_dir::ReleaseDirError) -> bool {
    use bosh_release::release_dir::ReleaseDirError as E;
    matches!(e, E::NoName(_) | E::BothNames(_))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The summary (transposed), jobs and packages tables the reference prints after
/// `create-release` and `finalize-release`.
/// The same summary, jobs and packages tables `inspect-local-release` prints.
fn print_release_tables(ui: &mut Ui, r: &AssembledRelease, archive: Option<&Path>) {
    let archive = archive.map(|a| a.display().to_string()).unwrap_or_default();
    super::inspect::print_release_tables(ui, &r.manifest(), &archive);
}

fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(units.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", units[e])
    } else {
        format!("{val:.0} {}", units[e])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_like_go_humanize() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(13), "13 B");
        assert_eq!(human_bytes(1234), "1.2 kB");
        assert_eq!(human_bytes(82_854_982), "83 MB");
    }
}
