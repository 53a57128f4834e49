//! `bosh-rs errands` and `bosh-rs run-errand` against a real director on the sim CPI (VMs are
//! real `bosh-agent` processes): the errand list, the transposed result table, an errand's
//! non-zero exit code failing the command as the official CLI does, and `--download-logs`.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CLOUD_CONFIG: &str = r#"
azs: [{name: z1}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.95.0.0/24
    gateway: 127.95.0.1
    reserved: [127.95.0.2 - 127.95.0.9]
    azs: [z1]
compilation:
  workers: 1
  network: default
  az: z1
  vm_type: small
"#;

/// Two dedicated errand groups running the same job: one exits 0, one exits 5.
const MANIFEST: &str = r#"
name: dep
releases: [{name: smokers, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 100-10000
  update_watch_time: 100-10000
instance_groups:
- name: passes
  lifecycle: errand
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: smoke, release: smokers, properties: {message: fine, exit_code: 0}}
- name: fails
  lifecycle: errand
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - {name: smoke, release: smokers, properties: {message: broken, exit_code: 5}}
"#;

const SMOKE_SPEC: &str = "---\nname: smoke\ntemplates:\n  run.erb: bin/run\npackages: []\nproperties:\n  message: {default: hello}\n  exit_code: {default: 0}\n";

const SMOKE_RUN: &str = r#"#!/bin/bash
mkdir -p /var/vcap/sys/log/smoke
echo "smoke says <%= p('message') %>" | tee -a /var/vcap/sys/log/smoke/run.log
echo "smoke complains" >&2
exit <%= p('exit_code') %>
"#;

/// `bosh-agent`, built into this test's target dir.
fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target = profile.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "bosh-agent",
        "--bin",
        "bosh-agent",
    ])
    .arg("--target-dir")
    .arg(target)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile.file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().unwrap();
    let path = profile.join("bosh-agent");
    assert!(
        path.is_file(),
        "building bosh-agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// An in-process director on the sim CPI whose VMs run `agent`.
fn director_with_agents(agent: &Path) -> (String, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let data_dir = dir.clone();
    let agent = agent.display().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut opts = bosh_director::server::DirectorOptions::new(
                data_dir,
                "127.0.0.1:0",
                "sim",
                bosh_director::config::DirectorConfig::default(),
            );
            opts.agent_command = Some(vec![agent]);
            let d = bosh_director::server::director_start(opts).await.unwrap();
            let _ = tx.send(d.url.clone());
            let _ = d.wait().await;
        });
    });
    let url = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("director did not start");
    (url, dir, tmp)
}

/// A dev release `smokers` with one errand job (nothing to compile).
fn release_tarball(work: &Path) -> PathBuf {
    let rel = work.join("smokers");
    let job = rel.join("jobs/smoke");
    std::fs::create_dir_all(job.join("templates")).unwrap();
    std::fs::create_dir_all(rel.join("packages")).unwrap();
    std::fs::create_dir_all(rel.join("config")).unwrap();
    std::fs::write(rel.join("config/final.yml"), "---\nname: smokers\n").unwrap();
    std::fs::write(job.join("spec"), SMOKE_SPEC).unwrap();
    std::fs::write(job.join("monit"), "").unwrap();
    std::fs::write(job.join("templates/run.erb"), SMOKE_RUN).unwrap();
    let dir = bosh_release::release_dir::ReleaseDir::new(&rel);
    let cache = bosh_release::index::ArchiveCache::new(work.join("cache"));
    let opts = bosh_release::create::CreateOptions {
        name: Some("smokers".to_owned()),
        force: true,
        ..Default::default()
    };
    let release = bosh_release::create::create_release(&dir, cache, &opts, &mut |_| {}).unwrap();
    let out = work.join("smokers.tgz");
    release.write_tarball(&out).unwrap();
    out
}

/// Kills whatever still runs under the sim CPI's root (agents, jobs) when the test ends.
struct Killer(PathBuf);

impl Drop for Killer {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        let me = std::process::id().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let pid = e.file_name().to_string_lossy().to_string();
            if pid == me || !pid.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
    }
}

#[test]
fn run_errand_passes_exit_codes_through() {
    let agent = agent_bin();
    let (url, dir, _tmp) = director_with_agents(&agent);
    let _killer = Killer(dir.join("sim-cpi"));
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { home: home.path() };
    let ca = dir.join("ca.crt");
    let password = admin_password(&dir);
    let env = [
        ("BOSH_ENVIRONMENT", url.as_str()),
        ("BOSH_CA_CERT", ca.to_str().unwrap()),
        ("BOSH_CLIENT", "admin"),
        ("BOSH_CLIENT_SECRET", password.as_str()),
        ("BOSH_DEPLOYMENT", "dep"),
    ];
    let run = |args: &[&str]| cli.run_env(args, &env);

    let stemcell = work.path().join("stemcell.tgz");
    bosh_stemcell::sim::build_sim_stemcell(&bosh_stemcell::sim::SimStemcellOptions::new(&stemcell))
        .unwrap();
    ok(&run(&["upload-stemcell", stemcell.to_str().unwrap()]));
    let release = release_tarball(work.path());
    ok(&run(&["upload-release", release.to_str().unwrap()]));
    let cc = work.path().join("cc.yml");
    std::fs::write(&cc, CLOUD_CONFIG).unwrap();
    ok(&run(&["-n", "update-cloud-config", cc.to_str().unwrap()]));
    let m = work.path().join("m.yml");
    std::fs::write(&m, MANIFEST).unwrap();
    ok(&run(&["-n", "deploy", m.to_str().unwrap()]));

    // Errand groups and the job that runs as an errand, sorted by name.
    let out = ok(&run(&["errands"]));
    assert!(out.contains("Using deployment 'dep'"), "{out}");
    assert!(
        out.contains("\nName  \nfails  \npasses  \nsmoke  \n"),
        "{out}"
    );
    assert!(out.contains("\n3 errands\n"), "{out}");

    // A passing errand: a transposed table per instance, then success.
    let logs = tempfile::tempdir().unwrap();
    let out = ok(&run(&[
        "run-errand",
        "passes",
        "--download-logs",
        "--logs-dir",
        logs.path().to_str().unwrap(),
    ]));
    assert!(out.contains("Task "), "the task is followed: {out}");
    assert!(out.contains("Running errand"), "{out}");
    assert!(out.contains("\nInstance   passes/"), "{out}");
    assert!(out.contains("\nExit Code  0  \n"), "{out}");
    assert!(out.contains("\nStdout     smoke says fine  \n"), "{out}");
    assert!(out.contains("\nStderr     smoke complains  \n"), "{out}");
    assert!(out.contains("\n1 errand(s)\n"), "{out}");
    assert!(out.contains("Downloading resource '"), "{out}");
    assert!(out.ends_with("\nSucceeded\n"), "{out}");
    let tarballs: Vec<String> = std::fs::read_dir(logs.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(tarballs.len(), 1, "{tarballs:?}");
    assert!(
        tarballs[0].starts_with("passes-") && tarballs[0].ends_with(".tgz"),
        "{tarballs:?}"
    );
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(logs.path().join(&tarballs[0]))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("smoke/run.log"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );

    // A failing errand: the table shows its exit code and the command fails with it.
    let (out, err) = fails(&run(&["run-errand", "fails"]));
    assert!(out.contains("\nExit Code  5  \n"), "{out}");
    assert!(out.contains("\nStdout     smoke says broken  \n"), "{out}");
    assert!(
        err.starts_with("Errand 'fails' completed with error (exit code 5)"),
        "{err}"
    );

    // An unknown errand fails the task.
    let (_, err) = fails(&run(&["run-errand", "nope"]));
    assert!(err.starts_with("Running errand 'nope'"), "{err}");
}
