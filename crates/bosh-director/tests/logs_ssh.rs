//! `bosh logs` and `bosh ssh` end to end (director-api.md §5.8, §5.9): an in-process director
//! on the sim CPI whose VMs are real `bosh-agent` processes, the greeter example deployed on
//! two instances. The agents tar their log dirs into the director's blobstore; the task's
//! `result` names the bundle, which `GET /resources/{id}` serves. ssh setup and cleanup make
//! and remove the ephemeral user where the dummy platform keeps it (`<base>/bosh_ssh/<user>`).

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{World, greeter_tarball, processes_mentioning, sim_cloud_config, task_id};
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

const MANIFEST: &str = r#"
name: dep
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
  networks: [{name: default}]
  jobs:
  - name: greeter
    release: greeter
    properties:
      port: 8080
      bind_instance_address: true
"#;

/// Entry name → bytes of a gzipped tarball.
fn tgz_entries(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut ar = tar::Archive::new(GzDecoder::new(bytes));
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name.trim_start_matches("./").to_owned(), data);
    }
    out
}

struct Inst {
    uuid: String,
    index: i64,
    cid: String,
    ip: String,
}

impl World {
    async fn insts(&self) -> Vec<Inst> {
        let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
            "SELECT i.uuid, i.instance_index, v.cid, a.address FROM instances i \
             JOIN vms v ON v.instance_id = i.id AND v.active = 1 \
             JOIN ip_addresses a ON a.instance_id = i.id \
             WHERE i.deployment = 'dep' ORDER BY i.instance_index",
        )
        .fetch_all(self.db().pool())
        .await
        .unwrap();
        rows.into_iter()
            .map(|(uuid, index, cid, ip)| Inst {
                uuid,
                index,
                cid,
                ip,
            })
            .collect()
    }

    /// Starts `fetch_logs` for `path` and waits for it.
    async fn logs(&self, path: &str) -> Value {
        let (_, t) = self.task_follow(self.get(path).await).await;
        t
    }

    async fn resource(&self, id: &str) -> reqwest::Response {
        self.get(&format!("/resources/{id}")).await
    }

    async fn ssh_task(&self, body: Value) -> (i64, Value) {
        let resp = self
            .client
            .post(format!("{}/deployments/dep/ssh", self.url()))
            .basic_auth("admin", Some(&self.password))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let id = task_id(resp).await;
        (id, self.task_wait(id).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_fetched_and_ssh_users_come_and_go() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with_stemcell(work.path(), &sim_cloud_config("127.97.0", "")).await;
    w.upload("releases", &greeter_tarball(work.path(), "greeter", None))
        .await;
    let (_, t) = w.deploy(MANIFEST, "").await;
    assert_eq!(t["state"], "done", "{t}");
    let insts = w.insts().await;
    assert_eq!(insts.len(), 2);

    // Something only this test wrote, next to what the job's ctl script logs itself.
    for i in &insts {
        let job_logs = w.vm_dir(&i.cid).join("data/sys/log/greeter");
        assert!(
            job_logs.join("ctl.stdout.log").is_file(),
            "the greeter job logs under {}",
            job_logs.display()
        );
        std::fs::write(job_logs.join("marker.log"), format!("marker {}\n", i.uuid)).unwrap();
        let agent_logs = w.vm_dir(&i.cid).join("bosh/log");
        std::fs::create_dir_all(&agent_logs).unwrap();
        std::fs::write(agent_logs.join("current"), format!("agent of {}\n", i.uuid)).unwrap();
    }

    // One instance by uuid: the agent's tarball itself is the bundle.
    let t = w
        .logs(&format!(
            "/deployments/dep/jobs/greeter/{}/logs?type=job",
            insts[0].uuid
        ))
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["description"], "fetch logs");
    let id = t["result"].as_str().unwrap().to_owned();
    let resp = w.resource(&id).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let entries = tgz_entries(&resp.bytes().await.unwrap());
    let ctl = String::from_utf8_lossy(&entries["greeter/ctl.stdout.log"]).into_owned();
    assert!(ctl.contains("starting greeter"), "{ctl}");
    assert_eq!(
        entries["greeter/marker.log"],
        format!("marker {}\n", insts[0].uuid).into_bytes()
    );
    assert!(
        !entries.keys().any(|k| k.contains("current")),
        "job logs only: {:?}",
        entries.keys()
    );
    let stages: Vec<String> = w
        .stages(t["id"].as_i64().unwrap())
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(
        stages,
        vec![format!("Fetching logs for greeter/{} (0)", insts[0].uuid)]
    );

    // By index, agent logs, and a filter.
    let t = w
        .logs("/deployments/dep/jobs/greeter/1/logs?type=agent")
        .await;
    assert_eq!(t["state"], "done", "{t}");
    let resp = w.resource(t["result"].as_str().unwrap()).await;
    let entries = tgz_entries(&resp.bytes().await.unwrap());
    assert_eq!(
        entries.keys().cloned().collect::<Vec<_>>(),
        vec!["current".to_owned()]
    );
    assert_eq!(
        entries["current"],
        format!("agent of {}\n", insts[1].uuid).into_bytes()
    );
    let t = w
        .logs("/deployments/dep/jobs/greeter/0/logs?type=job&filters=greeter/marker.log")
        .await;
    let resp = w.resource(t["result"].as_str().unwrap()).await;
    let entries = tgz_entries(&resp.bytes().await.unwrap());
    assert_eq!(
        entries.keys().cloned().collect::<Vec<_>>(),
        vec!["greeter/marker.log".to_owned()]
    );

    // The whole deployment: one tarball per instance, packed together; the parts are gone.
    let blobs_before = deploy_world::files_under(&w.dir.join("blobstore")).len();
    let t = w.logs("/deployments/dep/jobs/*/*/logs?type=job").await;
    assert_eq!(t["state"], "done", "{t}");
    let all_id = t["result"].as_str().unwrap().to_owned();
    let resp = w.resource(&all_id).await;
    let outer = tgz_entries(&resp.bytes().await.unwrap());
    assert_eq!(outer.len(), 2, "{:?}", outer.keys());
    for i in &insts {
        let (name, inner) = outer
            .iter()
            .find(|(k, _)| k.starts_with(&format!("greeter.{}.", i.uuid)))
            .unwrap_or_else(|| panic!("no entry for {}: {:?}", i.uuid, outer.keys()));
        assert!(name.ends_with(".tgz"), "{name}");
        let inner = tgz_entries(inner);
        assert_eq!(
            inner["greeter/marker.log"],
            format!("marker {}\n", i.uuid).into_bytes()
        );
    }
    assert_eq!(
        deploy_world::files_under(&w.dir.join("blobstore")).len(),
        blobs_before + 1,
        "only the bundle is kept"
    );
    assert!(
        w.stages(t["id"].as_i64().unwrap())
            .iter()
            .any(|s| s.0 == "Fetching group of logs")
    );

    // Bad requests fail before a task starts.
    let resp = w.get("/deployments/dep/jobs/greeter/7/logs").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 70001, "{body}");
    let resp = w.get("/deployments/nope/jobs/*/*/logs").await;
    assert_eq!(resp.status(), 404);
    let resp = w.get("/deployments/dep/jobs/*/*/logs?type=kernel").await;
    assert_eq!(resp.status(), 400);

    // Expired bundles go: every bundle was registered, a zero TTL expires them all.
    let markers = deploy_world::files_under(&bosh_director::logs::log_bundles_dir(&w.dir));
    assert_eq!(markers.len(), 4, "{markers:?}");
    let removed = bosh_director::logs::log_bundles_clean(
        w.state().services.blobstore.as_ref(),
        &bosh_director::logs::log_bundles_dir(&w.dir),
        Duration::ZERO,
    )
    .await;
    assert_eq!(removed, 4);
    assert_eq!(w.resource(&all_id).await.status(), 404);
    let kept = bosh_director::logs::log_bundles_clean(
        w.state().services.blobstore.as_ref(),
        &bosh_director::logs::log_bundles_dir(&w.dir),
        bosh_director::logs::LOG_BUNDLE_TTL,
    )
    .await;
    assert_eq!(kept, 0);

    // ssh setup on the whole group: one session per instance, the user made with the key.
    let user = "bosh_0123456789abcde";
    let key = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 test@example";
    let (id, t) = w
        .ssh_task(json!({
            "command": "setup", "deployment_name": "dep",
            "target": {"job": "greeter", "indexes": [], "ids": []},
            "params": {"user": user, "password": "p", "public_key": format!("{key}\n")},
        }))
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(
        t["description"],
        r#"ssh: setup:{"job" => "greeter", "indexes" => [], "ids" => []}"#
    );
    let result = w.get(&format!("/tasks/{id}/output?type=result")).await;
    let text = result.text().await.unwrap();
    assert!(text.ends_with('\n'), "{text}");
    let sessions: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(sessions.len(), 2, "{text}");
    for i in &insts {
        let s = sessions
            .iter()
            .find(|s| s["id"] == i.uuid.as_str())
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(s["status"], "success");
        assert_eq!(s["job"], "greeter");
        assert_eq!(s["index"], i.index);
        assert_eq!(s["ip"], i.ip.as_str());
        // The dummy platform has no sshd, so no host key; the field is still there.
        assert!(s["host_public_key"].is_string(), "{s}");
        assert!(s.get("gateway_host").is_some() && s.get("gateway_user").is_some());
        let keys = w
            .vm_dir(&i.cid)
            .join("bosh_ssh")
            .join(user)
            .join(".ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), format!("{key}\n"));
    }
    let events: Vec<Value> = w
        .get("/events?action=setup%20ssh")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["context"]["user"], user);

    // Cleanup of one instance by index, then the rest.
    let (_, t) = w
        .ssh_task(json!({
            "command": "cleanup", "deployment_name": "dep",
            "target": {"job": "greeter", "indexes": ["0"], "ids": ["0"]},
            "params": {"user_regex": format!("^{user}")},
        }))
        .await;
    assert_eq!(t["state"], "done", "{t}");
    let home = |i: &Inst| w.vm_dir(&i.cid).join("bosh_ssh").join(user);
    assert!(!home(&insts[0]).exists());
    assert!(home(&insts[1]).exists(), "only index 0 was targeted");
    let (_, t) = w
        .ssh_task(json!({
            "command": "cleanup", "deployment_name": "dep",
            "target": {"indexes": [], "ids": []},
            "params": {"user_regex": "^bosh_"},
        }))
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert!(!home(&insts[1]).exists());

    // No match, and a bad command.
    let (_, t) = w
        .ssh_task(json!({
            "command": "setup", "target": {"job": "nope", "indexes": [], "ids": []},
            "params": {"user": user, "public_key": key},
        }))
        .await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["result"]
            .as_str()
            .unwrap()
            .contains("No instance with a VM"),
        "{t}"
    );
    let resp = w
        .client
        .post(format!("{}/deployments/dep/ssh", w.url()))
        .basic_auth("admin", Some(&w.password))
        .body(json!({"command": "reboot"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // An agent that does not answer: the task names the instance.
    let vm_dir = w.vm_dir(&insts[1].cid).display().to_string();
    let pids = processes_mentioning(&vm_dir);
    assert!(!pids.is_empty());
    let signal = |sig: &str| {
        for pid in &pids {
            let _ = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status();
        }
    };
    signal("-STOP");
    let t = w
        .logs(&format!(
            "/deployments/dep/jobs/greeter/{}/logs",
            insts[1].uuid
        ))
        .await;
    signal("-CONT");
    assert_eq!(t["state"], "error", "{t}");
    let msg = t["result"].as_str().unwrap();
    assert!(
        msg.contains(&format!("greeter/{}", insts[1].uuid)) && msg.contains("Timed out"),
        "{msg}"
    );
}
