//! The health monitor and resurrector end to end on the sim CPI (harness:
//! `common/deploy_world.rs`): a deployment of shell jobs whose agents heartbeat every second;
//! an agent killed behind the director's back is found unresponsive and one `cck_scan_and_fix`
//! task is queued for its instance, unless resurrection is paused, the instance is ignored or a
//! resurrection config turns it off; a shutdown the agent announced is not a loss; a storm
//! melts down into an alert instead of repairs; a repair in progress does not stop the
//! monitor from judging the other instances of its deployment.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use bosh_director::hm::HmConfig;
use deploy_world::{World, agent_bin, processes_mentioning, release_tarball, sleeper_job};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The sim cloud config on `127.93.0.0/24` with a disk type.
fn cloud_config() -> String {
    deploy_world::sim_cloud_config(
        "127.93.0",
        "disk_types: [{name: small, disk_size: 1024, cloud_properties: {}}]\n",
    )
}

/// A deployment `dep` with `groups` (name, instances), each instance with a persistent disk.
fn manifest(groups: &[(&str, u32)]) -> String {
    let mut out = String::from(
        r#"
name: dep
releases: [{name: workers, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 10
  canary_watch_time: 200-10000
  update_watch_time: 200-10000
instance_groups:
"#,
    );
    for (name, n) in groups {
        out.push_str(&format!(
            r#"- name: {name}
  instances: {n}
  azs: [z1]
  vm_type: small
  stemcell: default
  persistent_disk_type: small
  networks: [{{name: default}}]
  jobs:
  - name: worker
    release: workers
    properties: {{}}
"#
        ));
    }
    out
}

/// A short timeout, 1 s heartbeats; `tweak` adjusts the rest. No periodic read of the VM
/// rows: the monitor must learn of new, repaired and ignored VMs from task ends and requests.
/// Deploys `dep` with three `worker` instances and waits until the HM sees them all running.
async fn three_workers_deploy(w: &World) {
    let (_, t) = w.deploy(&manifest(&[("worker", 3)]), "").await;
    assert_eq!(t["state"], "done", "{t}");
    w.wait_until(
        Duration::from_secs(120),
        "three running agents",
        async || w.health("running") == 3,
    )
    .await;
}

async fn world(work: &Path, tweak: impl FnOnce(&mut HmConfig)) -> World {
    let mut hm = HmConfig {
        unresponsive_timeout: 3.0,
        interval: 0.5,
        resurrection_delay: 3.0,
        refresh_interval: 100_000.0,
        ..HmConfig::default()
    };
    tweak(&mut hm);
    let w = World::start_with(move |o| {
        o.config.hm = hm;
        o.agent_command = Some(vec![
            "env".into(),
            "BOSH_AGENT_HEARTBEAT_INTERVAL=1".into(),
            agent_bin().display().to_string(),
        ]);
    })
    .await;
    w.upload_sim_stemcell(work).await;
    w.cloud_config_update(&cloud_config()).await;
    let release = release_tarball(work, "workers", &[sleeper_job("worker")]);
    w.upload("releases", &release).await;
    w
}

impl World {
    async fn put_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .put(format!("{}{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Kills a VM's agent and everything it started, as a lost machine.
    fn vm_kill(&self, vm_cid: &str) {
        let needle = self.vm_dir(vm_cid).display().to_string();
        let pids = processes_mentioning(&needle);
        assert!(!pids.is_empty(), "no process for {vm_cid}");
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    /// `(id, state, user, description, payload)` of every scan-and-fix task.
    async fn scan_and_fix_tasks(&self) -> Vec<(i64, String, String, String, Value)> {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT id, state, username, description, payload FROM tasks \
             WHERE type = 'cck_scan_and_fix' ORDER BY id",
        )
        .fetch_all(self.db().pool())
        .await
        .unwrap();
        rows.into_iter()
            .map(|(id, s, u, d, p)| (id, s, u, d, serde_json::from_str(&p).unwrap()))
            .collect()
    }

    fn health(&self, what: &str) -> u64 {
        let hm = self.state().hm.as_ref().expect("the health monitor runs");
        hm.agent_health_counts().get(what).copied().unwrap_or(0)
    }

    /// Waits up to `limit` for `check`.
    async fn wait_until(&self, limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Alert events: `(instance, message)`.
    async fn alert_events(&self) -> Vec<(Option<String>, String)> {
        let rows: Vec<(Option<String>, String)> = sqlx::query_as(
            "SELECT instance, context FROM events WHERE object_type = 'alert' AND action = 'create' \
             AND username = 'hm' ORDER BY id",
        )
        .fetch_all(self.db().pool())
        .await
        .unwrap();
        rows.into_iter()
            .map(|(i, c)| {
                let c: Value = serde_json::from_str(&c).unwrap_or_default();
                (i, c["message"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_vm_gets_one_scan_and_fix_for_its_instance() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path(), |_| {}).await;
    let (_, t) = w.deploy(&manifest(&[("worker", 2)]), "").await;
    assert_eq!(t["state"], "done", "{t}");
    w.wait_until(Duration::from_secs(120), "two running agents", async || {
        w.health("running") == 2
    })
    .await;
    assert!(
        w.scan_and_fix_tasks().await.is_empty(),
        "healthy agents are left alone"
    );

    let instances = w.instances("dep").await;
    let (_, uuid, vm_cid, _) = instances[0].clone();
    w.vm_kill(&vm_cid);
    w.wait_until(
        Duration::from_secs(120),
        "a scan_and_fix task",
        async || !w.scan_and_fix_tasks().await.is_empty(),
    )
    .await;
    let tasks = w.scan_and_fix_tasks().await;
    let (_, _, user, description, payload) = &tasks[0];
    assert_eq!(user, "hm");
    assert_eq!(description, "scan and fix");
    assert_eq!(
        payload,
        &json!({"deployment": "dep", "jobs": {"worker": [uuid.clone()]}})
    );
    // The loss is an alert in the events table.
    let alerts = w.alert_events().await;
    assert!(
        alerts.iter().any(
            |(i, m)| i.as_deref() == Some(&format!("worker/{uuid}")) && m.contains("timed out")
        ),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|(_, m)| m.contains("Recreating unresponsive VMs")),
        "{alerts:?}"
    );
    // Several more ticks: still one task for that instance.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.scan_and_fix_tasks().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resurrected_instance_keeps_its_disk_data() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path(), |_| {}).await;
    let (_, t) = w.deploy(&manifest(&[("worker", 1)]), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let (_, uuid, vm1, _) = w.instances("dep").await[0].clone();
    std::fs::write(w.vm_dir(&vm1).join("store/data.txt"), "kept").unwrap();
    w.vm_kill(&vm1);
    w.wait_until(
        Duration::from_secs(120),
        "a scan_and_fix task",
        async || !w.scan_and_fix_tasks().await.is_empty(),
    )
    .await;
    let id = w.scan_and_fix_tasks().await[0].0;
    let task = w.task_wait(id).await;
    assert_eq!(task["state"], "done", "{task}");
    let (_, uuid2, vm2, _) = w.instances("dep").await[0].clone();
    assert_eq!(uuid2, uuid);
    assert_ne!(vm2, vm1, "a new VM");
    assert_eq!(
        std::fs::read_to_string(w.vm_dir(&vm2).join("store/data.txt")).unwrap(),
        "kept"
    );
    w.wait_until(
        Duration::from_secs(120),
        "the new agent running",
        async || w.health("running") == 1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_ignored_disabled_and_shut_down_instances_are_not_resurrected() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path(), |_| {}).await;
    let (_, t) = w
        .deploy(&manifest(&[("worker", 4), ("other", 1)]), "")
        .await;
    assert_eq!(t["state"], "done", "{t}");
    w.wait_until(
        Duration::from_secs(120),
        "five running agents",
        async || w.health("running") == 5,
    )
    .await;

    // The per-instance switch is gone, as in the Ruby director.
    let r = w
        .put_json(
            "/deployments/dep/jobs/worker/0/resurrection",
            json!({"resurrection_paused": true}),
        )
        .await;
    assert_eq!(r.status(), 410);
    let r = w
        .put_json("/resurrection", json!({"resurrection_paused": true}))
        .await;
    assert_eq!(r.status(), 200);
    // A resurrection config turns it off for the `other` group.
    let r = w
        .client
        .post(format!("{}/configs", w.url()))
        .basic_auth("admin", Some(&w.password))
        .json(&json!({"type": "resurrection", "name": "default",
            "content": "rules:\n- enabled: false\n  include: {instance_groups: [other]}\n"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    let all = w.instances("dep").await;
    let find = |g: &str, i: usize| {
        all.iter()
            .filter(|(group, ..)| group == g)
            .nth(i)
            .cloned()
            .unwrap()
    };
    let paused = find("worker", 0);
    let ignored = find("worker", 1);
    let shut = find("worker", 2);
    let disabled = find("other", 0);
    let r = w
        .put_json(
            &format!(
                "/deployments/dep/instance_groups/worker/{}/ignore",
                ignored.1
            ),
            json!({"ignore": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // A planned shutdown: the agent says so (drain "shutdown"), then goes away.
    let agents = w.state().services.agents.clone().unwrap();
    agents
        .client()
        .drain(
            &shut.3,
            bosh_agent_client::DrainType::Shutdown,
            None::<&Value>,
        )
        .await
        .unwrap();
    for vm in [&paused, &ignored, &shut, &disabled] {
        w.vm_kill(&vm.2);
    }
    w.wait_until(
        Duration::from_secs(120),
        "three unresponsive agents",
        async || w.health("unresponsive") == 3,
    )
    .await;
    assert_eq!(w.health("shutdown"), 1, "the announced shutdown is no loss");
    assert_eq!(w.health("running"), 1);
    // Well past the resurrection delay: nothing queued.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(w.scan_and_fix_tasks().await.is_empty());

    // Resumed: only the instance nothing else protects is repaired.
    let r = w
        .put_json("/resurrection", json!({"resurrection_paused": false}))
        .await;
    assert_eq!(r.status(), 200);
    w.wait_until(Duration::from_secs(60), "a scan_and_fix task", async || {
        !w.scan_and_fix_tasks().await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tasks = w.scan_and_fix_tasks().await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(
        tasks[0].4,
        json!({"deployment": "dep", "jobs": {"worker": [paused.1.clone()]}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_melts_down_into_an_alert() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path(), |hm| {
        hm.resurrector.minimum_down_jobs = 2;
        hm.resurrector.percent_threshold = 0.5;
    })
    .await;
    three_workers_deploy(&w).await;
    let all = w.instances("dep").await;
    w.vm_kill(&all[0].2);
    w.vm_kill(&all[1].2);
    w.wait_until(Duration::from_secs(120), "a meltdown alert", async || {
        w.alert_events()
            .await
            .iter()
            .any(|(_, m)| m.contains("We are in meltdown"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.scan_and_fix_tasks().await.is_empty());
    let alerts = w.alert_events().await;
    let meltdown: Vec<_> = alerts
        .iter()
        .filter(|(_, m)| m.contains("We are in meltdown"))
        .collect();
    assert_eq!(meltdown.len(), 1, "raised once: {alerts:?}");
    assert!(
        meltdown[0].1.contains("2 of 3 agents are unhealthy"),
        "{meltdown:?}"
    );
}

/// A fake running repair of `uuid`: a processing scan-and-fix task holding `dep`'s lock.
async fn repair_hold(w: &World, uuid: &str) -> i64 {
    let payload = json!({"deployment": "dep", "jobs": {"worker": [uuid]}}).to_string();
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO tasks (type, state, description, payload, username, deployment, context_id, \
         created_at) VALUES ('cck_scan_and_fix', 'processing', 'scan and fix', $1, 'hm', 'dep', '', 0) \
         RETURNING id",
    )
    .bind(payload)
    .fetch_one(w.db().pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO locks (name, type, resource, task_id, expires_at_ms) \
         VALUES ('lock:deployment:dep', 'deployment', '[\"dep\"]', $1, $2)",
    )
    .bind(id)
    .bind(i64::MAX / 2)
    .execute(w.db().pool())
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_during_a_repair_is_queued_without_waiting_for_it() {
    let work = tempfile::tempdir().unwrap();
    let w = world(work.path(), |_| {}).await;
    three_workers_deploy(&w).await;
    let all = w.instances("dep").await;
    let (repaired, lost) = (all[0].clone(), all[1].clone());
    // `repaired` is being repaired (and its VM is gone); `lost` is lost meanwhile.
    let holder = repair_hold(&w, &repaired.1).await;
    w.vm_kill(&repaired.2);
    w.vm_kill(&lost.2);
    w.wait_until(
        Duration::from_secs(120),
        "a scan_and_fix task for the sibling",
        async || w.scan_and_fix_tasks().await.len() > 1,
    )
    .await;
    let tasks = w.scan_and_fix_tasks().await;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert_eq!(
        tasks[1].4,
        json!({"deployment": "dep", "jobs": {"worker": [lost.1.clone()]}}),
        "only the sibling: the instance under repair is not judged"
    );
    assert_eq!(
        w.health("unresponsive"),
        1,
        "the repaired one has no verdict"
    );

    // While that task waits for the lock, a third loss gets no task of its own: it joins
    // the next one, queued once this one runs.
    let third = all[2].clone();
    w.vm_kill(&third.2);
    w.wait_until(
        Duration::from_secs(120),
        "the third agent unresponsive",
        async || w.health("unresponsive") == 2,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.scan_and_fix_tasks().await.len(), 2);

    // The fake repair ends: the queued task repairs the sibling, and the rest follow.
    sqlx::query("DELETE FROM locks WHERE task_id = $1")
        .bind(holder)
        .execute(w.db().pool())
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET state = 'done' WHERE id = $1")
        .bind(holder)
        .execute(w.db().pool())
        .await
        .unwrap();
    let done = w.task_wait_for(tasks[1].0, Duration::from_secs(180)).await;
    assert_eq!(done["state"], "done", "{done}");
    w.wait_until(Duration::from_secs(240), "three new VMs", async || {
        // Made VMs only: a repair's new row has no cid until the CPI answers.
        let cids: Vec<(String,)> = sqlx::query_as(
            "SELECT cid FROM vms WHERE deployment = 'dep' AND cid IS NOT NULL AND active = 1",
        )
        .fetch_all(w.db().pool())
        .await
        .unwrap();
        cids.len() == 3 && cids.iter().all(|(c,)| all.iter().all(|o| &o.2 != c))
    })
    .await;
    let tasks = w.scan_and_fix_tasks().await;
    assert!(tasks.len() <= 4, "{tasks:?}");
}
