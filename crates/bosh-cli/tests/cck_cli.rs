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

/// The VM cids of deployment `dep`, sorted.
fn vm_cids(s: &SimSession) -> Vec<String> {
    let list = s.get_json("/deployments/dep/vms");
    let mut cids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["cid"].as_str().map(str::to_owned))
        .collect();
    cids.sort();
    cids
}

#[test]
fn cck_reports_and_repairs_a_lost_vm() {
    let s = SimSession::deploy(
        sleepers_tarball,
        &cloud_config("127.94.0"),
        &job_manifest("sleepers", "sleeper"),
    );
    let run = |args: &[&str]| s.run(args);

    // Nothing to report.
    let out = ok(&run(&["cck", "--report"]));
    assert!(out.contains("Using deployment 'dep'"), "{out}");
    assert!(out.contains("Task "), "the scan task is followed: {out}");
    assert!(out.contains("Scanning 2 VMs"), "{out}");
    assert!(out.contains("\n0 problems\n"), "{out}");

    // One VM's agent and jobs die behind the director's back.
    let before = vm_cids(&s);
    assert_eq!(before.len(), 2);
    let lost = before[0].clone();
    vm_kill(&s.dir, &lost);

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
    let after = vm_cids(&s);
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
    let official = |args: &[&str]| s.official_run(&bosh, args);
    let lost = after[0].clone();
    vm_kill(&s.dir, &lost);
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
    let fixed = vm_cids(&s);
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
