//! Shared fixtures for docker CPI tests: an engine (or a SKIP line), a unique name prefix,
//! a tiny busybox rootfs as the stemcell image, and a guard that removes everything carrying
//! the prefix, even when the test fails.
#![allow(dead_code)]

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use bosh_cpi::docker::{DockerAgentConfig, DockerCpiConfig, DockerEngineConfig};
use futures::StreamExt;
use std::io::Write;
use std::path::Path;

pub const BUSYBOX: &str = "/bin/busybox";

/// A connected engine, or `None` after printing why the test is skipped.
pub async fn engine(test: &str) -> Option<Docker> {
    let docker = match Docker::connect_with_unix_defaults() {
        Ok(d) => d,
        Err(e) => {
            println!("SKIP {test}: no Docker engine ({e})");
            return None;
        }
    };
    let docker = match docker.negotiate_version().await {
        Ok(d) => d,
        Err(e) => {
            println!("SKIP {test}: no Docker engine answers ({e})");
            return None;
        }
    };
    if let Err(e) = docker.ping().await {
        println!("SKIP {test}: no Docker engine answers ({e})");
        return None;
    }
    if !Path::new(BUSYBOX).is_file() {
        println!("SKIP {test}: {BUSYBOX} missing (install busybox-static)");
        return None;
    }
    Some(docker)
}

/// `bosh-rs-test-<random>-`.
pub fn unique_prefix() -> String {
    format!("bosh-rs-test-{:08x}-", rand::random::<u32>())
}

pub fn cpi_config(prefix: &str) -> DockerCpiConfig {
    let mut c = DockerCpiConfig::new(
        DockerEngineConfig::default(),
        DockerAgentConfig {
            mbus: "nats://nats:secret@127.0.0.1:4222".into(),
            ntp: vec!["time.example".into()],
            blobstore: None,
        },
    );
    c.name_prefix = prefix.to_owned();
    c.stop_timeout_secs = 5;
    c
}

/// The runit entry point of the test image: wait, exit promptly on TERM.
const RUNSVDIR_START: &str = "#!/bin/sh\ntrap 'exit 0' TERM\necho started >> /var/vcap/data/boots\nwhile :; do /bin/sleep 1; done\n";

/// A gzipped rootfs: static busybox with its applets linked in `/bin`, the `/var/vcap`
/// skeleton, and `/usr/sbin/runsvdir-start`.
pub fn write_test_image(dest: &Path) {
    let applets = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets = String::from_utf8(applets.stdout).unwrap();
    let file = std::fs::File::create(dest).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let dir = |tar: &mut tar::Builder<_>, path: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    for d in [
        "bin/",
        "etc/",
        "tmp/",
        "proc/",
        "sys/",
        "dev/",
        "usr/",
        "usr/sbin/",
        "var/",
        "var/vcap/",
        "var/vcap/bosh/",
        "var/vcap/data/",
    ] {
        dir(&mut tar, d);
    }
    let bytes = std::fs::read(BUSYBOX).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bytes.len() as u64);
    tar.append_data(&mut h, "bin/busybox", bytes.as_slice())
        .unwrap();
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet == "busybox" {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(RUNSVDIR_START.len() as u64);
    tar.append_data(&mut h, "usr/sbin/runsvdir-start", RUNSVDIR_START.as_bytes())
        .unwrap();
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(0);
        tar.append_data(&mut h, f, std::io::empty()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// Runs `cmd` in the container; returns (exit code, stdout+stderr).
pub async fn exec(docker: &Docker, container: &str, cmd: &[&str]) -> (i64, String) {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut text = String::new();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, None).await.unwrap()
    {
        while let Some(chunk) = output.next().await {
            text.push_str(&chunk.unwrap().to_string());
        }
    }
    let code = docker
        .inspect_exec(&created.id)
        .await
        .unwrap()
        .exit_code
        .unwrap_or(-1);
    (code, text)
}

/// Names of everything on the engine that carries `prefix`.
pub async fn leftovers(docker: &Docker, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for c in containers {
        for name in c.names.unwrap_or_default() {
            if name.contains(prefix) {
                out.push(format!("container {name}"));
            }
        }
    }
    let volumes = docker
        .list_volumes(None::<ListVolumesOptions>)
        .await
        .ok()
        .and_then(|v| v.volumes)
        .unwrap_or_default();
    for v in volumes {
        if v.name.contains(prefix) {
            out.push(format!("volume {}", v.name));
        }
    }
    let networks = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .unwrap_or_default();
    for n in networks {
        if let Some(name) = n.name.filter(|n| n.contains(prefix)) {
            out.push(format!("network {name}"));
        }
    }
    let images = docker
        .list_images(Some(ListImagesOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for i in images {
        for tag in i.repo_tags {
            if tag.contains(prefix) {
                out.push(format!("image {tag}"));
            }
        }
    }
    out
}

async fn remove_all(docker: &Docker, prefix: &str) {
    for item in leftovers(docker, prefix).await {
        let (kind, name) = item.split_once(' ').unwrap();
        let name = name.trim_start_matches('/');
        match kind {
            "container" => {
                let _ = docker
                    .remove_container(
                        name,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            }
            "image" => {
                let _ = docker
                    .remove_image(
                        name,
                        Some(RemoveImageOptions {
                            force: true,
                            noprune: false,
                        }),
                        None,
                    )
                    .await;
            }
            _ => {}
        }
    }
    // Volumes and networks once the containers using them are gone.
    for item in leftovers(docker, prefix).await {
        let (kind, name) = item.split_once(' ').unwrap();
        match kind {
            "volume" => {
                let _ = docker
                    .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
                    .await;
            }
            "network" => {
                let _ = docker.remove_network(name).await;
            }
            _ => {}
        }
    }
}

/// Removes everything carrying the prefix when dropped (also on panic).
pub struct Cleanup {
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        // Drop may run inside a runtime: clean up from a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(docker) = Docker::connect_with_unix_defaults()
                    && let Ok(docker) = docker.negotiate_version().await
                {
                    remove_all(&docker, &prefix).await;
                }
            });
        })
        .join();
    }
}

/// A random /24 in 10.128.0.0/9, unlikely to collide with other tests' networks.
pub fn random_subnet() -> (String, String, String) {
    let a = 128 + rand::random::<u8>() % 120;
    let b = rand::random::<u8>();
    (
        format!("10.{a}.{b}.10"),
        format!("10.{a}.{b}.1"),
        format!("10.{a}.{b}.0/24"),
    )
}
