//! `bosh-rs cloud-check` against a real director on the sim CPI (VMs are real `bosh-agent`
//! processes): a deployment made with the CLI, a VM lost behind the director's back,
//! `cck --report` failing with the count, `-n` refusing to choose, `--auto` repairing it.
//! The official Go CLI (`BOSH_OFFICIAL_CLI`, else `~/.cache/bosh-rs/official-cli/bosh`) then
//! does the same against our director; without it that part prints a loud SKIP.

mod common;
use common::sim::*;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CLOUD_CONFIG: &str = r#"
azs: [{name: z1}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.94.0.0/24
    gateway: 127.94.0.1
    reserved: [127.94.0.2 - 127.94.0.9]
    azs: [z1]
compilation:
  workers: 1
  network: default
  az: z1
  vm_type: small
"#;

const MANIFEST: &str = r#"
name: dep
releases: [{name: sleepers, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 100-10000
  update_watch_time: 100-10000
instance_groups:
- name: sleeper
  instances: 2
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - name: sleeper
    release: sleepers
"#;

fn vm_cids(d_url: &str, ca: &Path, password: &str) -> Vec<String> {
    let pem = std::fs::read(ca).unwrap();
    let http = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let list: Vec<serde_json::Value> = http
        .get(format!("{d_url}/deployments/dep/vms"))
        .basic_auth("admin", Some(password))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut cids: Vec<String> = list
        .iter()
        .filter_map(|v| v["cid"].as_str().map(str::to_owned))
        .collect();
    cids.sort();
    cids
}

#[test]
fn cck_reports_and_repairs_a_lost_vm() {
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
    let release = sleepers_tarball(work.path());
    ok(&run(&["upload-release", release.to_str().unwrap()]));
    let cc = work.path().join("cc.yml");
    std::fs::write(&cc, CLOUD_CONFIG).unwrap();
    ok(&run(&["-n", "update-cloud-config", cc.to_str().unwrap()]));
    let m = work.path().join("m.yml");
    std::fs::write(&m, MANIFEST).unwrap();
    ok(&run(&["-n", "deploy", m.to_str().unwrap()]));

    // Nothing to report.
    let out = ok(&run(&["cck", "--report"]));
    assert!(out.contains("Using deployment 'dep'"), "{out}");
    assert!(out.contains("Task "), "the scan task is followed: {out}");
    assert!(out.contains("Scanning 2 VMs"), "{out}");
    assert!(out.contains("\n0 problems\n"), "{out}");

    // One VM's agent and jobs die behind the director's back.
    let before = vm_cids(&url, &ca, &password);
    assert_eq!(before.len(), 2);
    let lost = before[0].clone();
    vm_kill(&dir, &lost);

    let (out, err) = fails(&run(&["cloud-check", "--report"]));
    assert!(err.starts_with("1 problem(s) found"), "{err}");
    assert!(out.contains("#  Type        Description"), "{out}");
    assert!(out.contains("missing_vm"), "{out}");
    assert!(
        out.contains(&format!("with cloud ID '{lost}' missing.")),
        "{out}"
    );
    assert!(out.contains("\n1 problems\n"), "{out}");

    // Nobody to ask with -n.
    let (_, err) = fails(&run(&["-n", "cck"]));
    assert!(
        err.starts_with("Cannot ask for a choice in non-interactive UI"),
        "{err}"
    );

    // --auto: the director's automatic resolution recreates the VM.
    let out = ok(&run(&["-n", "cck", "--auto"]));
    assert!(out.contains("Applying problem resolutions"), "{out}");
    assert!(
        out.contains("Recreate VM without waiting for processes to start"),
        "{out}"
    );
    let after = vm_cids(&url, &ca, &password);
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&lost), "{after:?}");
    assert!(
        after.contains(&before[1]),
        "the other VM is kept: {after:?}"
    );

    let out = ok(&run(&["cck", "--report"]));
    assert!(out.contains("\n0 problems\n"), "{out}");

    // The official CLI, unchanged, against the same director.
    let Some(bosh) = official_cli() else {
        eprintln!(
            "\n==== SKIP cck with the official CLI: build one with scripts/official-cli.sh or \
             set BOSH_OFFICIAL_CLI ====\n"
        );
        return;
    };
    let official = |args: &[&str]| {
        let out = Command::new(&bosh)
            .args(args)
            .envs(env)
            .env("HOME", home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "$ bosh {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let lost = after[0].clone();
    vm_kill(&dir, &lost);
    let out = official(&["--tty", "cck", "--report"]);
    assert_eq!(out.status.code(), Some(1));
    let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 problem(s) found"), "{stderr}");
    assert!(theirs.contains("missing_vm"), "{theirs}");
    // Our table of the same problem is theirs, byte for byte.
    let (ours, _) = fails(&run(&["cck", "--report"]));
    assert_eq!(problems_block(&ours), problems_block(&theirs));

    let out = official(&["-n", "cck", "--auto"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Applying problem resolutions"), "{stdout}");
    let fixed = vm_cids(&url, &ca, &password);
    assert_eq!(fixed.len(), 2);
    assert!(!fixed.contains(&lost), "{fixed:?}");

    let out = official(&["--tty", "cck", "--report"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n0 problems\n"));
}

/// The problems table of a `cck` output: from its header to its count line.
fn problems_block(out: &str) -> String {
    let start = out.find("\n#  ").map(|i| i + 1).expect("a problems table");
    let end = out[start..]
        .find(" problems\n")
        .map(|i| start + i + " problems\n".len())
        .expect("a count line");
    out[start..end].to_owned()
}

/// Kills a VM's agent and jobs behind the director's back and waits until they are gone.
fn vm_kill(dir: &Path, cid: &str) {
    let vm_dir = dir.join("sim-cpi/vms").join(cid).display().to_string();
    for pid in processes_mentioning(&vm_dir) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&vm_dir).is_empty() {
        assert!(Instant::now() < deadline, "VM {cid} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}
