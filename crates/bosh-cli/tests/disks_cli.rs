//! `bosh-rs disks --orphaned`, `orphaned-vms`, `clean-up` and `cancel-tasks` against a real
//! director on the sim CPI, with orphaned disks recorded in its database (disks the CPI no
//! longer knows, which count as deleted when cleaned up).

mod common;
use common::*;

use std::time::{Duration, Instant};

use bosh_director::db::Db;
use bosh_director::deployments::deployment_upsert;
use bosh_director::disks::{NewOrphanDisk, orphan_disk_insert};
use bosh_director::locks::{LockSpec, lock_acquire};
use bosh_director::tasks::TaskId;

fn http(d: &Director) -> reqwest::blocking::Client {
    let ca = std::fs::read(d.dir.join("ca.crt")).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .redirect(reqwest::redirect::Policy::none())
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

/// Orphaned disks as deleting a deployment leaves them, and a deployment whose lock a
/// task holds.
fn seed(d: &Director) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = Db::open_sqlite_in(&d.dir).await.unwrap();
        for (cid, size, az, dep, inst, at) in [
            (
                "disk-old",
                1024,
                Some("z1"),
                "old-dep",
                "db/uuid-1",
                1_452_320_605_i64,
            ),
            (
                "disk-new",
                512,
                None,
                "web-dep",
                "web/uuid-2",
                1_700_000_000,
            ),
        ] {
            let disk = NewOrphanDisk {
                cid,
                size,
                az,
                deployment: dep,
                instance_name: inst,
                cloud_properties: "{}",
                orphaned_at: at,
            };
            orphan_disk_insert(db.pool(), &disk).await.unwrap();
        }
        deployment_upsert(&db, "busy", "name: busy\n")
            .await
            .unwrap();
        assert!(
            lock_acquire(
                &db,
                &LockSpec::deployment("busy"),
                TaskId(999_999),
                3_600_000
            )
            .await
            .unwrap()
        );
    });
}

/// A table as the official CLI prints it: columns but the last padded to their widest
/// cell, two spaces after each.
fn table(rows: &[&[&str]]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap())
        .collect();
    rows.iter()
        .map(|r| {
            let last = r.len() - 1;
            let cells: String = r
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    let w = if i == last { 0 } else { *w };
                    format!("{c:<w$}  ")
                })
                .collect();
            format!("{cells}\n")
        })
        .collect()
}

fn task_id(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Task ").and_then(|r| r.parse().ok()))
        .unwrap_or_else(|| panic!("no task line in {stdout}"))
}

#[test]
fn orphaned_disks_clean_up_and_cancel_tasks() {
    let d = director_start();
    seed(&d);
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { home: home.path() };
    let ca = d.dir.join("ca.crt");
    let password = admin_password(&d.dir);
    let env = [
        ("BOSH_ENVIRONMENT", d.url.as_str()),
        ("BOSH_CA_CERT", ca.to_str().unwrap()),
        ("BOSH_CLIENT", "admin"),
        ("BOSH_CLIENT_SECRET", password.as_str()),
    ];
    let run = |args: &[&str]| cli.run_env(args, &env);
    let using = format!("Using environment '{}' as client 'admin'\n\n", d.url);

    let (_, err) = fails(&run(&["disks"]));
    assert!(err.starts_with("Only --orphaned is supported"), "{err}");

    // Newest first, sizes in IEC units, an empty AZ as '-'.
    let out = ok(&run(&["disks", "--orphaned"]));
    let expected = format!(
        "{using}{}\n2 disks\n\nSucceeded\n",
        table(&[
            &[
                "Disk CID",
                "Size",
                "Deployment",
                "Instance",
                "AZ",
                "Orphaned At"
            ],
            &[
                "disk-new",
                "512 MiB",
                "web-dep",
                "web/uuid-2",
                "-",
                "Tue Nov 14 22:13:20 UTC 2023"
            ],
            &[
                "disk-old",
                "1.0 GiB",
                "old-dep",
                "db/uuid-1",
                "z1",
                "Sat Jan  9 06:23:25 UTC 2016"
            ],
        ])
    );
    pretty_assertions::assert_eq!(out, expected);

    let out = ok(&run(&["orphaned-vms"]));
    assert!(
        out.contains("VM CID  Deployment  Instance  AZ  IPs  Orphaned At  \n\n0 orphaned_vms\n"),
        "{out}"
    );

    // The dry run lists the disks (by cid) under their title and deletes nothing.
    let out = ok(&run(&["clean-up", "--all", "--dry-run"]));
    let disks = table(&[
        &["Disk CID", "Deployment", "Instance", "Size (mb)"],
        &["disk-new", "web-dep", "web/uuid-2", "512"],
        &["disk-old", "old-dep", "db/uuid-1", "1024"],
    ]);
    assert!(
        out.contains(&format!("\nOrphaned Disks\n\n{disks}\nOrphaned VMs\n\n")),
        "{out}"
    );
    assert!(
        out.starts_with(&format!("{using}Unused Releases\n\nName  Version  \n\n")),
        "{out}"
    );
    let out = ok(&run(&["clean-up", "--dry-run"]));
    assert!(
        out.contains("\nOrphaned Disks\n\nDisk CID  Deployment  Instance  Size (mb)  \n\n"),
        "{out}"
    );
    assert_eq!(api_json(&d, "/disks").as_array().unwrap().len(), 2);

    // clean-up --all -n: a task that deletes both.
    let out = ok(&run(&["clean-up", "--all", "-n"]));
    let id = task_id(&out);
    assert!(out.contains("Deleting orphaned disks: disk-old"), "{out}");
    assert!(out.contains("Deleting orphaned disks: disk-new"), "{out}");
    assert!(out.ends_with("\nSucceeded\n"), "{out}");
    let task = api_json(&d, &format!("/tasks/{id}"));
    assert_eq!(task["description"], "clean up all");
    assert!(
        task["result"]
            .as_str()
            .unwrap()
            .contains(", 2 orphaned disk(s), "),
        "{task}"
    );
    let out = ok(&run(&["disks", "-o"]));
    assert!(out.contains("\n0 disks\n"), "{out}");

    // cancel-tasks: a delete waiting on the deployment's lock is cancelled by type and state.
    let resp = http(&d)
        .delete(format!("{}/deployments/busy", d.url))
        .basic_auth("admin", Some(&password))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api_json(&d, &location)["state"] != "processing" {
        assert!(Instant::now() < deadline, "the delete never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another type: nothing happens to it.
    ok(&run(&[
        "cancel-tasks",
        "-t",
        "update_deployment",
        "-s",
        "processing",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api_json(&d, &location)["state"], "processing");
    let out = ok(&run(&[
        "-d",
        "busy",
        "cancel-tasks",
        "--type",
        "delete_deployment",
        "--state",
        "processing",
    ]));
    assert_eq!(out, format!("{using}Succeeded\n"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = api_json(&d, &location)["state"]
            .as_str()
            .unwrap()
            .to_owned();
        if state == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "not cancelled: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
