//! `bosh-rs start|stop|restart|recreate|ignore|unignore|delete-vm` against a real director on
//! the sim CPI (VMs are real `bosh-agent` processes), then the official Go CLI
//! (`BOSH_OFFICIAL_CLI`, else `~/.cache/bosh-rs/official-cli/bosh`) with the same commands, so
//! its request shapes (query strings, text/yaml empty bodies, the `--no-converge` actions) are
//! checked against our director; without it that part prints a loud SKIP.

mod common;
use common::sim::*;
use common::*;

use std::path::Path;

/// `(uuid, index, vm cid)` of every instance, from the short `GET …/instances` form, by index.
fn instances(s: &SimSession) -> Vec<(String, i64, Option<String>)> {
    let list = s.get_json("/deployments/dep/instances");
    let mut out: Vec<(String, i64, Option<String>)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["index"].as_i64().unwrap_or(-1),
                v["cid"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort_by_key(|i| i.1);
    out
}

/// The job's pid on a VM when it runs.
fn job_pid(dir: &Path, cid: &str) -> Option<i32> {
    let pidfile = dir
        .join("sim-cpi/vms")
        .join(cid)
        .join("sys/run/sleeper/sleeper.pid");
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    (!matches!(state, Some("Z") | Some("X") | None)).then_some(pid)
}

#[test]
fn instance_state_commands_drive_the_director() {
    let s = SimSession::deploy(
        sleepers_tarball,
        &cloud_config("127.95.0"),
        &job_manifest("sleepers", "sleeper"),
    );
    let dir = &s.dir;
    let run = |args: &[&str]| s.run(args);

    let before = instances(&s);
    assert_eq!(before.len(), 2);
    let (uuid0, cid0) = (before[0].0.clone(), before[0].2.clone().unwrap());
    let cid1 = before[1].2.clone().unwrap();
    assert!(job_pid(dir, &cid0).is_some());

    // stop one instance: its job stops, its VM stays.
    let out = ok(&run(&["-n", "stop", &format!("sleeper/{uuid0}")]));
    assert!(out.contains("Using deployment 'dep'"), "{out}");
    assert!(out.contains("Updating instance"), "{out}");
    assert!(out.contains(&format!("sleeper/{uuid0} (0)")), "{out}");
    assert_eq!(job_pid(dir, &cid0), None, "job stopped");
    assert_eq!(instances(&s)[0].2.as_deref(), Some(cid0.as_str()));

    // start the whole group: running again.
    ok(&run(&["-n", "start", "sleeper"]));
    assert!(job_pid(dir, &cid0).is_some(), "job runs again");

    // recreate one instance by index with flags the CLI encodes (50% → 50%25).
    ok(&run(&[
        "-n",
        "recreate",
        "sleeper/0",
        "--canaries=1",
        "--max-in-flight=50%",
        "--skip-drain",
    ]));
    let now = instances(&s);
    let new0 = now[0].2.clone().unwrap();
    assert_ne!(new0, cid0, "a new VM");
    assert_eq!(
        now[1].2.as_deref(),
        Some(cid1.as_str()),
        "the other VM kept"
    );
    assert!(job_pid(dir, &new0).is_some());

    // --no-converge needs an instance.
    let (_, err) = fails(&run(&["-n", "restart", "sleeper", "--no-converge"]));
    assert!(
        err.contains("--no-converge on an entire instance group"),
        "{err}"
    );
    let (_, err) = fails(&run(&[
        "-n",
        "recreate",
        "sleeper/0",
        "--no-converge",
        "--dry-run",
    ]));
    assert!(err.contains("Can't set dry-run and no-converge"), "{err}");

    // stop --hard --no-converge, then start: a new VM.
    ok(&run(&[
        "-n",
        "stop",
        "sleeper/0",
        "--hard",
        "--no-converge",
    ]));
    assert_eq!(instances(&s)[0].2, None, "VM deleted");
    ok(&run(&["-n", "start", "sleeper/0", "--no-converge"]));
    let back = instances(&s)[0].2.clone().expect("a VM again");
    assert!(job_pid(dir, &back).is_some());

    // ignore: a recreate of the group leaves it alone; unignore.
    ok(&run(&["ignore", &format!("sleeper/{uuid0}")]));
    ok(&run(&["-n", "recreate", "sleeper"]));
    let now = instances(&s);
    assert_eq!(
        now[0].2.as_deref(),
        Some(back.as_str()),
        "ignored instance kept"
    );
    assert_ne!(
        now[1].2.as_deref(),
        Some(cid1.as_str()),
        "the other recreated"
    );
    let (out, _) = fails(&run(&["-n", "stop", &format!("sleeper/{uuid0}")]));
    assert!(out.contains("ignored instance"), "{out}");
    ok(&run(&["unignore", &format!("sleeper/{uuid0}")]));

    // delete-vm: the VM goes; start brings one back.
    let out = ok(&run(&["-n", "delete-vm", &back]));
    assert!(out.contains("Delete VM"), "{out}");
    assert_eq!(instances(&s)[0].2, None);
    ok(&run(&["-n", "start"]));
    let again = instances(&s)[0].2.clone().expect("a VM again");
    assert!(job_pid(dir, &again).is_some());

    // The official CLI, unchanged, against the same director.
    let Some(bosh) = official_cli() else {
        eprintln!(
            "\n==== SKIP instance operations with the official CLI: build one with \
             scripts/official-cli.sh or set BOSH_OFFICIAL_CLI ====\n"
        );
        return;
    };
    let official = |args: &[&str]| {
        let out = s.official_run(&bosh, args);
        assert!(out.status.success(), "bosh {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    official(&["-n", "stop", "sleeper/0"]);
    assert_eq!(job_pid(dir, &again), None);
    official(&["-n", "start"]);
    assert!(job_pid(dir, &again).is_some());
    official(&["-n", "restart", "sleeper/0", "--skip-drain"]);
    official(&[
        "-n",
        "recreate",
        &format!("sleeper/{uuid0}"),
        "--canaries=2",
        "--max-in-flight=50%",
        "--fix",
        "--skip-drain",
    ]);
    let now = instances(&s);
    let rec = now[0].2.clone().unwrap();
    assert_ne!(rec, again);
    official(&["-n", "stop", "sleeper/0", "--hard"]);
    assert_eq!(instances(&s)[0].2, None);
    official(&["-n", "start", "sleeper/0", "--no-converge"]);
    official(&["-n", "recreate", "sleeper/0", "--no-converge"]);
    official(&["ignore", &format!("sleeper/{uuid0}")]);
    official(&["unignore", &format!("sleeper/{uuid0}")]);
    let vm = instances(&s)[0].2.clone().unwrap();
    official(&["-n", "delete-vm", &vm]);
    assert_eq!(instances(&s)[0].2, None);
    official(&["-n", "start", "sleeper"]);
    assert!(instances(&s)[0].2.is_some());
}
