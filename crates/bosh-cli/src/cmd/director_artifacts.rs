//! Stemcell and release commands against a director: uploads (with the pre-checks and the
//! trimmed release tarball of the official CLI), listings, inspect and delete
//! (`director-api.md` §4, §6).

use anyhow::{Context, bail};
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use super::{Out, Session, confirm, task_track};
use crate::GlobalOpts;
use crate::director::DirectorClient;
use crate::director::artifacts::{InspectJob, ReleaseInspect};
use crate::ui::{Table, TableOptions};
use bosh_types::version::Version;

#[derive(clap::Subcommand, Debug)]
pub enum ArtifactCommand {
    /// Upload stemcell
    #[command(name = "upload-stemcell", visible_alias = "us")]
    UploadStemcell {
        /// Path or URL to a stemcell tarball
        #[arg(value_name = "URL")]
        url: String,
        /// SHA1 of the remote stemcell
        #[arg(long)]
        sha1: Option<String>,
        /// Name used in existence check (for remote stemcells)
        #[arg(long)]
        name: Option<String>,
        /// Version used in existence check (for remote stemcells)
        #[arg(long)]
        version: Option<String>,
        /// Replaces the stemcell if it already exists
        #[arg(long)]
        fix: bool,
    },
    /// List stemcells
    #[command(name = "stemcells", visible_alias = "ss")]
    Stemcells,
    /// Delete stemcell
    #[command(name = "delete-stemcell", visible_alias = "dels")]
    DeleteStemcell {
        /// Stemcell NAME/VERSION
        #[arg(value_name = "NAME/VERSION")]
        slug: String,
        /// Ignore errors
        #[arg(long)]
        force: bool,
    },
    /// Upload release
    #[command(name = "upload-release", visible_alias = "ur")]
    UploadRelease {
        /// Path to a release tarball or a release directory, or a URL
        #[arg(value_name = "URL")]
        url: Option<String>,
        /// Release directory path if not current working directory
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// SHA1 of the remote release
        #[arg(long)]
        sha1: Option<String>,
        /// Name used in existence check (for remote releases)
        #[arg(long)]
        name: Option<String>,
        /// Version used in existence check (for remote releases)
        #[arg(long)]
        version: Option<String>,
        /// Replaces corrupt and missing jobs and packages
        #[arg(long)]
        fix: bool,
        /// Rebases this release onto the latest version known by the Director
        #[arg(long)]
        rebase: bool,
    },
    /// List releases
    #[command(name = "releases", visible_alias = "rs")]
    Releases,
    /// Inspect release
    #[command(name = "inspect-release")]
    InspectRelease {
        /// Release NAME/VERSION
        #[arg(value_name = "NAME/VERSION")]
        slug: String,
    },
    /// Delete release
    #[command(name = "delete-release", visible_alias = "delr")]
    DeleteRelease {
        /// Release NAME[/VERSION]
        #[arg(value_name = "NAME[/VERSION]")]
        slug: String,
        /// Ignore errors
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: ArtifactCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        ArtifactCommand::UploadStemcell {
            url,
            sha1,
            name,
            version,
            fix,
        } => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            upload_stemcell(out, &client, &url, sha1, name, version, fix)
        }
        ArtifactCommand::Stemcells => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            stemcells(out, &client)
        }
        ArtifactCommand::DeleteStemcell { slug, force } => {
            let (name, version) = split_slug(&slug, "stemcell")?;
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            confirm(out, global)?;
            let res = client
                .delete_stemcell(&name, &version, force)
                .map_err(anyhow::Error::from)
                .and_then(|t| task_track(out, &client, &t, true));
            if let Err(e) = res {
                let still_there = client
                    .stemcells()
                    .map(|ss| ss.iter().any(|s| s.name == name && s.version == version))
                    .unwrap_or(true);
                if still_there {
                    return Err(e);
                }
            }
            Ok(())
        }
        ArtifactCommand::UploadRelease {
            url,
            dir,
            sha1,
            name,
            version,
            fix,
            rebase,
        } => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            let opts = UploadReleaseOpts {
                sha1: sha1.unwrap_or_default(),
                name: name.unwrap_or_default(),
                version: version.map(|v| canonical_version(&v)).unwrap_or_default(),
                fix,
                rebase,
            };
            upload_release(out, &client, url.as_deref(), &dir, &opts)
        }
        ArtifactCommand::Releases => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            releases(out, &client)
        }
        ArtifactCommand::InspectRelease { slug } => {
            let (name, version) = split_slug(&slug, "release")?;
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            let inspect = client
                .release_inspect(&name, &canonical_version(&version))
                .with_context(|| format!("Finding release '{name}/{version}'"))?;
            inspect_tables(out, &inspect);
            Ok(())
        }
        ArtifactCommand::DeleteRelease { slug, force } => {
            let (name, version) = match slug.split_once('/') {
                Some((n, v)) if !n.is_empty() && !v.is_empty() && !v.contains('/') => {
                    (n.to_string(), Some(canonical_version(v)))
                }
                None if !slug.is_empty() => (slug.clone(), None),
                _ => bail!(
                    "Expected release or series slug '{slug}' to be in format 'name[/version]'"
                ),
            };
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            confirm(out, global)?;
            delete_release(out, &client, &name, version.as_deref(), force)
        }
    }
}

/// `name/version`, both non-empty.
fn split_slug(slug: &str, kind: &str) -> anyhow::Result<(String, String)> {
    match slug.split_once('/') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() && !v.contains('/') => {
            Ok((n.to_string(), v.to_string()))
        }
        _ => bail!("Expected {kind} slug '{slug}' to be in format 'name/version'"),
    }
}

/// The canonical semi-semantic form of a version, or the text itself.
fn canonical_version(v: &str) -> String {
    Version::parse(v)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| v.to_string())
}

/// Semi-semantic order, falling back to text order for unparseable versions.
fn version_cmp(a: &str, b: &str) -> Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

fn is_remote(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// A file removed when dropped (the trimmed release tarball).
struct TempFile(PathBuf);

impl TempFile {
    fn new(stem: &str) -> TempFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        TempFile(
            std::env::temp_dir().join(format!("bosh-rs-{stem}-{}-{nanos}.tgz", std::process::id())),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Stemcells

fn upload_stemcell(
    out: &mut Out,
    client: &DirectorClient,
    url: &str,
    sha1: Option<String>,
    name: Option<String>,
    version: Option<String>,
    fix: bool,
) -> anyhow::Result<()> {
    if is_remote(url) {
        let name = name.unwrap_or_default();
        let version = version.map(|v| canonical_version(&v)).unwrap_or_default();
        if !stemcell_needed(out, client, &name, &version, fix)? {
            return Ok(());
        }
        let task = client.upload_stemcell_url(url, sha1.as_deref().unwrap_or_default(), fix)?;
        return task_track(out, client, &task, true);
    }
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    let manifest =
        bosh_release::stemcell::read_stemcell_manifest(path).context("Retrieving stemcell info")?;
    let name = manifest.name.unwrap_or_default();
    let version = manifest.version.unwrap_or_default();
    if !stemcell_needed(out, client, &name, &version, fix)? {
        return Ok(());
    }
    if let Err(e) = std::fs::File::open(path) {
        return Err(anyhow::Error::new(e).context("Opening stemcell"));
    }
    let task = client.upload_stemcell_file(path, fix)?;
    task_track(out, client, &task, true)
}

fn stemcell_needed(
    out: &mut Out,
    client: &DirectorClient,
    name: &str,
    version: &str,
    fix: bool,
) -> anyhow::Result<bool> {
    if fix {
        return Ok(true);
    }
    if !client.stemcell_needs_upload(name, version)? {
        out.line(format!("Stemcell '{name}/{version}' already exists."));
        return Ok(false);
    }
    Ok(true)
}

fn stemcells(out: &mut Out, client: &DirectorClient) -> anyhow::Result<()> {
    let mut list = client.stemcells().context("Finding stemcells")?;
    list.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then_with(|| version_cmp(&b.version, &a.version))
    });
    let rows = list
        .iter()
        .map(|s| {
            let mark = if s.deployments.is_empty() { "" } else { "*" };
            vec![
                s.name.clone(),
                format!("{}{mark}", s.version),
                s.operating_system.clone(),
                s.cpi.clone(),
                s.cid.clone(),
            ]
        })
        .collect();
    out.table(
        &Table {
            content: "stemcells".into(),
            header: ["Name", "Version", "OS", "CPI", "CID"]
                .map(String::from)
                .to_vec(),
            rows,
            notes: vec!["(*) Currently deployed".into()],
        },
        &TableOptions::default(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Releases

struct UploadReleaseOpts {
    sha1: String,
    name: String,
    version: String,
    fix: bool,
    rebase: bool,
}

fn upload_release(
    out: &mut Out,
    client: &DirectorClient,
    url: Option<&str>,
    dir: &Path,
    opts: &UploadReleaseOpts,
) -> anyhow::Result<()> {
    if let Some(u) = url.filter(|u| is_remote(u)) {
        if !release_needed(out, client, opts)? {
            return Ok(());
        }
        let task = client.upload_release_url(u, &opts.sha1, opts.rebase, opts.fix)?;
        return task_track(out, client, &task, true);
    }
    let path = url.map(|u| PathBuf::from(u.strip_prefix("file://").unwrap_or(u)));
    match path {
        Some(p) if !p.is_dir() => {
            if !release_needed(out, client, opts)? {
                return Ok(());
            }
            upload_release_tarball(out, client, &p, opts)
        }
        other => {
            let release_dir = other.unwrap_or_else(|| dir.to_path_buf());
            upload_release_dir(out, client, &release_dir, opts)
        }
    }
}

/// The pre-check: the release counts as present only if every package has a blob.
fn release_needed(
    out: &mut Out,
    client: &DirectorClient,
    opts: &UploadReleaseOpts,
) -> anyhow::Result<bool> {
    if opts.fix {
        return Ok(true);
    }
    let releases = client.releases().context("Finding releases")?;
    let listed = releases.iter().any(|r| {
        r.name == opts.name && r.release_versions.iter().any(|v| v.version == opts.version)
    });
    if !listed {
        return Ok(true);
    }
    let inspect = client.release_inspect(&opts.name, &opts.version)?;
    if inspect.packages.iter().all(|p| !p.blobstore_id.is_empty()) {
        out.line(format!(
            "Release '{}/{}' already exists.",
            opts.name, opts.version
        ));
        return Ok(false);
    }
    Ok(true)
}

/// `/packages/matches`, then the tarball rebuilt without the matched packages. A tarball
/// that does not read locally is sent untouched, for the director to judge.
fn upload_release_tarball(
    out: &mut Out,
    client: &DirectorClient,
    path: &Path,
    opts: &UploadReleaseOpts,
) -> anyhow::Result<()> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(anyhow::Error::new(e).context(format!("Reading release '{}'", path.display())));
    }
    let read = bosh_release::tarball_read::read_release_tarball(path);
    let Ok(release) = read else {
        let task = client.upload_release_file(path, opts.rebase, opts.fix)?;
        return task_track(out, client, &task, true);
    };
    let compiled = release.packages.is_empty() && !release.compiled_packages.is_empty();
    let skip: Vec<String> = if opts.fix {
        Vec::new()
    } else {
        // The official CLI ignores matching errors and sends everything.
        client
            .match_packages(&release.manifest_text, compiled)
            .unwrap_or_default()
    };
    let trimmed = TempFile::new("release");
    let tarball = bosh_release::tarball_write::ReleaseTarball {
        manifest: &release.manifest,
        jobs: release
            .jobs
            .iter()
            .map(|j| (j.reference.name.clone(), j.path.clone()))
            .collect(),
        packages: release
            .packages
            .iter()
            .filter(|p| !skip.contains(&p.reference.fingerprint))
            .filter_map(|p| Some((p.reference.name.clone(), p.path.clone()?)))
            .collect(),
        compiled_packages: release
            .compiled_packages
            .iter()
            .filter(|p| !skip.contains(&p.reference.fingerprint))
            .filter_map(|p| Some((p.reference.name.clone(), p.path.clone()?)))
            .collect(),
        license: release.license.as_ref().map(|l| l.path.clone()),
    };
    tracing::debug!(
        "uploading release tarball with {} of {} packages ({} matched on the director)",
        tarball.packages.len() + tarball.compiled_packages.len(),
        release.packages.len() + release.compiled_packages.len(),
        skip.len()
    );
    bosh_release::tarball_write::write_release_tarball(&tarball, &trimmed.0)
        .context("Writing release tarball")?;
    drop(release);
    let task = client.upload_release_file(&trimmed.0, opts.rebase, opts.fix)?;
    task_track(out, client, &task, true)
}

/// A release directory: a dev release is created as `create-release` does, then uploaded.
fn upload_release_dir(
    out: &mut Out,
    client: &DirectorClient,
    dir: &Path,
    opts: &UploadReleaseOpts,
) -> anyhow::Result<()> {
    use bosh_release::create::{CreateOptions, create_release};
    let release_dir = bosh_release::release_dir::ReleaseDir::new(dir);
    let cache = bosh_release::index::ArchiveCache::from_home();
    let create_opts = CreateOptions {
        name: (!opts.name.is_empty()).then(|| opts.name.clone()),
        version: (!opts.version.is_empty())
            .then(|| Version::parse(&opts.version))
            .transpose()
            .map_err(|e| anyhow::anyhow!("Parsing version '{}': {e}", opts.version))?,
        ..CreateOptions::default()
    };
    let mut lines = Vec::new();
    let created = create_release(&release_dir, cache, &create_opts, &mut |l| {
        lines.push(l.to_string())
    });
    for l in lines {
        out.line(l);
    }
    let release = created?;
    let tarball = TempFile::new("dev-release");
    release
        .write_tarball(&tarball.0)
        .context("Writing release tarball")?;
    upload_release_tarball(out, client, &tarball.0, opts)
}

fn releases(out: &mut Out, client: &DirectorClient) -> anyhow::Result<()> {
    let list = client.releases().context("Finding releases")?;
    let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
    for r in &list {
        for v in &r.release_versions {
            let mark = if v.currently_deployed { "*" } else { "" };
            let plus = if v.uncommitted_changes { "+" } else { "" };
            rows.push((
                r.name.clone(),
                v.version.clone(),
                vec![
                    r.name.clone(),
                    format!("{}{mark}", v.version),
                    format!("{}{plus}", v.commit_hash),
                ],
            ));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| version_cmp(&b.1, &a.1)));
    out.table(
        &Table {
            content: "releases".into(),
            header: ["Name", "Version", "Commit Hash"]
                .map(String::from)
                .to_vec(),
            rows: rows.into_iter().map(|r| r.2).collect(),
            notes: vec![
                "(*) Currently deployed".into(),
                "(+) Uncommitted changes".into(),
            ],
        },
        &TableOptions::default(),
    );
    Ok(())
}

/// Links as the reference CLI shows them: it decodes each into `{name, type, optional}` and
/// prints that as YAML in field order, `optional` only when true; an empty list is blank.
fn links_cell(v: &serde_json::Value) -> String {
    let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let links = items
        .iter()
        .map(|item| {
            let text = |k: &str| item[k].as_str().unwrap_or_default().to_owned();
            let mut m = bosh_yaml::Mapping::new();
            m.insert("name".into(), text("name").into());
            m.insert("type".into(), text("type").into());
            if item["optional"].as_bool() == Some(true) {
                m.insert("optional".into(), true.into());
            }
            bosh_yaml::Value::Map(m)
        })
        .collect::<Vec<_>>();
    bosh_yaml::to_string(&bosh_yaml::Value::Seq(links))
        .trim()
        .to_owned()
}

fn job_row(j: &InspectJob) -> Vec<String> {
    vec![
        format!("{}/{}", j.name, j.fingerprint),
        j.blobstore_id.clone(),
        j.sha1.clone(),
        links_cell(&j.consumes),
        links_cell(&j.provides),
    ]
}

fn inspect_tables(out: &mut Out, inspect: &ReleaseInspect) {
    let sorted = TableOptions {
        sort_by: vec![(0, true)],
        ..TableOptions::default()
    };
    out.table(
        &Table {
            content: "jobs".into(),
            header: [
                "Job",
                "Blobstore ID",
                "Digest",
                "Links Consumed",
                "Links Provided",
            ]
            .map(String::from)
            .to_vec(),
            rows: inspect.jobs.iter().map(job_row).collect(),
            notes: vec![],
        },
        &sorted,
    );
    let mut packages: Vec<_> = inspect.packages.iter().collect();
    packages.sort_by(|a, b| {
        format!("{}/{}", a.name, a.fingerprint).cmp(&format!("{}/{}", b.name, b.fingerprint))
    });
    let mut rows = Vec::new();
    for p in packages {
        let first = format!("{}/{}", p.name, p.fingerprint);
        rows.push(vec![
            first.clone(),
            "(source)".into(),
            p.blobstore_id.clone(),
            p.sha1.clone(),
        ]);
        for cp in &p.compiled_packages {
            rows.push(vec![
                first.clone(),
                cp.stemcell.clone(),
                cp.blobstore_id.clone(),
                cp.sha1.clone(),
            ]);
        }
    }
    out.table(
        &Table {
            content: "packages".into(),
            header: ["Package", "Compiled for", "Blobstore ID", "Digest"]
                .map(String::from)
                .to_vec(),
            rows,
            notes: vec![],
        },
        &TableOptions::default(),
    );
}

fn delete_release(
    out: &mut Out,
    client: &DirectorClient,
    name: &str,
    version: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let exists = |client: &DirectorClient| -> anyhow::Result<bool> {
        let list = client.releases().context("Finding releases")?;
        Ok(list.iter().any(|r| {
            r.name == name
                && match version {
                    Some(v) => r.release_versions.iter().any(|rv| rv.version == v),
                    None => true,
                }
        }))
    };
    if !exists(client)? {
        match version {
            Some(v) => out.line(format!("Release '{name}/{v}' does not exist.")),
            None => out.line(format!("Release '{name}' does not exist.")),
        }
        return Ok(());
    }
    let res = client
        .delete_release(name, version, force)
        .map_err(anyhow::Error::from)
        .and_then(|t| task_track(out, client, &t, true));
    if let Err(e) = res
        && exists(client).unwrap_or(true)
    {
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_semi_semantically() {
        assert_eq!(version_cmp("1.0.0", "0+dev.1"), Ordering::Greater);
        assert_eq!(version_cmp("10", "9"), Ordering::Greater);
        assert_eq!(canonical_version("0+dev.1"), "0+dev.1");
    }

    #[test]
    fn links_render_as_yaml() {
        let v = serde_json::json!([{"name": "kv", "type": "kv"}]);
        assert_eq!(links_cell(&v), "- name: kv\n  type: kv");
        assert_eq!(links_cell(&serde_json::Value::Null), "");
    }

    #[test]
    fn slugs() {
        assert!(split_slug("a/1", "release").is_ok());
        assert!(split_slug("a", "release").is_err());
        assert!(split_slug("a/", "stemcell").is_err());
    }
}
