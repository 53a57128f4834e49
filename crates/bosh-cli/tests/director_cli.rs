//! `bosh-rs` against a real `bosh-director` on 127.0.0.1:0, driven as a user would:
//! alias-env, log-in, env, configs, deployments, tasks, cancel, curl, bad credentials.
//!
//! The director is the `bosh-director` binary found next to this test's target dir
//! (`target/debug/bosh-director`, built by `cargo build -p bosh-director` or a workspace
//! test run) or named by `BOSH_DIRECTOR_BIN`; without either, the same server is started
//! in-process from the `bosh-director` library. One director serves the whole file (its
//! first start generates RSA keys, which is slow), and is killed at the end.

mod common;
use common::*;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bosh_director::db::Db;
use bosh_director::deployments::deployment_upsert;
use bosh_director::locks::{LockSpec, lock_acquire};
use bosh_director::tasks::TaskId;

fn http(d: &Director) -> reqwest::blocking::Client {
    let ca = std::fs::read(d.dir.join("ca.crt")).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

fn api_json(d: &Director, path: &str) -> serde_json::Value {
    http(d)
        .get(format!("{}{path}", d.url))
        .basic_auth("admin", Some(admin_password(&d.dir)))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn seed(d: &Director, name: &str, lock: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = Db::open_sqlite_in(&d.dir).await.unwrap();
        deployment_upsert(
            &db,
            name,
            &format!("name: {name}\nreleases:\n- name: r\n  version: \"1\"\nstemcells:\n- alias: default\n  os: ubuntu\n  version: \"1.5\"\n"),
        )
        .await
        .unwrap();
        if lock {
            assert!(
                lock_acquire(&db, &LockSpec::deployment(name), TaskId(999_999), 3_600_000)
                    .await
                    .unwrap()
            );
        }
    });
}

/// The id in the first `Task N` line of a command's output.
fn task_id(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Task ").and_then(|r| r.parse().ok()))
        .unwrap_or_else(|| panic!("no task line in {stdout}"))
}

#[test]
fn director_commands_end_to_end() {
    let d = director_start();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { home: home.path() };
    let ca = d.dir.join("ca.crt");
    let ca = ca.to_str().unwrap();
    let password = admin_password(&d.dir);

    // No environment at all.
    let (_, err) = fails(&cli.run(&["tasks"]));
    assert!(err.starts_with("Expected non-empty Director URL"), "{err}");

    // alias-env saves the URL and CA and shows /info.
    let out = ok(&cli.run(&["alias-env", "test", "-e", &d.url, "--ca-cert", ca]));
    assert!(
        out.starts_with(&format!(
            "Using environment '{}' as anonymous user\n\n",
            d.url
        )),
        "{out}"
    );
    assert!(out.contains("\nUser      (not logged in)  \n"), "{out}");
    assert!(out.contains("\nCPI       "), "{out}");
    assert!(out.ends_with("\nSucceeded\n"), "{out}");
    let config = std::fs::read_to_string(home.path().join(".bosh/config")).unwrap();
    assert!(
        config.starts_with(&format!(
            "environments:\n- url: {}\n  ca_cert: |\n    -----BEGIN CERTIFICATE-----\n",
            d.url
        )),
        "{config}"
    );
    assert!(config.contains("\n  alias: test\n"), "{config}");

    let out = ok(&cli.run(&["environments"]));
    assert!(out.contains(&format!("{}  test  \n", d.url)), "{out}");
    assert!(out.contains("\n1 environments\n"), "{out}");

    // Without credentials: protected endpoints answer 401, and -n cannot prompt.
    let (_, err) = fails(&cli.run(&["-e", "test", "tasks"]));
    assert!(
        err.contains("Director responded with non-successful status code '401'"),
        "{err}"
    );
    let (_, err) = fails(&cli.run(&["-e", "test", "-n", "log-in"]));
    assert!(
        err.starts_with("Cannot ask for input in non-interactive UI"),
        "{err}"
    );

    // Bad credentials.
    let (_, err) = fails(&cli.run_env(
        &["-e", "test", "log-in"],
        &[("BOSH_CLIENT", "admin"), ("BOSH_CLIENT_SECRET", "wrong")],
    ));
    assert!(
        err.contains(&format!("Failed to login to '{}'", d.url)),
        "{err}"
    );
    assert!(err.contains("Invalid credentials\n"), "{err}");
    let (_, err) = fails(&cli.run(&[
        "-e",
        "test",
        "--client",
        "admin",
        "--client-secret",
        "wrong",
        "deployments",
    ]));
    assert!(
        err.contains("Director responded with non-successful status code '401'"),
        "{err}"
    );

    // Log in from the environment variables; later commands use the saved credentials.
    let out = ok(&cli.run_env(
        &["-e", "test", "log-in"],
        &[("BOSH_CLIENT", "admin"), ("BOSH_CLIENT_SECRET", &password)],
    ));
    assert!(out.contains(&format!("Logged in to '{}'", d.url)), "{out}");
    let config = std::fs::read_to_string(home.path().join(".bosh/config")).unwrap();
    assert!(config.contains("\n  username: admin\n"), "{config}");
    let out = ok(&cli.run(&["-e", "test", "env"]));
    assert!(
        out.starts_with(&format!(
            "Using environment '{}' as client 'admin'\n",
            d.url
        )),
        "{out}"
    );
    assert!(out.contains("\nUser      admin  \n"), "{out}");

    // Cloud config round trip, with the diff shown before the update.
    let cc = home.path().join("cc.yml");
    std::fs::write(&cc, "vm_types:\n- name: small\nazs:\n- name: z1\n").unwrap();
    let out = ok(&cli.run(&[
        "-e",
        "test",
        "-n",
        "update-cloud-config",
        cc.to_str().unwrap(),
    ]));
    assert!(out.contains("+ azs:\n"), "{out}");
    let out = ok(&cli.run(&["-e", "test", "cloud-config"]));
    assert!(
        out.contains("azs:\n- name: z1\nvm_types:\n- name: small\n"),
        "{out}"
    );
    // Same content again: the diff shows no changes.
    let out = ok(&cli.run(&["-e", "test", "-n", "ucc", cc.to_str().unwrap()]));
    assert!(!out.contains("+ "), "{out}");

    // Generic configs.
    let rc = home.path().join("rc.yml");
    std::fs::write(&rc, "addons: []\n").unwrap();
    let out = ok(&cli.run(&[
        "-e",
        "test",
        "-n",
        "update-config",
        "--type",
        "runtime",
        "--name",
        "extra",
        rc.to_str().unwrap(),
    ]));
    assert!(out.contains("\nType        runtime  \n"), "{out}");
    let out = ok(&cli.run(&[
        "-e", "test", "config", "--type", "runtime", "--name", "extra",
    ]));
    assert!(out.contains("\nContent     addons: []  \n"), "{out}");
    let out = ok(&cli.run(&["-e", "test", "configs", "--type", "cloud"]));
    assert!(out.contains("*  cloud  default  -     "), "{out}");
    assert!(
        out.contains("\n(*) Currently active\nOnly showing active configs."),
        "{out}"
    );
    assert!(out.contains("\n1 configs\n"), "{out}");
    let out = ok(&cli.run(&["-e", "test", "configs", "--recent=10"]));
    assert!(out.contains("cloud    default"), "{out}");
    assert!(out.contains("runtime  extra"), "{out}");
    assert!(!out.contains("Only showing active configs"), "{out}");
    let (_, err) = fails(&cli.run(&["-e", "test", "config"]));
    assert!(err.starts_with("Either <ID> or parameters --type and --name must be provided"));
    let out = ok(&cli.run(&[
        "-e",
        "test",
        "-n",
        "delete-config",
        "--type",
        "runtime",
        "--name",
        "extra",
    ]));
    assert!(!out.contains("No configs to delete"), "{out}");
    let out = ok(&cli.run(&[
        "-e",
        "test",
        "-n",
        "delete-config",
        "--type",
        "runtime",
        "--name",
        "extra",
    ]));
    assert!(
        out.contains("No configs to delete: no matches for type 'runtime' and name 'extra' found."),
        "{out}"
    );

    // Deployments, manifest, and a delete-deployment task followed to the end.
    seed(&d, "dep1", false);
    let out = ok(&cli.run(&["-e", "test", "deployments"]));
    assert!(out.contains("dep1  r/1"), "{out}");
    let out = ok(&cli.run(&["-e", "test", "-d", "dep1", "manifest"]));
    assert!(out.contains("Using deployment 'dep1'\n"), "{out}");
    assert!(out.contains("name: dep1\n"), "{out}");
    let out = ok(&cli.run(&["-e", "test", "-d", "dep1", "-n", "delete-deployment"]));
    let id = task_id(&out);
    assert!(
        out.contains(&format!("\nTask {id}\n\nTask {id} | ")),
        "{out}"
    );
    assert!(out.contains(&format!("\nTask {id} Duration ")), "{out}");
    assert!(
        out.contains(&format!("\nTask {id} done\n\nSucceeded\n")),
        "{out}"
    );

    let out = ok(&cli.run(&["-e", "test", "tasks", "--recent"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{id} ")) && l.contains(" done ")),
        "{out}"
    );
    assert!(out.contains("delete deployment dep1"), "{out}");
    let out = ok(&cli.run(&["-e", "test", "task", &id.to_string()]));
    let stage_line = out
        .lines()
        .find(|l| l.starts_with(&format!("Task {id} | ")))
        .unwrap_or_else(|| panic!("no stage line: {out}"));
    // `Task N | HH:MM:SS | Stage: task (00:00:00)`
    let parts: Vec<&str> = stage_line.splitn(3, " | ").collect();
    assert_eq!(parts[1].len(), 8, "{stage_line}");
    assert!(stage_line.ends_with(')'), "{stage_line}");
    assert!(out.contains(&format!("\nTask {id} Started  ")), "{out}");
    assert!(out.contains(&format!("\nTask {id} done\n")), "{out}");
    let out = ok(&cli.run(&["-e", "test", "task", &id.to_string(), "--debug"]));
    assert!(out.contains(&format!("Task {id}\n\n")), "{out}");
    let out = ok(&cli.run(&["-e", "test", "tasks"]));
    assert!(out.contains("\n0 tasks\n"), "{out}");

    // A task that ends cancelled fails the command that follows it.
    seed(&d, "busy", true);
    let out = ok(&cli.run(&["-e", "test", "locks"]));
    assert!(out.contains("deployment  busy      999999"), "{out}");
    let mut child = cli
        .cmd(&["-e", "test", "-d", "busy", "-n", "delete-deployment"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy_id = loop {
        let tasks = api_json(&d, "/tasks?state=processing&verbose=2");
        if let Some(t) = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["deployment"] == "busy")
        {
            break t["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "the delete never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = ok(&cli.run(&["-e", "test", "tasks"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("{busy_id} ")) && l.contains(" processing ")),
        "{out}"
    );
    ok(&cli.run(&["-e", "test", "cancel-task", &busy_id.to_string()]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("delete-deployment did not end after the cancel");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = fails(&out);
    assert!(
        // "Task N. Cancelled" when the task wrote no events, as the official CLI prints it.
        stdout.contains(&format!("\nTask {busy_id} cancelled\n"))
            || stdout.contains(&format!("\nTask {busy_id}. Cancelled\n")),
        "{stdout}"
    );
    assert!(
        stderr.starts_with(&format!(
            "Deleting deployment 'busy': Expected task '{busy_id}' to succeed but state is 'cancelled'"
        )),
        "{stderr}"
    );
    let (_, err) = fails(&cli.run(&["-e", "test", "task", &busy_id.to_string()]));
    assert!(
        err.contains(&format!(
            "Expected task '{busy_id}' to succeed but state is 'cancelled'"
        )),
        "{err}"
    );

    // curl goes through the same client (auth, CA).
    let out = ok(&cli.run(&["-e", "test", "curl", "/deployments"]));
    assert!(out.contains("\"name\":\"busy\""), "{out}");
    let (_, err) = fails(&cli.run(&["-e", "test", "curl", "/tasks/999999"]));
    assert!(
        err.contains(
            "Executing HTTP request: Director responded with non-successful status code '404'"
        ),
        "{err}"
    );

    // log-out forgets the credentials.
    let out = ok(&cli.run(&["-e", "test", "log-out"]));
    assert!(
        out.contains(&format!("Logged out from '{}'", d.url)),
        "{out}"
    );
    let (_, err) = fails(&cli.run(&["-e", "test", "locks"]));
    assert!(err.contains("'401'"), "{err}");
    drop(d);
}
#[test]
fn events_lists_and_filters_what_the_director_recorded() {
    let d = director_start();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { home: home.path() };
    let password = admin_password(&d.dir);
    let ca = d.dir.join("ca.crt");
    let env = [
        ("BOSH_ENVIRONMENT", d.url.as_str()),
        ("BOSH_CA_CERT", ca.to_str().unwrap()),
        ("BOSH_CLIENT", "admin"),
        ("BOSH_CLIENT_SECRET", password.as_str()),
    ];
    ok(&cli.run_env(
        &["upload-stemcell", &fixture("upstream/valid_stemcell.tgz")],
        &env,
    ));
    let events = api_json(&d, "/events?object_type=stemcell");
    let end = &events[0];
    let (id, parent) = (
        end["id"].as_str().unwrap(),
        end["parent_id"].as_str().unwrap(),
    );

    let out = ok(&cli.run_env(&["events"], &env));
    let header = out.lines().find(|l| l.starts_with("ID ")).unwrap();
    assert!(
        header.starts_with("ID ")
            && header.split("  ").filter(|c| !c.trim().is_empty()).count() == 11,
        "{out}"
    );
    for col in [
        "Time",
        "User",
        "Action",
        "Object Type",
        "Object Name",
        "Task ID",
    ] {
        assert!(header.contains(col), "{out}");
    }
    for col in ["Deployment", "Instance", "Context", "Error"] {
        assert!(header.contains(col), "{out}");
    }
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("{id} <- {parent} ")))
        .unwrap_or_else(|| panic!("no linked row for {id}: {out}"));
    assert!(
        row.contains(" UTC ") && row.contains("admin  create  stemcell  "),
        "{row}"
    );
    // The begin event is named too.
    let begin = out
        .lines()
        .find(|l| l.starts_with(&format!("{parent} ")))
        .unwrap();
    assert!(
        begin.contains(end["object_name"].as_str().unwrap()),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\n\n{} events\n",
            events.as_array().unwrap().len()
        )),
        "{out}"
    );

    // Filters go to the director: nothing was deleted, no event has that name.
    let out = ok(&cli.run_env(&["events", "--action", "delete"], &env));
    assert!(out.contains("\n0 events\n"), "{out}");
    let out = ok(&cli.run_env(
        &[
            "events",
            "--object-type",
            "stemcell",
            "--event-user",
            "admin",
            "--json",
        ],
        &env,
    ));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = doc["Tables"][0]["Rows"].as_array().unwrap();
    assert_eq!(rows.len(), events.as_array().unwrap().len(), "{out}");
    assert_eq!(rows[0]["id"], format!("{id} <- {parent}"));
    assert_eq!(rows[0]["object_type"], "stemcell");
    assert!(rows.iter().all(|r| r["action"] == "create"), "{out}");
    assert_eq!(doc["Tables"][0]["Header"]["object_name"], "Object Name");
}
