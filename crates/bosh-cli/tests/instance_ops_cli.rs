//! `bosh-rs start|stop|restart|recreate|ignore|unignore|delete-vm` against a real director on
//! the sim CPI (VMs are real `bosh-agent` processes), then the official Go CLI
//! (`BOSH_OFFICIAL_CLI`, else `~/.cache/bosh-rs/official-cli/bosh`) with the same commands, so
//! its request shapes (query strings, text/yaml empty bodies, the `--no-converge` actions) are
//! checked against our director; without it that part prints a loud SKIP.

mod common;
use common::sim::*;
use common::*;

use std::path::Path;
use std::process::Command;

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

/// `(uuid, index, state, vm cid)` of every instance, from the short `GET …/instances`
/// and `…/vms` forms plus the full listing's state.
fn instances(d_url: &str, ca: &Path, password: &str) -> Vec<(String, i64, Option<String>)> {
    let pem = std::fs::read(ca).unwrap();
    let http = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let list: Vec<serde_json::Value> = http
        .get(format!("{d_url}/deployments/dep/instances"))
        .basic_auth("admin", Some(password))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut out: Vec<(String, i64, Option<String>)> = list
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

    let before = instances(&url, &ca, &password);
    assert_eq!(before.len(), 2);
    let (uuid0, cid0) = (before[0].0.clone(), before[0].2.clone().unwrap());
    let cid1 = before[1].2.clone().unwrap();
    assert!(job_pid(&dir, &cid0).is_some());

    // stop one instance: its job stops, its VM stays.
    let out = ok(&run(&["-n", "stop", &format!("sleeper/{uuid0}")]));
    assert!(out.contains("Using deployment 'dep'"), "{out}");
    assert!(out.contains("Updating instance"), "{out}");
    assert!(out.contains(&format!("sleeper/{uuid0} (0)")), "{out}");
    assert_eq!(job_pid(&dir, &cid0), None, "job stopped");
    assert_eq!(
        instances(&url, &ca, &password)[0].2.as_deref(),
        Some(cid0.as_str())
    );

    // start the whole group: running again.
    ok(&run(&["-n", "start", "sleeper"]));
    assert!(job_pid(&dir, &cid0).is_some(), "job runs again");

    // recreate one instance by index with flags the CLI encodes (50% → 50%25).
    ok(&run(&[
        "-n",
        "recreate",
        "sleeper/0",
        "--canaries=1",
        "--max-in-flight=50%",
        "--skip-drain",
    ]));
    let now = instances(&url, &ca, &password);
    let new0 = now[0].2.clone().unwrap();
    assert_ne!(new0, cid0, "a new VM");
    assert_eq!(
        now[1].2.as_deref(),
        Some(cid1.as_str()),
        "the other VM kept"
    );
    assert!(job_pid(&dir, &new0).is_some());

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
    assert_eq!(instances(&url, &ca, &password)[0].2, None, "VM deleted");
    ok(&run(&["-n", "start", "sleeper/0", "--no-converge"]));
    let back = instances(&url, &ca, &password)[0]
        .2
        .clone()
        .expect("a VM again");
    assert!(job_pid(&dir, &back).is_some());

    // ignore: a recreate of the group leaves it alone; unignore.
    ok(&run(&["ignore", &format!("sleeper/{uuid0}")]));
    ok(&run(&["-n", "recreate", "sleeper"]));
    let now = instances(&url, &ca, &password);
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
    assert_eq!(instances(&url, &ca, &password)[0].2, None);
    ok(&run(&["-n", "start"]));
    let again = instances(&url, &ca, &password)[0]
        .2
        .clone()
        .expect("a VM again");
    assert!(job_pid(&dir, &again).is_some());

    // The official CLI, unchanged, against the same director.
    let Some(bosh) = official_cli() else {
        eprintln!(
            "\n==== SKIP instance operations with the official CLI: build one with \
             scripts/official-cli.sh or set BOSH_OFFICIAL_CLI ====\n"
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
        assert!(out.status.success(), "bosh {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    official(&["-n", "stop", "sleeper/0"]);
    assert_eq!(job_pid(&dir, &again), None);
    official(&["-n", "start"]);
    assert!(job_pid(&dir, &again).is_some());
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
    let now = instances(&url, &ca, &password);
    let rec = now[0].2.clone().unwrap();
    assert_ne!(rec, again);
    official(&["-n", "stop", "sleeper/0", "--hard"]);
    assert_eq!(instances(&url, &ca, &password)[0].2, None);
    official(&["-n", "start", "sleeper/0", "--no-converge"]);
    official(&["-n", "recreate", "sleeper/0", "--no-converge"]);
    official(&["ignore", &format!("sleeper/{uuid0}")]);
    official(&["unignore", &format!("sleeper/{uuid0}")]);
    let vm = instances(&url, &ca, &password)[0].2.clone().unwrap();
    official(&["-n", "delete-vm", &vm]);
    assert_eq!(instances(&url, &ca, &password)[0].2, None);
    official(&["-n", "start", "sleeper"]);
    assert!(instances(&url, &ca, &password)[0].2.is_some());
}
