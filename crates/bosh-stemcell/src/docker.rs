//! The docker stemcell: a debootstrapped Debian rootfs (cached, keyed by suite, mirror and
//! package list) plus a small layer with our agent, its config, the `/var/vcap` skeleton and
//! `/usr/sbin/runsvdir-start` (the entry point the docker CPI execs, as for real stemcells).
//!
//! The `image` is two concatenated gzip members: the cached base (a tar stream without its
//! end-of-archive marker) and the agent layer (ending the archive). gzip readers, including
//! Docker's, read concatenated members as one stream, so a rebuild only packs the layer.

use crate::pack::{now, sha1_file, write_stemcell_tarball};
use crate::{BuiltStemcell, DOCKER_STEMCELL_FORMATS, StemcellBuildError, io_err};
use bosh_types::stemcell::StemcellManifest;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Packages on top of `minbase`: a shell and process tools for jobs, and what BOSH packaging
/// scripts need to compile C.
pub const DEFAULT_PACKAGES: [&str; 15] = [
    "bash",
    "procps",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "netbase",
    "gcc",
    "g++",
    "make",
    "libc6-dev",
    "patch",
    "xz-utils",
    "bzip2",
    "file",
    "curl",
];

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Bump when the base build steps change, so caches from older steps are not reused.
const BASE_REVISION: &str = "bosh-rs-docker-base-1";

#[derive(Debug, Clone)]
pub struct DockerStemcellOptions {
    pub output: PathBuf,
    /// The `bosh-agent` executable copied into the image.
    pub agent: PathBuf,
    pub name: String,
    pub version: String,
    /// Debian suite, e.g. `bookworm`.
    pub suite: String,
    pub mirror: String,
    pub packages: Vec<String>,
    pub cache_dir: PathBuf,
}

impl DockerStemcellOptions {
    pub fn new(output: impl Into<PathBuf>, agent: impl Into<PathBuf>) -> Self {
        Self {
            output: output.into(),
            agent: agent.into(),
            name: "bosh-docker-debian-bookworm-go_agent".to_owned(),
            version: "1".to_owned(),
            suite: "bookworm".to_owned(),
            mirror: DEFAULT_MIRROR.to_owned(),
            packages: DEFAULT_PACKAGES.iter().map(|s| s.to_string()).collect(),
            cache_dir: crate::default_cache_dir(),
        }
    }

    pub fn operating_system(&self) -> String {
        format!("debian-{}", self.suite)
    }

    /// The cache entry for this suite, mirror and package set.
    pub fn base_dir(&self) -> PathBuf {
        let mut packages = self.packages.clone();
        packages.sort();
        packages.dedup();
        let mut h = Sha256::new();
        for part in [
            BASE_REVISION,
            &self.suite,
            &self.mirror,
            &packages.join(","),
        ] {
            h.update(part.as_bytes());
            h.update(b"\n");
        }
        let key = hex::encode(h.finalize());
        self.cache_dir
            .join(format!("debian-{}-{}", self.suite, &key[..16]))
    }
}

pub fn build_docker_stemcell(
    opts: &DockerStemcellOptions,
) -> Result<BuiltStemcell, StemcellBuildError> {
    if !opts.agent.is_file() {
        return Err(StemcellBuildError::AgentMissing(opts.agent.clone()));
    }
    let base_dir = opts.base_dir();
    let base = base_dir.join("base.tar.gz");
    let cache_hit = base.is_file();
    if cache_hit {
        tracing::info!(base = %base.display(), "using cached base rootfs");
    } else {
        build_base(opts, &base_dir)?;
    }
    let work = tempfile::tempdir_in(&opts.cache_dir)
        .map_err(io_err("creating a dir in", &opts.cache_dir))?;
    let image = work.path().join("image");
    {
        let mut out = std::fs::File::create(&image).map_err(io_err("creating", &image))?;
        let mut input = std::fs::File::open(&base).map_err(io_err("opening", &base))?;
        std::io::copy(&mut input, &mut out).map_err(io_err("copying", &base))?;
        write_agent_layer(opts, &mut out).map_err(io_err("writing", &image))?;
        out.flush().map_err(io_err("writing", &image))?;
    }
    let sha1 = sha1_file(&image)?;
    let manifest = StemcellManifest {
        name: Some(opts.name.clone()),
        version: Some(opts.version.clone()),
        operating_system: Some(opts.operating_system()),
        sha1: Some(sha1.clone()),
        bosh_protocol: None,
        api_version: Some(3),
        stemcell_formats: DOCKER_STEMCELL_FORMATS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        cloud_properties: bosh_yaml::Mapping::new(),
    };
    write_stemcell_tarball(&opts.output, &manifest, &image)?;
    tracing::info!(output = %opts.output.display(), cache_hit, "docker stemcell written");
    Ok(BuiltStemcell {
        path: opts.output.clone(),
        name: opts.name.clone(),
        version: opts.version.clone(),
        sha1,
        cache_hit,
    })
}

/// `name` on PATH or in the sbin dirs (debootstrap lives in /usr/sbin).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(command: &mut Command, log: &Path) -> Result<(), StemcellBuildError> {
    let shown = format!("{command:?}");
    tracing::info!(command = %shown, "running");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err("opening", log))?;
    let err_file = log_file.try_clone().map_err(io_err("opening", log))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .status()
        .map_err(|e| StemcellBuildError::Command {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(StemcellBuildError::Command {
        command: shown,
        detail: format!("{status}; log {}:\n{}", log.display(), tail.join("\n")),
    })
}

/// Debootstraps the rootfs and stores it as `base.tar.gz` (a gzip member holding a tar
/// stream with no end-of-archive marker).
fn build_base(opts: &DockerStemcellOptions, base_dir: &Path) -> Result<(), StemcellBuildError> {
    let debootstrap = find_program("debootstrap").ok_or_else(|| {
        StemcellBuildError::Requirement("debootstrap (apt-get install debootstrap)".into())
    })?;
    for tool in ["tar", "gzip", "head", "chroot"] {
        if find_program(tool).is_none() {
            return Err(StemcellBuildError::Requirement(tool.into()));
        }
    }
    std::fs::create_dir_all(&opts.cache_dir).map_err(io_err("creating", &opts.cache_dir))?;
    let work = tempfile::Builder::new()
        .prefix("base-build-")
        .tempdir_in(&opts.cache_dir)
        .map_err(io_err("creating a dir in", &opts.cache_dir))?;
    let rootfs = work.path().join("rootfs");
    let log = opts.cache_dir.join("debootstrap.log");
    let _ = std::fs::remove_file(&log);
    tracing::info!(suite = %opts.suite, "debootstrapping (cached for later builds)");
    run(
        Command::new(&debootstrap)
            .arg("--variant=minbase")
            .arg(format!("--include={}", opts.packages.join(",")))
            .arg(&opts.suite)
            .arg(&rootfs)
            .arg(&opts.mirror),
        &log,
    )?;
    // The vcap user and group own job files; apt's caches are dead weight in an image.
    run(
        Command::new("chroot").arg(&rootfs).args([
            "/usr/sbin/useradd",
            "--create-home",
            "--user-group",
            "--shell",
            "/bin/bash",
            "vcap",
        ]),
        &log,
    )?;
    run(
        Command::new("chroot")
            .arg(&rootfs)
            .args(["apt-get", "clean"]),
        &log,
    )?;
    let lists = rootfs.join("var/lib/apt/lists");
    if lists.is_dir() {
        let _ = std::fs::remove_dir_all(&lists);
        let _ = std::fs::create_dir_all(lists.join("partial"));
    }
    // The image must not carry this host's resolver or name.
    let _ = std::fs::write(rootfs.join("etc/resolv.conf"), b"");
    let _ = std::fs::write(rootfs.join("etc/hostname"), b"localhost\n");

    let packed = work.path().join("base.tar.gz");
    // One-block records make the end-of-archive marker exactly the last 1024 bytes, which
    // `head` drops so the agent layer can continue the archive.
    let script = r#"set -o pipefail
tar --numeric-owner --one-file-system -b1 -C "$1" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -cf - . | head -c -1024 | gzip -6 > "$2""#;
    run(
        Command::new("bash")
            .args(["-c", script, "pack"])
            .arg(&rootfs)
            .arg(&packed),
        &log,
    )?;
    std::fs::create_dir_all(base_dir).map_err(io_err("creating", base_dir))?;
    let dest = base_dir.join("base.tar.gz");
    std::fs::rename(&packed, &dest).map_err(io_err("storing", &dest))?;
    let manifest = format!(
        "suite: {}\nmirror: {}\npackages: {}\n",
        opts.suite,
        opts.mirror,
        opts.packages.join(",")
    );
    let _ = std::fs::write(base_dir.join("base.txt"), manifest);
    Ok(())
}

/// The stemcell's entry point: supervise the agent (restarting it, as runit would) and stop
/// it on TERM. The CPI execs this with an empty environment.
const RUNSVDIR_START: &str = r#"#!/bin/bash
# bosh-rs docker stemcell: starts and supervises bosh-agent (runit's job on real stemcells).
export PATH=/var/vcap/bosh/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /var/vcap/bosh/log
agent=
trap '[ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null; wait; exit 0' TERM INT
while :; do
  /var/vcap/bosh/bin/bosh-agent -P ubuntu -C /var/vcap/bosh/agent.json \
    >>/var/vcap/bosh/log/current 2>&1 &
  agent=$!
  wait "$agent"
  sleep 1
done
"#;

/// The agent reads the docker CPI's settings file; disks are bind mounts of prepared dirs.
fn agent_json() -> String {
    serde_json::json!({
        "Platform": {"Linux": {
            "UsePreformattedPersistentDisk": true,
            "BindMountPersistentDisk": true,
            "SkipDiskSetup": true,
            "CreatePartitionIfNoEphemeralDisk": false,
        }},
        "Infrastructure": {"Settings": {
            "Sources": [{"Type": "File", "SettingsPath": "/var/vcap/bosh/warden-cpi-agent-env.json"}],
            "UseServerName": false,
            "UseRegistry": false,
        }},
    })
    .to_string()
}

/// The second gzip member: `/var/vcap`, the agent, its config and the entry point.
fn write_agent_layer(opts: &DockerStemcellOptions, out: &mut std::fs::File) -> std::io::Result<()> {
    // The agent binary dominates; fast compression keeps rebuilds quick.
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mtime = now();
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    for dir in [
        "var/vcap/",
        "var/vcap/bosh/",
        "var/vcap/bosh/bin/",
        "var/vcap/bosh/etc/",
        "var/vcap/bosh/log/",
        "var/vcap/data/",
        "var/vcap/store/",
        "var/vcap/jobs/",
        "var/vcap/packages/",
        "var/vcap/monit/",
        "var/vcap/instance/",
        "warden-cpi-dev/",
    ] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, dir, std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    tar.append_link(&mut h, "var/vcap/sys", "/var/vcap/data/sys")?;
    let mut file = |path: &str, mode: u32, bytes: &[u8]| {
        let mut h = header(tar::EntryType::Regular, mode, bytes.len() as u64);
        tar.append_data(&mut h, path, bytes)
    };
    file("var/vcap/bosh/agent.json", 0o644, agent_json().as_bytes())?;
    file(
        "var/vcap/bosh/etc/stemcell_version",
        0o644,
        opts.version.as_bytes(),
    )?;
    file(
        "var/vcap/bosh/etc/operating_system",
        0o644,
        opts.operating_system().as_bytes(),
    )?;
    file("usr/sbin/runsvdir-start", 0o755, RUNSVDIR_START.as_bytes())?;
    let mut agent = std::fs::File::open(&opts.agent)?;
    let size = agent.metadata()?.len();
    let mut h = header(tar::EntryType::Regular, 0o755, size);
    tar.append_data(&mut h, "var/vcap/bosh/bin/bosh-agent", &mut agent)?;
    let gz = tar.into_inner()?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_follows_the_package_set_not_its_order() {
        let mut a = DockerStemcellOptions::new("/tmp/x.tgz", "/tmp/agent");
        a.cache_dir = "/c".into();
        let mut b = a.clone();
        b.packages.reverse();
        assert_eq!(a.base_dir(), b.base_dir());
        b.packages.push("git".into());
        assert_ne!(a.base_dir(), b.base_dir());
        assert!(a.base_dir().starts_with("/c"));
        assert!(
            a.base_dir()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("debian-bookworm-")
        );
    }

    #[test]
    fn layer_continues_a_base_without_end_marker() {
        // A base member with one file and no end marker, then the layer: one tar stream.
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"#!/bin/sh\n").unwrap();
        let mut opts = DockerStemcellOptions::new(dir.path().join("out.tgz"), &agent);
        opts.cache_dir = dir.path().to_path_buf();
        let image = dir.path().join("image");
        let mut out = std::fs::File::create(&image).unwrap();
        {
            let mut gz = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            let mut tar_bytes = Vec::new();
            {
                let mut t = tar::Builder::new(&mut tar_bytes);
                let mut h = tar::Header::new_gnu();
                h.set_size(3);
                h.set_mode(0o644);
                t.append_data(&mut h, "etc/base-file", &b"abc"[..]).unwrap();
                t.finish().unwrap();
            }
            let len = tar_bytes.len();
            // Drop the end-of-archive marker, as the base build does.
            gz.write_all(&tar_bytes[..len - 1024]).unwrap();
            gz.finish().unwrap();
        }
        write_agent_layer(&opts, &mut out).unwrap();
        drop(out);
        let reader = flate2::read::MultiGzDecoder::new(std::fs::File::open(&image).unwrap());
        let mut archive = tar::Archive::new(reader);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.first().map(String::as_str), Some("etc/base-file"));
        assert!(names.contains(&"var/vcap/bosh/bin/bosh-agent".to_owned()));
        assert!(names.contains(&"usr/sbin/runsvdir-start".to_owned()));
    }
}
