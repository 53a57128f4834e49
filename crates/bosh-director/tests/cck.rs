//! Cloud check end to end on the sim CPI (the harness is `common/deploy_world.rs`): VMs and
//! disks are broken behind the director's back (agent process groups killed, a VM deleted
//! through the CPI, a disk unmounted, marked inactive or removed), a scan finds each problem,
//! and each resolution repairs it; `cck_scan_and_fix` (the resurrector's task) repairs only
//! the instances it names and never ignored ones. The release is built here from a shell
//! job, so nothing is compiled.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{World, processes_mentioning, sleepers_release};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// The sim cloud config on `127.93.0.0/24`.
fn cloud_config() -> String {
    deploy_world::sim_cloud_config("127.93.0", "")
}

fn manifest(name: &str, instances: u32, extra: &str) -> String {
    format!(
        r#"
name: {name}
releases: [{{name: sleepers, version: latest}}]
stemcells: [{{alias: default, os: debian-bookworm, version: latest}}]
update:
  canaries: 1
  max_in_flight: 5
  canary_watch_time: 100-10000
  update_watch_time: 100-10000
instance_groups:
- name: sleeper
  instances: {instances}
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{{name: default}}]
  jobs:
  - name: sleeper
    release: sleepers
{extra}
"#
    )
}

async fn world(work: &Path) -> World {
    let w = World::start_with_stemcell(work, &cloud_config()).await;
    w.upload("releases", &sleepers_release(work)).await;
    w
}

/// `(uuid, index, vm cid, agent id)` of a deployment's instances with a VM, by index.
async fn vms(w: &World, dep: &str) -> Vec<(String, i64, String, String)> {
    sqlx::query_as(
        "SELECT i.uuid, i.instance_index, v.cid, v.agent_id FROM instances i \
         JOIN vms v ON v.instance_id = i.id WHERE i.deployment = $1 ORDER BY i.instance_index",
    )
    .bind(dep)
    .fetch_all(w.db().pool())
    .await
    .unwrap()
}

async fn uuids(w: &World, dep: &str) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT uuid FROM instances WHERE deployment = $1 ORDER BY instance_index")
            .bind(dep)
            .fetch_all(w.db().pool())
            .await
            .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

/// Kills a VM's agent and its jobs behind the director's back: the sim CPI then no longer
/// has the VM.
fn vm_kill(w: &World, cid: &str) {
    let dir = w.vm_dir(cid).display().to_string();
    let pids = processes_mentioning(&dir);
    assert!(!pids.is_empty(), "no process of VM {cid}");
    for pid in pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !processes_mentioning(&dir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "VM {cid} still runs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

async fn scan(w: &World, dep: &str) -> Value {
    let resp = w
        .client
        .post(format!("{}/deployments/{dep}/scans", w.url()))
        .basic_auth("admin", Some(&w.password))
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    let (_, task) = w.task_follow(resp).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["description"], "scan cloud");
    assert_eq!(task["result"], "scan complete");
    task
}

async fn problems(w: &World, dep: &str) -> Vec<Value> {
    let resp = w.get(&format!("/deployments/{dep}/problems")).await;
    assert!(resp.status().is_success());
    resp.json().await.unwrap()
}

/// Scans, and expects exactly one open problem of `kind`.
async fn scan_one(w: &World, dep: &str, kind: &str) -> Value {
    scan(w, dep).await;
    let list = problems(w, dep).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["type"], kind, "{list:?}");
    list[0].clone()
}

async fn resolve(w: &World, dep: &str, resolutions: Value) -> Value {
    let resp = w
        .client
        .put(format!("{}/deployments/{dep}/problems", w.url()))
        .basic_auth("admin", Some(&w.password))
        .json(&json!({ "resolutions": resolutions }))
        .send()
        .await
        .unwrap();
    let (_, task) = w.task_follow(resp).await;
    assert_eq!(task["description"], "apply resolutions");
    task
}

fn resolution_names(p: &Value) -> Vec<String> {
    p["resolutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_vm_is_found_once_and_recreated_with_its_disk() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path()).await;
    let (_, t) = w
        .deploy(&manifest("dep", 2, "  persistent_disk: 1024"), "")
        .await;
    assert_eq!(t["state"], "done", "{t}");
    let before = vms(&w, "dep").await;
    assert_eq!(before.len(), 2);
    let (uuid, _, cid, _) = before[0].clone();
    std::fs::write(w.vm_dir(&cid).join("store/data.txt"), "kept").unwrap();

    // Nothing wrong yet.
    scan(&w, "dep").await;
    assert!(problems(&w, "dep").await.is_empty());

    vm_kill(&w, &cid);
    let p = scan_one(&w, "dep", "missing_vm").await;
    assert_eq!(
        p["description"],
        format!("VM for 'sleeper/{uuid} (0)' with cloud ID '{cid}' missing.")
    );
    assert_eq!(p["instance_group"], "sleeper");
    assert_eq!(
        resolution_names(&p),
        [
            "ignore",
            "recreate_vm_without_wait",
            "recreate_vm",
            "delete_vm_reference"
        ]
    );
    assert_eq!(p["resolutions"][0]["plan"], "Skip for now");
    // A second scan sees the same problem again instead of adding one.
    let again = scan_one(&w, "dep", "missing_vm").await;
    assert_eq!(again["id"], p["id"]);
    assert_eq!(
        w.db_count("SELECT counter FROM problems WHERE state = 'open'")
            .await,
        2
    );

    let id = p["id"].as_i64().unwrap().to_string();
    let task = resolve(&w, "dep", json!({ id.clone(): "recreate_vm" })).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["result"], "1 resolved");
    let stages = w.stages(task["id"].as_i64().unwrap());
    assert!(
        stages
            .iter()
            .any(|(s, _)| s == "Applying problem resolutions"),
        "{stages:?}"
    );

    let after = vms(&w, "dep").await;
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].0, uuid);
    assert_ne!(after[0].2, cid, "a new VM");
    assert_eq!(after[1], before[1], "the other instance is untouched");
    assert_eq!(w.job_state(&after[0].3).await, "running");
    assert_eq!(
        std::fs::read_to_string(w.vm_dir(&after[0].2).join("store/data.txt")).unwrap(),
        "kept"
    );
    assert_eq!(w.vms_alive(), 2);
    assert_eq!(
        w.db_count("SELECT COUNT(*) FROM vms WHERE deployment = 'dep'")
            .await,
        2
    );
    assert_eq!(
        w.db_count(
            "SELECT COUNT(*) FROM events WHERE action = 'recreate' AND object_type = 'instance'"
        )
        .await,
        1
    );
    assert!(problems(&w, "dep").await.is_empty(), "resolved");
    scan(&w, "dep").await;
    assert!(problems(&w, "dep").await.is_empty(), "repaired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_references_and_disk_problems_are_resolved() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path()).await;
    let (_, t) = w
        .deploy(&manifest("dep", 1, "  persistent_disk: 1024"), "")
        .await;
    assert_eq!(t["state"], "done", "{t}");
    let (uuid, _, cid, _) = vms(&w, "dep").await[0].clone();
    std::fs::write(w.vm_dir(&cid).join("store/data.txt"), "kept").unwrap();
    let cpi = w.state().services.cpi.clone().unwrap();
    let agents = w.state().services.agents.clone().unwrap();

    // A VM deleted through the CPI: delete_vm_reference forgets it.
    cpi.delete_vm(&bosh_types::ids::VmCid::new(cid.clone()).unwrap())
        .await
        .unwrap();
    let p = scan_one(&w, "dep", "missing_vm").await;
    let task = resolve(
        &w,
        "dep",
        json!({ p["id"].to_string(): "delete_vm_reference" }),
    )
    .await;
    assert_eq!(task["state"], "done", "{task}");
    assert!(vms(&w, "dep").await.is_empty(), "no VM row left");
    assert_eq!(w.db_count("SELECT COUNT(*) FROM vms").await, 0);

    // Without a VM the instance is still missing one; null = the automatic resolution
    // (recreate without waiting) brings it back with its disk.
    let p = scan_one(&w, "dep", "missing_vm").await;
    assert_eq!(
        p["description"],
        format!("VM for 'sleeper/{uuid} (0)' missing.")
    );
    let task = resolve(&w, "dep", json!({ p["id"].to_string(): null })).await;
    assert_eq!(task["state"], "done", "{task}");
    let (_, _, cid, agent) = vms(&w, "dep").await[0].clone();
    let store = w.vm_dir(&cid).join("store");
    assert_eq!(
        std::fs::read_to_string(store.join("data.txt")).unwrap(),
        "kept"
    );

    let disk: (String,) = sqlx::query_as("SELECT cid FROM persistent_disks")
        .fetch_one(w.db().pool())
        .await
        .unwrap();
    let disk = disk.0;

    // An inactive disk is activated again.
    sqlx::query("UPDATE persistent_disks SET active = 0")
        .execute(w.db().pool())
        .await
        .unwrap();
    let p = scan_one(&w, "dep", "inactive_disk").await;
    assert_eq!(
        p["description"],
        format!("Disk '{disk}' (1024M) for instance 'sleeper/{uuid} (0)' is inactive")
    );
    assert_eq!(
        resolution_names(&p),
        ["ignore", "delete_disk", "activate_disk"]
    );
    let task = resolve(&w, "dep", json!({ p["id"].to_string(): "activate_disk" })).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(w.db_count("SELECT active FROM persistent_disks").await, 1);

    // A disk the agent no longer has mounted is mounted again.
    agents
        .client()
        .call(&agent, "unmount_disk", vec![json!(disk)])
        .await
        .unwrap();
    let p = scan_one(&w, "dep", "mount_info_mismatch").await;
    assert_eq!(p["data"], json!({"owner_vms": []}));
    assert!(
        p["description"]
            .as_str()
            .unwrap()
            .ends_with("However it is currently :\n\tNot mounted in any VM"),
        "{p}"
    );
    let task = resolve(&w, "dep", json!({ p["id"].to_string(): "reattach_disk" })).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(
        std::fs::read_to_string(store.join("data.txt")).unwrap(),
        "kept"
    );
    scan(&w, "dep").await;
    assert!(problems(&w, "dep").await.is_empty());

    // A disk gone from the cloud: its reference moves to the orphaned disks.
    std::fs::remove_dir_all(w.sim_root().join("disks").join(&disk)).unwrap();
    let p = scan_one(&w, "dep", "missing_disk").await;
    assert_eq!(
        p["description"],
        format!("Disk '{disk}' (sleeper/{uuid}, 1024M) is missing")
    );
    let task = resolve(
        &w,
        "dep",
        json!({ p["id"].to_string(): "delete_disk_reference" }),
    )
    .await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(w.db_count("SELECT COUNT(*) FROM persistent_disks").await, 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM orphan_disks").await, 1);

    // An unknown resolution fails the task and says why.
    vm_kill(&w, &cid);
    let p = scan_one(&w, "dep", "missing_vm").await;
    let task = resolve(&w, "dep", json!({ p["id"].to_string(): "reboot_vm" })).await;
    assert_eq!(task["state"], "error", "{task}");
    assert_eq!(
        task["result"],
        format!(
            "Error resolving problem '{}': Cannot find 'reboot_vm' resolution for 'missing_vm'",
            p["id"]
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_fix_repairs_only_named_instances_and_never_ignored_ones() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path()).await;
    let (_, t) = w.deploy(&manifest("dep", 3, ""), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let before = vms(&w, "dep").await;
    assert_eq!(before.len(), 3);
    let ids = uuids(&w, "dep").await;
    sqlx::query("UPDATE instances SET ignored = 1 WHERE uuid = $1")
        .bind(&ids[2])
        .execute(w.db().pool())
        .await
        .unwrap();
    for (_, _, cid, _) in &before {
        vm_kill(&w, cid);
    }

    // Instance 0 by uuid, instance 2 (ignored) by index; instance 1 is not named.
    let resp = w
        .client
        .put(format!("{}/deployments/dep/scan_and_fix", w.url()))
        .basic_auth("admin", Some(&w.password))
        .json(&json!({"jobs": {"sleeper": [ids[0], 2]}}))
        .send()
        .await
        .unwrap();
    let (id, task) = w.task_follow(resp).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["description"], "scan and fix");
    assert_eq!(task["result"], "scan and fix complete");
    let stages: Vec<String> = w.stages(id).into_iter().map(|s| s.0).collect();
    assert_eq!(
        stages,
        ["Scanning 1 VMs", "Applying problem resolutions"],
        "only the named instance that is not ignored"
    );

    let after = vms(&w, "dep").await;
    assert_ne!(after[0].2, before[0].2, "instance 0 has a new VM");
    assert_eq!(w.job_state(&after[0].3).await, "running");
    assert_eq!(after[1], before[1], "instance 1 was not named");
    assert_eq!(after[2], before[2], "instance 2 is ignored");

    // A full scan reports instance 1 only: ignored instances are not scanned.
    scan(&w, "dep").await;
    let list = problems(&w, "dep").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["type"], "missing_vm");
    assert!(
        list[0]["description"].as_str().unwrap().contains(&ids[1]),
        "{list:?}"
    );

    // The resurrector's payload through the task queue directly: instance 1 is repaired and
    // its open problem resolved.
    let payload = bosh_director::cck::ScanAndFixPayload {
        deployment: "dep".into(),
        jobs: [("sleeper".to_owned(), vec!["1".to_owned()])].into(),
    };
    let task = w
        .state()
        .queue
        .task_enqueue(&bosh_director::tasks::store::NewTask {
            task_type: bosh_director::cck::SCAN_AND_FIX.into(),
            description: "scan and fix".into(),
            payload: serde_json::to_value(&payload).unwrap(),
            user: "hm".into(),
            deployment: Some("dep".into()),
            context_id: String::new(),
        })
        .await
        .unwrap();
    let t = w.task_wait(task.id.0).await;
    assert_eq!(t["state"], "done", "{t}");
    let fixed = vms(&w, "dep").await;
    assert_ne!(fixed[1].2, before[1].2, "instance 1 has a new VM");
    assert_eq!(w.job_state(&fixed[1].3).await, "running");
    assert_eq!(fixed[2], before[2]);
    assert!(problems(&w, "dep").await.is_empty(), "resolved");
}

/// Stops (`SIGSTOP`) or continues (`SIGCONT`) a VM's agent process, not its jobs.
fn agent_signal(w: &World, cid: &str, signal: &str) {
    let dir = w.vm_dir(cid).display().to_string();
    let agents: Vec<i32> = processes_mentioning(&dir)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("bosh-agent"))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(agents.len(), 1, "one agent process for {cid}");
    let status = Command::new("kill")
        .args([signal, &agents[0].to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_agent_is_rebooted_and_one_that_answers_again_is_left_alone() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path()).await;
    let (_, t) = w.deploy(&manifest("dep", 2, ""), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let before = vms(&w, "dep").await;
    let (uuid0, _, cid0, agent0) = before[0].clone();
    let cid1 = before[1].2.clone();

    agent_signal(&w, &cid0, "-STOP");
    agent_signal(&w, &cid1, "-STOP");
    scan(&w, "dep").await;
    let list = problems(&w, "dep").await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(
        list.iter().all(|p| p["type"] == "unresponsive_agent"),
        "{list:?}"
    );
    let p0 = list
        .iter()
        .find(|p| p["description"].as_str().unwrap().contains(&cid0))
        .unwrap()
        .clone();
    assert_eq!(
        p0["description"],
        format!("VM for 'sleeper/{uuid0} (0)' with cloud ID '{cid0}' is not responding.")
    );
    assert_eq!(
        resolution_names(&p0),
        [
            "ignore",
            "reboot_vm",
            "recreate_vm_without_wait",
            "recreate_vm",
            "delete_vm",
            "delete_vm_reference"
        ]
    );
    let p1 = list.iter().find(|p| p["id"] != p0["id"]).unwrap().clone();

    // Instance 1's agent answers again before the repair: nothing is done to it.
    agent_signal(&w, &cid1, "-CONT");
    let task = resolve(
        &w,
        "dep",
        json!({ p0["id"].to_string(): "reboot_vm", p1["id"].to_string(): "recreate_vm" }),
    )
    .await;
    assert_eq!(task["state"], "error", "{task}");
    assert_eq!(
        task["result"],
        format!(
            "Error resolving problem '{}': Agent is responding now, skipping resolution",
            p1["id"]
        )
    );
    let after = vms(&w, "dep").await;
    assert_eq!(
        after, before,
        "a reboot keeps the VM; the answering one is untouched"
    );
    assert_eq!(w.job_state(&agent0).await, "running");
    assert!(problems(&w, "dep").await.is_empty(), "both resolved");
    scan(&w, "dep").await;
    assert!(problems(&w, "dep").await.is_empty(), "repaired");
}
