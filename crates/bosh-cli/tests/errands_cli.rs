//! `bosh-rs errands` and `bosh-rs run-errand` against a real director on the sim CPI (VMs are
//! real `bosh-agent` processes): the errand list, the transposed result table, an errand's
//! non-zero exit code failing the command as the official CLI does, and `--download-logs`.

mod common;
use common::sim::*;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

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

#[test]
fn run_errand_passes_exit_codes_through() {
    let s = SimSession::deploy(smokers_tarball, &cloud_config("127.95.0"), MANIFEST);
    let run = |args: &[&str]| s.run(args);

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

/// A dev release `smokers` with one errand job (nothing to compile).
fn smokers_tarball(work: &Path) -> PathBuf {
    dev_release_tarball(
        work,
        "smokers",
        "smoke",
        SMOKE_SPEC,
        "",
        &[("run.erb", SMOKE_RUN)],
    )
}
