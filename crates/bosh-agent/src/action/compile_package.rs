//! `compile_package(blobstore_id, sha1, name, version, dependencies)` (async, §9): installs
//! the direct dependencies, unpacks the source, runs `packaging` with the `BOSH_*`
//! environment, then tars the install target and uploads it.
//! Result `{"result": {"blobstore_id", "sha1"}}` where `sha1` is the bare hex sha1 of the
//! uploaded tarball.

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::Agent;
use crate::applier;
use crate::blobstore::BlobstoreClient;
use crate::layout::{DEFAULT_BASE, Layout};
use bosh_agent_protocol::PackageSpec;
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::{Digest as _, Sha1};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "compile_package",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

/// How much of the script's stdout/stderr the failure message keeps (the tail).
const OUTPUT_TAIL: usize = 10 * 1024;

#[derive(Debug, Deserialize)]
struct Dependency {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    sha1: String,
    #[serde(default)]
    blobstore_id: String,
}

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let blobstore_id: String = inv.args.get(0, 5)?;
        let sha1: String = inv.args.get(1, 5)?;
        let name: String = inv.args.get(2, 5)?;
        let version: String = inv.args.get(3, 5)?;
        let raw_deps: Option<BTreeMap<String, Value>> = inv.args.get(4, 5)?;
        let mut deps = Vec::new();
        for (key, v) in raw_deps.unwrap_or_default() {
            let folded = bosh_agent_protocol::arguments::fold_keys(
                v,
                &["name", "version", "sha1", "blobstore_id"],
            );
            let mut dep: Dependency = serde_json::from_value(folded)
                .map_err(|e| ActionError::msg(format!("Decoding argument 4: {e}")))?;
            if dep.name.is_empty() {
                dep.name = key;
            }
            deps.push(dep);
        }
        let blobstore = agent
            .blobstore()?
            .ok_or_else(|| ActionError::msg("Compiling package: no blobstore configured"))?;
        let layout = agent.layout.clone();
        uninstall_packages(&layout);
        let result = compile(
            &layout,
            &blobstore,
            &blobstore_id,
            &sha1,
            &name,
            &version,
            &deps,
        )
        .await;
        uninstall_packages(&layout);
        let _ = std::fs::remove_dir_all(layout.compile_dir(&name));
        let (id, digest) = result?;
        Ok(json!({"result": {"blobstore_id": id, "sha1": digest}}))
    })
}

fn uninstall_packages(layout: &Layout) {
    let _ = std::fs::remove_dir_all(layout.packages());
    let _ = std::fs::remove_dir_all(layout.data().join("packages"));
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ActionError {
    let msg = format!("{what} {}", path.display());
    move |e| ActionError::msg(format!("{msg}: {e}"))
}

async fn compile(
    layout: &Layout,
    bs: &BlobstoreClient,
    blobstore_id: &str,
    sha1: &str,
    name: &str,
    version: &str,
    deps: &[Dependency],
) -> Result<(String, String), ActionError> {
    let tmp = layout.tmp();
    std::fs::create_dir_all(&tmp).map_err(io_err("Creating", &tmp))?;
    for dep in deps {
        let spec = PackageSpec {
            name: dep.name.clone(),
            version: dep.version.clone(),
            ..Default::default()
        };
        let bundle = applier::package_bundle(layout, &spec);
        fetch_unpack(bs, &dep.blobstore_id, &dep.sha1, &bundle, &tmp)
            .await
            .map_err(|e| {
                ActionError::msg(format!("Installing dependent packages: {}", chain(&e)))
            })?;
        applier::replace_symlink(&bundle, &layout.packages().join(&dep.name))?;
    }

    let compile_dir = layout.compile_dir(name);
    let _ = std::fs::remove_dir_all(&compile_dir);
    fetch_unpack(bs, blobstore_id, sha1, &compile_dir, &tmp)
        .await
        .map_err(|e| ActionError::msg(format!("Fetching package {name}: {}", chain(&e))))?;

    let install = applier::package_bundle(
        layout,
        &PackageSpec {
            name: name.to_owned(),
            version: version.to_owned(),
            ..Default::default()
        },
    );
    let _ = std::fs::remove_dir_all(&install);
    std::fs::create_dir_all(&install).map_err(io_err("Creating", &install))?;
    let install_target = layout.packages().join(name);
    applier::replace_symlink(&install, &install_target)?;

    if compile_dir.join("packaging").is_file() {
        run_packaging(layout, &compile_dir, &install_target, name, version).await?;
    }

    let tarball = tmp.join(format!("compiled-{}.tgz", uuid::Uuid::new_v4()));
    let result = async {
        let (src, dest) = (install.clone(), tarball.clone());
        tokio::task::spawn_blocking(move || tgz_dir(&src, &dest, |_| true))
            .await
            .map_err(|e| ActionError::msg(e.to_string()))?
            .map_err(|e| ActionError::msg(format!("Compressing compiled package: {e}")))?;
        let digest = sha1_file(&tarball)?;
        let id = bs
            .put(&tarball)
            .await
            .map_err(|e| ActionError::msg(format!("Uploading compiled package: {}", chain(&e))))?;
        Ok((id, digest))
    }
    .await;
    let _ = std::fs::remove_file(&tarball);
    result
}

/// Downloads and verifies a blob, then unpacks it into `dest` via a sibling temp dir.
async fn fetch_unpack(
    bs: &BlobstoreClient,
    id: &str,
    digest: &str,
    dest: &Path,
    tmp: &Path,
) -> Result<(), ActionError> {
    let blob = tmp.join(uuid::Uuid::new_v4().to_string());
    let result = async {
        bs.fetch(id, digest, &blob).await?;
        let staging = dest.with_extension("partial");
        let _ = std::fs::remove_dir_all(&staging);
        let (b, s) = (blob.clone(), staging.clone());
        tokio::task::spawn_blocking(move || applier::unpack(&b, &s))
            .await
            .map_err(|e| ActionError::msg(e.to_string()))??;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::rename(&staging, dest).map_err(io_err("Installing", dest))
    }
    .await;
    let _ = std::fs::remove_file(&blob);
    result
}

async fn run_packaging(
    layout: &Layout,
    compile_dir: &Path,
    install_target: &Path,
    name: &str,
    version: &str,
) -> Result<(), ActionError> {
    let log_dir = layout.data_sys().join("log").join("compilation");
    std::fs::create_dir_all(&log_dir).map_err(io_err("Creating", &log_dir))?;
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args(["-x", "packaging"])
        .current_dir(compile_dir)
        .env("BOSH_COMPILE_TARGET", compile_dir)
        .env("BOSH_INSTALL_TARGET", install_target)
        .env("BOSH_PACKAGE_NAME", name)
        .env("BOSH_PACKAGE_VERSION", version)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if layout.base() != Path::new(DEFAULT_BASE) {
        cmd.env("BOSH_PACKAGES_DIR", layout.packages());
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| ActionError::msg(format!("Running packaging script: {e}")))?;
    let _ = std::fs::write(log_dir.join("packaging.stdout.log"), &out.stdout);
    let _ = std::fs::write(log_dir.join("packaging.stderr.log"), &out.stderr);
    if !out.status.success() {
        let code = out
            .status
            .code()
            .map_or_else(|| "a signal".to_owned(), |c| c.to_string());
        return Err(ActionError::msg(format!(
            "Compiling package {name}: Running packaging script: Command exited with {code}; Stdout: {}, Stderr: {}",
            tail(&out.stdout),
            tail(&out.stderr)
        )));
    }
    Ok(())
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() <= OUTPUT_TAIL {
        return s.into_owned();
    }
    let mut start = s.len() - OUTPUT_TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

pub(crate) fn sha1_file(path: &Path) -> Result<String, ActionError> {
    let mut file = std::fs::File::open(path).map_err(io_err("Opening", path))?;
    let mut hasher = Sha1::new();
    std::io::copy(&mut file, &mut hasher).map_err(io_err("Reading", path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Writes a gzipped tarball of the files under `dir` (paths `./rel`) for which `keep(rel)`
/// holds; directories are added as needed. Symlinks are stored as links.
pub(crate) fn tgz_dir(
    dir: &Path,
    dest: &Path,
    keep: impl Fn(&Path) -> bool,
) -> std::io::Result<()> {
    let file = std::fs::File::create(dest)?;
    let enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel: PathBuf = entry
            .path()
            .strip_prefix(dir)
            .map_err(std::io::Error::other)?
            .to_owned();
        let is_dir = entry.file_type().is_dir();
        if !is_dir && !keep(&rel) {
            continue;
        }
        let name = Path::new(".").join(&rel);
        if is_dir {
            tar.append_dir(&name, entry.path())?;
        } else {
            tar.append_path_with_name(entry.path(), &name)?;
        }
    }
    tar.into_inner()?.finish()?;
    Ok(())
}
