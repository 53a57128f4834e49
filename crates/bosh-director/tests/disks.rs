//! Orphaned disks, `orphan-disk`, `attach-disk`, `delete-disk`, `clean-up` and
//! `cancel-tasks` end to end: an in-process director on the sim CPI (VMs are real
//! `bosh-agent` processes, disks are directories), the greeter example deployed with a
//! persistent disk.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use async_trait::async_trait;
use bosh_director::tasks::runner::{TaskContext, TaskError, TaskJob};
use deploy_world::{World, greeter_tarball, task_id};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The sim cloud config on `127.96.0.0/24`.
fn cloud_config() -> String {
    deploy_world::sim_cloud_config("127.96.0", "")
}

const MANIFEST: &str = r#"
name: disky
releases: [{name: greeter, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 200-30000
  update_watch_time: 200-30000
instance_groups:
- name: greeter
  instances: 2
  azs: [z1]
  vm_type: small
  stemcell: default
  persistent_disk: 1024
  networks: [{name: default}]
  jobs:
  - name: greeter
    release: greeter
    properties:
      port: 8080
      bind_instance_address: true
"#;

impl World {
    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.url()))
            .basic_auth("admin", Some(&self.password))
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// `(instance uuid, disk cid)` of every persistent disk of the deployment.
    async fn disks_of(&self, deployment: &str) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT i.uuid, d.cid FROM persistent_disks d JOIN instances i \
             ON i.id = d.instance_id WHERE i.deployment = $1 ORDER BY i.instance_index",
        )
        .bind(deployment)
        .fetch_all(self.db().pool())
        .await
        .unwrap()
    }

    /// The VM cid and agent id of an instance.
    async fn vm_of(&self, uuid: &str) -> (String, String) {
        sqlx::query_as(
            "SELECT v.cid, v.agent_id FROM vms v JOIN instances i ON i.id = v.instance_id \
             WHERE i.uuid = $1 AND v.active = 1",
        )
        .bind(uuid)
        .fetch_one(self.db().pool())
        .await
        .unwrap()
    }

    fn disk_dir(&self, cid: &str) -> std::path::PathBuf {
        self.sim_root().join("disks").join(cid)
    }
}

fn orphan_cids(list: &Value) -> Vec<String> {
    let mut cids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["disk_cid"].as_str().unwrap().to_owned())
        .collect();
    cids.sort();
    cids
}

fn assert_ruby_time(text: &str) {
    let ok = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z").is_ok();
    assert!(ok && text.ends_with(" +0000"), "orphaned_at: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disks_are_orphaned_attached_deleted_and_cleaned_up() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with_stemcell(work.path(), &cloud_config()).await;
    w.upload("releases", &greeter_tarball(work.path(), "greeter", None))
        .await;
    let (_, t) = w.deploy(MANIFEST, "").await;
    assert_eq!(t["state"], "done", "{t}");
    let disks = w.disks_of("disky").await;
    assert_eq!(disks.len(), 2, "{disks:?}");
    let (uuid0, d0) = disks[0].clone();
    let (uuid1, d1) = disks[1].clone();
    assert_eq!(w.json("/disks").await, json!([]));
    assert_eq!(w.json("/orphaned_vms").await, json!([]));

    // Data on the first instance's disk, to find again after attach-disk.
    let (vm0, agent0) = w.vm_of(&uuid0).await;
    let store = w.vm_dir(&vm0).join("store");
    std::fs::write(store.join("data.txt"), "kept").unwrap();

    // An attached disk cannot be deleted as an orphan.
    let resp = w.delete(&format!("/disks/{d0}")).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 520000, "{body}");

    // orphan-disk on a live instance: unmounted, detached, an orphan; the instance has none.
    let (_, t) = w
        .task_follow(w.delete(&format!("/disks/{d0}?orphan=true")).await)
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["description"], "orphan disk");
    assert_eq!(t["result"], format!("disk {d0} orphaned"));
    assert_eq!(w.disks_of("disky").await, vec![(uuid1.clone(), d1.clone())]);
    assert!(!store.join("data.txt").exists(), "the disk is unmounted");
    assert!(w.disk_dir(&d0).join("data/data.txt").is_file(), "data kept");
    let list = w.json("/disks").await;
    assert_eq!(orphan_cids(&list), vec![d0.clone()]);
    let o = &list[0];
    assert_eq!(o["size"], 1024);
    assert_eq!(o["az"], "z1");
    assert_eq!(o["deployment_name"], "disky");
    assert_eq!(o["instance_name"], format!("greeter/{uuid0}"));
    assert_eq!(o["cloud_properties"], json!({}));
    assert_ruby_time(o["orphaned_at"].as_str().unwrap());

    // attach-disk wants a stopped instance.
    let attach =
        format!("/disks/{d0}/attachments?deployment=disky&job=greeter&instance_id={uuid0}");
    let (_, t) = w
        .task_follow(w.send(reqwest::Method::PUT, &attach).await)
        .await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["result"]
            .as_str()
            .unwrap()
            .contains("must be in 'bosh stopped' state"),
        "{t}"
    );
    let resp = w
        .send(
            reqwest::Method::PUT,
            "/disks/x/attachments?deployment=nope&job=a&instance_id=b",
        )
        .await;
    assert_eq!(resp.status(), 404);

    // Stopped (as `bosh stop` leaves it: jobs stopped, state saved), the orphan goes back
    // with its data, mounted at store.
    let agents = w.state().services.agents.clone().unwrap();
    agents.client().stop(&agent0).await.unwrap();
    sqlx::query("UPDATE instances SET state = 'stopped' WHERE uuid = $1")
        .bind(&uuid0)
        .execute(w.db().pool())
        .await
        .unwrap();
    let (_, t) = w
        .task_follow(w.send(reqwest::Method::PUT, &attach).await)
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(
        t["description"],
        format!("attach disk '{d0}' to 'greeter/{uuid0}'")
    );
    assert_eq!(
        t["result"],
        format!("attached disk '{d0}' to 'greeter/{uuid0}' in deployment 'disky'")
    );
    assert_eq!(
        w.disks_of("disky").await,
        vec![(uuid0.clone(), d0.clone()), (uuid1.clone(), d1.clone())]
    );
    assert_eq!(w.json("/disks").await, json!([]));
    assert_eq!(
        std::fs::read_to_string(store.join("data.txt")).unwrap(),
        "kept"
    );

    // Deleting the deployment orphans both disks.
    let (_, t) = w.task_follow(w.delete("/deployments/disky").await).await;
    assert_eq!(t["state"], "done", "{t}");
    let list = w.json("/disks").await;
    let mut both = vec![d0.clone(), d1.clone()];
    both.sort();
    assert_eq!(orphan_cids(&list), both);
    for o in list.as_array().unwrap() {
        assert_eq!(o["deployment_name"], "disky");
        assert_eq!(o["size"], 1024);
        assert!(
            o["instance_name"].as_str().unwrap().starts_with("greeter/"),
            "{o}"
        );
    }

    // delete-disk: gone from the CPI and the list; an unknown cid is nothing to do.
    assert!(w.disk_dir(&d1).is_dir());
    let (_, t) = w.task_follow(w.delete(&format!("/disks/{d1}")).await).await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["description"], "delete orphan disks");
    assert_eq!(t["result"], format!("orphaned disk(s) {d1} deleted"));
    assert!(!w.disk_dir(&d1).exists(), "the sim disk directory is gone");
    assert_eq!(orphan_cids(&w.json("/disks").await), vec![d0.clone()]);
    let (_, t) = w.task_follow(w.delete("/disks/no-such-disk").await).await;
    assert_eq!(t["state"], "done", "{t}");

    // A plain clean-up keeps the newest two unused versions and every orphaned disk.
    let plain = w
        .json("/cleanup/dryrun?remove_all=false&keep_orphaned_disks=false")
        .await;
    for key in [
        "releases",
        "stemcells",
        "compiled_packages",
        "orphaned_disks",
    ] {
        assert_eq!(plain[key], json!([]), "{key}: {plain}");
    }
    for key in ["orphaned_vms", "exported_releases", "dns_blobs"] {
        assert_eq!(plain[key], json!([]), "{key}: {plain}");
    }
    let kept = w
        .json("/cleanup/dryrun?remove_all=true&keep_orphaned_disks=true")
        .await;
    assert_eq!(kept["orphaned_disks"], json!([]), "{kept}");

    // clean-up --all: the dry run lists exactly what the run removes.
    let dry = w
        .json("/cleanup/dryrun?remove_all=true&keep_orphaned_disks=false")
        .await;
    assert_eq!(
        dry["releases"],
        json!([{"name": "greeter", "versions": ["0+dev.1"]}])
    );
    let stemcells = dry["stemcells"].as_array().unwrap();
    assert_eq!(stemcells.len(), 1, "{dry}");
    assert_eq!(stemcells[0]["name"], "bosh-sim-debian-bookworm-go_agent");
    let stemcell_cid = stemcells[0]["cid"].as_str().unwrap().to_owned();
    let mut packages: Vec<String> = dry["compiled_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["stemcell_os"], "debian-bookworm", "{p}");
            p["package_name"].as_str().unwrap().to_owned()
        })
        .collect();
    packages.sort();
    assert_eq!(packages, vec!["greeter", "libgreet"]);
    assert_eq!(orphan_cids(&dry["orphaned_disks"]), vec![d0.clone()]);
    assert!(w.sim_root().join("stemcells").join(&stemcell_cid).exists());

    let resp = w
        .client
        .post(format!("{}/cleanup", w.url()))
        .basic_auth("admin", Some(&w.password))
        .json(&json!({"config": {"remove_all": true, "keep_orphaned_disks": false}}))
        .send()
        .await
        .unwrap();
    let (_, t) = w.task_follow(resp).await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["description"], "clean up all");
    let result = t["result"].as_str().unwrap();
    assert!(
        result.starts_with("Deleted 1 release(s), 1 stemcell(s), "),
        "{result}"
    );
    assert!(
        result.contains(", 1 orphaned disk(s), 0 orphaned vm(s), "),
        "{result}"
    );
    assert_eq!(w.json("/releases").await, json!([]));
    assert_eq!(w.json("/stemcells").await, json!([]));
    assert_eq!(w.json("/disks").await, json!([]));
    assert!(!w.disk_dir(&d0).exists());
    assert!(!w.sim_root().join("stemcells").join(&stemcell_cid).exists());
    assert_eq!(
        w.db_count("SELECT COUNT(*) FROM compiled_packages").await,
        0
    );
    assert_eq!(w.db_count("SELECT COUNT(*) FROM packages").await, 0);
    let after = w
        .json("/cleanup/dryrun?remove_all=true&keep_orphaned_disks=false")
        .await;
    for key in [
        "releases",
        "stemcells",
        "compiled_packages",
        "orphaned_disks",
    ] {
        assert_eq!(after[key], json!([]), "{key}: {after}");
    }
}

/// Holds a worker until cancelled.
struct BlockJob;

#[async_trait]
impl TaskJob for BlockJob {
    async fn run(&self, ctx: &TaskContext, _payload: Value) -> Result<String, TaskError> {
        loop {
            ctx.checkpoint().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_tasks_cancels_queued_tasks_by_type() {
    let w = World::start_with(|opts| {
        opts.config.workers = 1;
        opts.extra_jobs
            .push(("test_block".into(), Arc::new(BlockJob)));
    })
    .await;
    let new_task = |task_type: &str| bosh_director::tasks::store::NewTask {
        task_type: task_type.to_owned(),
        description: task_type.to_owned(),
        payload: json!({}),
        user: "admin".into(),
        deployment: None,
        context_id: String::new(),
    };
    let queue = &w.state().queue;
    let blocker = queue.task_enqueue(&new_task("test_block")).await.unwrap();
    // The only worker holds the blocker; clean-ups queue behind it.
    let mut state = String::new();
    for _ in 0..300 {
        let t: Value = w.json(&format!("/tasks/{}", blocker.id)).await;
        state = t["state"].as_str().unwrap().to_owned();
        if state == "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "processing");
    let mut queued = Vec::new();
    for _ in 0..2 {
        let resp = w
            .client
            .post(format!("{}/cleanup", w.url()))
            .basic_auth("admin", Some(&w.password))
            .json(&json!({"config": {"remove_all": false}}))
            .send()
            .await
            .unwrap();
        queued.push(task_id(resp).await);
    }
    for id in &queued {
        assert_eq!(w.json(&format!("/tasks/{id}")).await["state"], "queued");
    }

    let resp = w
        .client
        .post(format!("{}/tasks/cancel", w.url()))
        .basic_auth("admin", Some(&w.password))
        .json(&json!({"types": ["delete_artifacts"], "states": ["queued"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    for id in &queued {
        let t = w.task_wait_for(*id, Duration::from_secs(60)).await;
        assert_eq!(t["state"], "cancelled", "{t}");
    }
    // Other types are left alone.
    let t: Value = w.json(&format!("/tasks/{}", blocker.id)).await;
    assert_eq!(t["state"], "processing", "{t}");
    let resp = w.delete(&format!("/tasks/{}", blocker.id)).await;
    assert_eq!(resp.status(), 204);
    let t = w.task_wait_for(blocker.id.0, Duration::from_secs(60)).await;
    assert_eq!(t["state"], "cancelled", "{t}");
}
