//! Instance operations end to end on the sim CPI (the harness is `common/deploy_world.rs`):
//! `start`, `stop`, `stop --hard`, `restart`, `recreate` (converging and `--no-converge`),
//! `ignore` and `delete-vm`, through the same requests the official CLI sends (text/yaml,
//! empty body, query parameters). Each VM runs the real `bosh-agent`; the release is a shell
//! job, so nothing is compiled.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{World, sleepers_release, task_id};
use serde_json::{Value, json};

/// The sim cloud config on `127.94.0.0/24`.
fn cloud_config() -> String {
    deploy_world::sim_cloud_config("127.94.0", "")
}

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
  instances: 3
  azs: [z1]
  vm_type: small
  stemcell: default
  persistent_disk: 1024
  networks: [{name: default}]
  jobs:
  - name: sleeper
    release: sleepers
"#;

/// One instance as the database sees it.
#[derive(Debug, Clone, PartialEq)]
struct Inst {
    uuid: String,
    index: i64,
    state: String,
    ignored: bool,
    cid: Option<String>,
}

async fn instances(w: &World) -> Vec<Inst> {
    let rows: Vec<(String, i64, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT i.uuid, i.instance_index, i.state, i.ignored, \
         (SELECT v.cid FROM vms v WHERE v.instance_id = i.id AND v.active = 1) \
         FROM instances i WHERE i.deployment = 'dep' ORDER BY i.instance_index",
    )
    .fetch_all(w.db().pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(uuid, index, state, ignored, cid)| Inst {
            uuid,
            index,
            state,
            ignored: ignored != 0,
            cid,
        })
        .collect()
}

async fn ip_of(w: &World, uuid: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT a.address FROM ip_addresses a JOIN instances i ON i.id = a.instance_id \
         WHERE i.uuid = $1 ORDER BY a.address",
    )
    .bind(uuid)
    .fetch_all(w.db().pool())
    .await
    .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

async fn disks_of(w: &World, uuid: &str) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT d.cid FROM persistent_disks d JOIN instances i ON i.id = d.instance_id \
         WHERE i.uuid = $1 AND d.active = 1",
    )
    .bind(uuid)
    .fetch_all(w.db().pool())
    .await
    .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

/// The pid of the sleeper job on a VM, if its process runs.
fn job_pid(w: &World, cid: &str) -> Option<i32> {
    let text = std::fs::read_to_string(w.vm_dir(cid).join("sys/run/sleeper/sleeper.pid")).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    (!matches!(state, Some("Z") | Some("X") | None)).then_some(pid)
}

impl World {
    /// `PUT` as the official CLI sends a state change: text/yaml, empty body.
    async fn put_empty(&self, path: &str) -> reqwest::Response {
        self.client
            .put(format!("{}{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "text/yaml")
            .body(Vec::<u8>::new())
            .send()
            .await
            .unwrap()
    }

    async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "text/yaml")
            .body(Vec::<u8>::new())
            .send()
            .await
            .unwrap()
    }

    /// A task endpoint that must succeed; returns the task.
    async fn task_ok(&self, resp: reqwest::Response) -> (i64, Value) {
        let (id, task) = self.task_follow(resp).await;
        assert_eq!(task["state"], "done", "task {id}: {task}");
        (id, task)
    }

    async fn ignore(&self, uuid: &str, ignore: bool) {
        let resp = self
            .client
            .put(format!(
                "{}/deployments/dep/instance_groups/sleeper/{uuid}/ignore",
                self.url()
            ))
            .basic_auth("admin", Some(&self.password))
            .json(&json!({"ignore": ignore}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    async fn instance_events(&self, task: i64) -> Vec<(String, String, Option<String>)> {
        let events: Vec<Value> = self
            .get(&format!("/events?task={task}"))
            .await
            .json()
            .await
            .unwrap();
        events
            .iter()
            .filter(|e| e["object_type"] == "instance")
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or_default().to_owned(),
                    e["object_name"].as_str().unwrap_or_default().to_owned(),
                    e["error"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_changes_converge_instances_without_a_new_plan() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with_stemcell(work.path(), &cloud_config()).await;
    w.upload("releases", &sleepers_release(work.path())).await;
    let (_, task) = w.deploy(MANIFEST, "").await;
    assert_eq!(task["state"], "done", "{task}");

    let before = instances(&w).await;
    assert_eq!(before.len(), 3);
    for i in &before {
        assert_eq!(i.state, "started");
        let cid = i.cid.as_deref().unwrap();
        assert!(job_pid(&w, cid).is_some(), "{i:?} runs its job");
    }
    let (i0, i1, i2) = (before[0].clone(), before[1].clone(), before[2].clone());
    let cid0 = i0.cid.clone().unwrap();

    // Validation: a bad index, an unknown instance, an unknown deployment, a bad state.
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper/snoopy?state=stopped")
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 70002);
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper/7?state=stopped")
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 70001);
    let resp = w.put_empty("/deployments/nope/jobs/*?state=stopped").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], 70000);
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper?state=sideways")
        .await;
    assert_eq!(resp.status(), 400);

    // stop (by uuid): processes stopped, VM kept, state stopped; nobody else touched.
    let resp = w
        .put_empty(&format!(
            "/deployments/dep/jobs/sleeper/{}?state=stopped",
            i0.uuid
        ))
        .await;
    let (stop_task, task) = w.task_ok(resp).await;
    assert_eq!(task["description"], "create deployment");
    let now = instances(&w).await;
    assert_eq!(now[0].state, "stopped");
    assert_eq!(now[0].cid.as_deref(), Some(cid0.as_str()), "VM kept");
    assert_eq!(job_pid(&w, &cid0), None, "job stopped");
    assert_eq!(now[1], i1);
    assert_eq!(now[2], i2);
    let stages = w.stages(stop_task);
    assert!(
        stages.contains(&("Updating instance".to_owned(), vec!["sleeper".to_owned()])),
        "{stages:?}"
    );
    let events = w.instance_events(stop_task).await;
    let name0 = format!("sleeper/{}", i0.uuid);
    assert_eq!(
        events,
        vec![
            ("stop".to_owned(), name0.clone(), None),
            ("stop".to_owned(), name0.clone(), None)
        ]
    );

    // The listing shows the state too.
    let resp = w.get("/deployments/dep/instances?format=full").await;
    let (lid, _) = w.task_ok(resp).await;
    let text = w
        .get(&format!("/tasks/{lid}/output?type=result"))
        .await
        .text()
        .await
        .unwrap();
    let line: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["id"] == i0.uuid.as_str())
        .unwrap();
    assert_eq!(line["state"], "stopped", "{line}");

    // A deploy of the same manifest keeps the stopped instance stopped.
    let (_, task) = w.deploy(MANIFEST, "").await;
    assert_eq!(task["state"], "done", "{task}");
    let now = instances(&w).await;
    assert_eq!(now[0].state, "stopped");
    assert_eq!(job_pid(&w, now[0].cid.as_deref().unwrap()), None);

    // start (by index): running again on the same VM.
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper/0?state=started")
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    assert_eq!(now[0].state, "started");
    assert_eq!(now[0].cid.as_deref(), Some(cid0.as_str()));
    assert!(job_pid(&w, &cid0).is_some(), "job runs again");

    // stop --hard: no VM, disk and IP kept; start gives a new VM with the same IP and data.
    let cid1 = i1.cid.clone().unwrap();
    let store1 = w.vm_dir(&cid1).join("store");
    assert!(store1.is_dir(), "disk mounted at store");
    std::fs::write(store1.join("data.txt"), "kept").unwrap();
    let ips1 = ip_of(&w, &i1.uuid).await;
    let disks1 = disks_of(&w, &i1.uuid).await;
    assert_eq!(ips1.len(), 1);
    assert_eq!(disks1.len(), 1);
    let alive = w.vms_alive();
    let resp = w
        .put_empty(&format!(
            "/deployments/dep/jobs/sleeper/{}?state=detached&skip_drain=true",
            i1.uuid
        ))
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    assert_eq!(now[1].state, "detached");
    assert_eq!(now[1].cid, None, "VM deleted");
    assert_eq!(w.vms_alive(), alive - 1);
    assert_eq!(ip_of(&w, &i1.uuid).await, ips1, "IP kept");
    assert_eq!(disks_of(&w, &i1.uuid).await, disks1, "disk kept");

    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper/1?state=started")
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    assert_eq!(now[1].state, "started");
    let new1 = now[1].cid.clone().unwrap();
    assert_ne!(new1, cid1, "a new VM");
    assert_eq!(ip_of(&w, &i1.uuid).await, ips1, "same IP");
    assert_eq!(
        std::fs::read_to_string(w.vm_dir(&new1).join("store/data.txt")).unwrap(),
        "kept"
    );
    assert!(job_pid(&w, &new1).is_some());

    // restart: same VM, the job restarted, nothing else touched.
    let cid2 = i2.cid.clone().unwrap();
    let pid2 = job_pid(&w, &cid2).unwrap();
    let before = instances(&w).await;
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper/2?state=restart")
        .await;
    let (restart_task, _) = w.task_ok(resp).await;
    let now = instances(&w).await;
    assert_eq!(now[2].cid.as_deref(), Some(cid2.as_str()), "same VM");
    let pid2_after = job_pid(&w, &cid2).expect("job runs after restart");
    assert_ne!(pid2_after, pid2, "job restarted");
    assert_eq!(now[0], before[0]);
    assert_eq!(now[1], before[1]);
    let events = w.instance_events(restart_task).await;
    assert!(
        events.iter().all(|e| e.0 == "restart" && e.2.is_none()),
        "{events:?}"
    );

    // recreate one instance: new VM, same IP and disk, others untouched.
    let ips0 = ip_of(&w, &i0.uuid).await;
    let disks0 = disks_of(&w, &i0.uuid).await;
    let resp = w
        .put_empty(&format!(
            "/deployments/dep/jobs/sleeper/{}?state=recreate",
            i0.uuid
        ))
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    let new0 = now[0].cid.clone().unwrap();
    assert_ne!(new0, cid0);
    assert_eq!(now[0].state, "started");
    assert_eq!(ip_of(&w, &i0.uuid).await, ips0);
    assert_eq!(disks_of(&w, &i0.uuid).await, disks0);
    assert!(job_pid(&w, &new0).is_some());
    assert_eq!(now[1], before[1]);
    assert_eq!(now[2].cid, before[2].cid);

    // dry run: nothing changes.
    let before = instances(&w).await;
    let resp = w
        .put_empty("/deployments/dep/jobs/*?state=recreate&dry_run=true")
        .await;
    let (_, task) = w.task_ok(resp).await;
    assert_eq!(task["description"], "create deployment (dry run)");
    assert_eq!(instances(&w).await, before);

    // ignore: a group recreate skips the ignored instance; naming it fails.
    w.ignore(&i1.uuid, true).await;
    let before = instances(&w).await;
    assert!(before[1].ignored);
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper?state=recreate&canaries=1&max_in_flight=50%25")
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    assert_eq!(now[1].cid, before[1].cid, "ignored instance untouched");
    assert_ne!(now[0].cid, before[0].cid);
    assert_ne!(now[2].cid, before[2].cid);
    let resp = w
        .put_empty(&format!(
            "/deployments/dep/jobs/sleeper/{}?state=stopped",
            i1.uuid
        ))
        .await;
    let (_, task) = w.task_follow(resp).await;
    assert_eq!(task["state"], "error");
    assert!(
        task["result"]
            .as_str()
            .unwrap_or_default()
            .contains("ignored instance"),
        "{task}"
    );
    // A deploy leaves it alone too.
    let (_, task) = w.deploy(MANIFEST, "?recreate=true").await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(instances(&w).await[1].cid, before[1].cid);
    w.ignore(&i1.uuid, false).await;
    assert!(!instances(&w).await[1].ignored);

    // delete-vm: the VM goes, the instance keeps its state; start brings a VM back.
    let before = instances(&w).await;
    let cid2 = before[2].cid.clone().unwrap();
    let (dv_task, task) = w.task_ok(w.delete(&format!("/vms/{cid2}")).await).await;
    assert_eq!(task["description"], format!("delete vm {cid2}"));
    assert!(!w.vm_dir(&cid2).exists(), "VM gone from the CPI");
    let now = instances(&w).await;
    assert_eq!(now[2].cid, None);
    assert_eq!(now[2].state, "started");
    assert_eq!(
        w.db_count(&format!("SELECT COUNT(*) FROM vms WHERE cid = '{cid2}'"))
            .await,
        0
    );
    let events: Vec<Value> = w
        .get(&format!("/events?task={dv_task}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "delete" && e["object_type"] == "vm"),
        "{events:?}"
    );
    let resp = w
        .put_empty("/deployments/dep/jobs/sleeper/2?state=started")
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    let back = now[2].cid.clone().expect("a VM again");
    assert!(job_pid(&w, &back).is_some());

    // A cid nobody knows is still handed to the CPI; the task succeeds.
    w.task_ok(w.delete("/vms/no-such-vm").await).await;

    // The whole deployment: stop all, then start all.
    let resp = w.put_empty("/deployments/dep/jobs/*?state=stopped").await;
    w.task_ok(resp).await;
    for i in instances(&w).await {
        assert_eq!(i.state, "stopped");
        assert_eq!(job_pid(&w, i.cid.as_deref().unwrap()), None);
    }
    let resp = w.put_empty("/deployments/dep/jobs/*?state=started").await;
    w.task_ok(resp).await;
    for i in instances(&w).await {
        assert_eq!(i.state, "started");
        assert!(job_pid(&w, i.cid.as_deref().unwrap()).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_converge_actions_act_on_one_instance() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with_stemcell(work.path(), &cloud_config()).await;
    w.upload("releases", &sleepers_release(work.path())).await;
    let manifest = MANIFEST.replace("instances: 3", "instances: 2");
    let (_, task) = w.deploy(&manifest, "").await;
    assert_eq!(task["state"], "done", "{task}");
    let before = instances(&w).await;
    let (i0, i1) = (before[0].clone(), before[1].clone());
    let base = "/deployments/dep/instance_groups/sleeper";

    // stop --hard --no-converge: no VM, state detached.
    let resp = w
        .post_empty(&format!("{base}/{}/actions/stop?hard=true", i0.uuid))
        .await;
    let (id, task) = w.task_ok(resp).await;
    assert_eq!(task["description"], "stop instance");
    let now = instances(&w).await;
    assert_eq!(now[0].state, "detached");
    assert_eq!(now[0].cid, None);
    assert_eq!(now[1], i1);
    let stages = w.stages(id);
    assert_eq!(
        stages,
        vec![(format!("Updating instance sleeper/{} (0)", i0.uuid), vec![])]
    );

    // start: a new VM, running.
    let resp = w.post_empty(&format!("{base}/0/actions/start")).await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    assert_eq!(now[0].state, "started");
    let cid = now[0].cid.clone().expect("a VM again");
    assert_ne!(Some(cid.clone()), i0.cid);
    assert!(job_pid(&w, &cid).is_some());

    // restart: same VM, new process.
    let pid = job_pid(&w, &cid).unwrap();
    let resp = w
        .post_empty(&format!(
            "{base}/{}/actions/restart?skip_drain=true",
            i0.uuid
        ))
        .await;
    let (id, _) = w.task_ok(resp).await;
    assert_eq!(instances(&w).await[0].cid.as_deref(), Some(cid.as_str()));
    let after = job_pid(&w, &cid).expect("running after restart");
    assert_ne!(after, pid);
    let events = w.instance_events(id).await;
    let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert!(
        actions.contains(&"restart") && actions.contains(&"stop") && actions.contains(&"start"),
        "{events:?}"
    );

    // recreate: a new VM.
    let resp = w
        .post_empty(&format!("{base}/{}/actions/recreate", i0.uuid))
        .await;
    w.task_ok(resp).await;
    let now = instances(&w).await;
    let new = now[0].cid.clone().unwrap();
    assert_ne!(new, cid);
    assert_eq!(now[0].state, "started");
    assert!(job_pid(&w, &new).is_some());
    assert_eq!(now[1], i1);

    // An ignored instance is refused.
    w.ignore(&i1.uuid, true).await;
    let resp = w.post_empty(&format!("{base}/1/actions/stop")).await;
    let id = task_id(resp).await;
    let task = w.task_wait(id).await;
    assert_eq!(task["state"], "error", "{task}");
    assert!(
        task["result"]
            .as_str()
            .unwrap_or_default()
            .contains("ignored instance"),
        "{task}"
    );
    // Unknown action: 404.
    let resp = w.post_empty(&format!("{base}/0/actions/explode")).await;
    assert_eq!(resp.status(), 404);
}
