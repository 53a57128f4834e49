//! Errands end to end on the sim CPI (harness: `common/deploy_world.rs`): `GET errands`, a
//! dedicated errand group (VM made for the run and deleted after it, or kept with
//! `keep-alive` and reused), a colocated errand on service instances (all, or filtered), exit
//! codes passed through, `when-changed`, and the logs tarball downloadable from `/resources`.
//! The release is built here from shell jobs, so nothing is compiled.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{TestJob, World, release_tarball, sim_cloud_config, sleeper_job};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use std::io::Read;
use std::path::{Path, PathBuf};

const SMOKE_SPEC: &str = r#"---
name: smoke
templates:
  run.erb: bin/run
packages: []
properties:
  message: {default: hello}
  exit_code: {default: 0}
"#;

/// Says its message on stdout (and into its log file), something on stderr, and exits with
/// `exit_code`.
const SMOKE_RUN: &str = r#"#!/bin/bash
mkdir -p /var/vcap/sys/log/smoke
echo "smoke says <%= p('message') %> on <%= spec.name %>/<%= spec.id %>" | tee -a /var/vcap/sys/log/smoke/run.log
echo "smoke stderr" >&2
exit <%= p('exit_code') %>
"#;

fn release(work: &Path) -> PathBuf {
    release_tarball(
        work,
        "errands",
        &[
            sleeper_job("svc"),
            TestJob {
                name: "smoke",
                spec: SMOKE_SPEC,
                monit: "",
                templates: &[("run.erb", SMOKE_RUN)],
            },
        ],
    )
}

/// `web` (2 service instances with `svc` and the `smoke` errand job) and `tests` (a
/// dedicated errand group running `smoke` with `exit_code`).
fn manifest(exit_code: i32, message: &str) -> String {
    format!(
        r#"
name: dep
releases: [{{name: errands, version: latest}}]
stemcells: [{{alias: default, os: debian-bookworm, version: latest}}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 1000-30000
  update_watch_time: 1000-30000
instance_groups:
- name: web
  instances: 2
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{{name: default}}]
  jobs:
  - {{name: svc, release: errands}}
  - {{name: smoke, release: errands, properties: {{message: colocated}}}}
- name: tests
  lifecycle: errand
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{{name: default}}]
  jobs:
  - name: smoke
    release: errands
    properties: {{message: {message}, exit_code: {exit_code}}}
"#
    )
}

impl World {
    /// Starts an errand run and waits for it; the task and its result lines.
    async fn errand_run(&self, name: &str, body: Value) -> (i64, Value, Vec<Value>) {
        self.errand_run_in("dep", name, body).await
    }

    async fn errand_run_in(&self, dep: &str, name: &str, body: Value) -> (i64, Value, Vec<Value>) {
        let resp = self
            .client
            .post(format!(
                "{}/deployments/{dep}/errands/{name}/runs",
                self.url()
            ))
            .basic_auth("admin", Some(&self.password))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (id, task) = self.task_follow(resp).await;
        let text = self
            .get(&format!("/tasks/{id}/output?type=result"))
            .await
            .text()
            .await
            .unwrap();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (id, task, lines)
    }

    async fn groups_with_vms(&self) -> Vec<String> {
        self.groups_with_vms_of("dep").await
    }

    async fn groups_with_vms_of(&self, deployment: &str) -> Vec<String> {
        self.instances(deployment)
            .await
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

async fn world_deployed(work: &Path, exit_code: i32) -> World {
    let w = World::start_with_stemcell(work, &sim_cloud_config("127.93.0", "")).await;
    w.upload("releases", &release(work)).await;
    let (_, task) = w.deploy(&manifest(exit_code, "dedicated"), "").await;
    assert_eq!(task["state"], "done", "{task}");
    w
}

/// Downloads a logs tarball, checks its digest and returns its file names.
async fn logs_download(w: &World, logs: &Value) -> Vec<String> {
    let id = logs["blobstore_id"].as_str().expect("logs blobstore id");
    let resp = w.get(&format!("/resources/{id}")).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let bytes = resp.bytes().await.unwrap();
    if let Some(sha1) = logs["sha1"].as_str().filter(|s| !s.is_empty()) {
        assert_eq!(hex::encode(Sha1::digest(&bytes)), sha1);
    }
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut text = String::new();
        let _ = e.read_to_string(&mut text);
        names.push(format!("{path}:{}", text.trim()));
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedicated_errand_runs_on_its_own_vm() {
    let work = tempfile::tempdir().unwrap();
    let w = world_deployed(work.path(), 0).await;
    // The deploy makes no VM for the errand group.
    assert_eq!(w.groups_with_vms().await, ["web", "web"]);
    let created = w.vms_created();

    let (id, task, lines) = w.errand_run("tests", json!({})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["description"], "run errand tests from deployment dep");
    assert_eq!(task["result"], "1 succeeded, 0 errored, 0 canceled");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let r = &lines[0];
    assert_eq!(r["instance"]["group"], "tests");
    let uuid = r["instance"]["id"].as_str().unwrap().to_owned();
    assert_eq!(r["exit_code"], 0);
    assert_eq!(
        r["stdout"].as_str().unwrap().trim(),
        format!("smoke says dedicated on tests/{uuid}")
    );
    assert_eq!(r["stderr"].as_str().unwrap().trim(), "smoke stderr");
    let files = logs_download(&w, &r["logs"]).await;
    assert!(
        files
            .iter()
            .any(|f| f.contains("smoke/run.log") && f.contains("smoke says dedicated")),
        "{files:?}"
    );
    let stages: Vec<String> = w.stages(id).into_iter().map(|s| s.0).collect();
    for s in [
        "Preparing deployment",
        "Creating missing vms",
        "Running errand",
    ] {
        assert!(stages.iter().any(|x| x == s), "{s} missing from {stages:?}");
    }
    assert!(
        stages
            .iter()
            .any(|x| x.starts_with("Fetching logs for tests/")),
        "{stages:?}"
    );
    // The VM was made for the run and is gone; the instance row stays.
    assert_eq!(w.vms_created(), created + 1);
    assert_eq!(w.groups_with_vms().await, ["web", "web"]);
    assert_eq!(
        w.db_count("SELECT COUNT(*) FROM instances WHERE instance_group = 'tests'")
            .await,
        1
    );
    let events = w
        .get("/events?object_type=errand")
        .await
        .json::<Value>()
        .await
        .unwrap();
    let ended = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["parent_id"].is_string())
        .expect("end event");
    assert_eq!(ended["action"], "run");
    assert_eq!(ended["object_name"], "tests");
    assert_eq!(ended["instance"], format!("tests/{uuid}"));
    assert_eq!(ended["context"]["exit_code"], 0);

    // when-changed: nothing changed since that success, so nothing runs.
    let created = w.vms_created();
    let (_, task, lines) = w.errand_run("tests", json!({"when-changed": true})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["result"], "skipped - no changes detected");
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(w.vms_created(), created);

    // keep-alive keeps the VM, and the next keep-alive run reuses it (same instance).
    let (_, task, lines) = w.errand_run("tests", json!({"keep-alive": true})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(lines[0]["instance"]["id"], uuid.as_str());
    let kept = w.instances("dep").await;
    let errand_vm: Vec<_> = kept.iter().filter(|r| r.0 == "tests").collect();
    assert_eq!(errand_vm.len(), 1, "{kept:?}");
    let cid = errand_vm[0].2.clone();
    let created = w.vms_created();
    let (_, task, lines) = w.errand_run("tests", json!({"keep-alive": true})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(lines[0]["exit_code"], 0);
    assert_eq!(w.vms_created(), created, "the kept VM is reused");
    let again = w.instances("dep").await;
    assert!(
        again.iter().any(|r| r.0 == "tests" && r.2 == cid),
        "{again:?}"
    );
    // A run without keep-alive deletes it.
    let (_, task, _) = w.errand_run("tests", json!({})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(w.groups_with_vms().await, ["web", "web"]);

    // A failing errand: its exit code is the result, the task still succeeds.
    let (_, task) = w.deploy(&manifest(3, "failing"), "").await;
    assert_eq!(task["state"], "done", "{task}");
    let (_, task, lines) = w.errand_run("tests", json!({"when-changed": true})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["result"], "0 succeeded, 1 errored, 0 canceled");
    assert_eq!(lines[0]["exit_code"], 3);
    assert!(
        lines[0]["stdout"]
            .as_str()
            .unwrap()
            .contains("smoke says failing"),
        "{lines:?}"
    );
    // After a failure, when-changed runs again even though nothing changed.
    let (_, task, lines) = w.errand_run("tests", json!({"when-changed": true})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(lines.len(), 1, "{task}");
    assert_eq!(w.groups_with_vms().await, ["web", "web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn colocated_errand_runs_on_service_instances() {
    let work = tempfile::tempdir().unwrap();
    let w = world_deployed(work.path(), 0).await;

    let list: Value = w
        .get("/deployments/dep/errands")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([{"name": "tests"}, {"name": "smoke"}]));
    let missing = w.get("/deployments/nope/errands").await;
    assert_eq!(missing.status().as_u16(), 404);

    // By job name the errand runs on every group with the job, as Ruby does: both `web`
    // instances (colocated) and the `tests` errand group (its own VM, deleted after).
    let created = w.vms_created();
    let (_, task, lines) = w.errand_run("smoke", json!({})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["result"], "3 succeeded, 0 errored, 0 canceled");
    let (lines, dedicated): (Vec<Value>, Vec<Value>) = lines
        .into_iter()
        .partition(|l| l["instance"]["group"] == "web");
    assert_eq!(dedicated.len(), 1, "{dedicated:?}");
    assert_eq!(dedicated[0]["instance"]["group"], "tests");
    assert!(
        dedicated[0]["stdout"]
            .as_str()
            .unwrap()
            .contains("smoke says dedicated"),
        "{dedicated:?}"
    );
    let web: Vec<(String, String, String, String)> = w
        .instances("dep")
        .await
        .into_iter()
        .filter(|r| r.0 == "web")
        .collect();
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["instance"]["group"], "web");
            assert_eq!(l["exit_code"], 0);
            let id = l["instance"]["id"].as_str().unwrap().to_owned();
            assert_eq!(
                l["stdout"].as_str().unwrap().trim(),
                format!("smoke says colocated on web/{id}")
            );
            id
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = web.iter().map(|r| r.1.clone()).collect();
    want.sort();
    assert_eq!(ids, want);
    // Only the errand group's VM is made (and deleted); the service keeps running.
    assert_eq!(w.vms_created(), created + 1);
    assert_eq!(w.groups_with_vms().await, ["web", "web"]);
    for r in &web {
        assert_eq!(w.job_state(&r.3).await, "running");
    }
    let files = logs_download(&w, &lines[0]["logs"]).await;
    assert!(
        files.iter().any(|f| f.contains("smoke says colocated")),
        "{files:?}"
    );

    // An instance filter by index picks one instance.
    let (_, task, lines) = w
        .errand_run("smoke", json!({"instances": [{"group": "web", "id": "1"}]}))
        .await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(lines.len(), 1);
    let index_one: (String,) = sqlx::query_as(
        "SELECT uuid FROM instances WHERE instance_group = 'web' AND instance_index = 1",
    )
    .fetch_one(w.db().pool())
    .await
    .unwrap();
    assert_eq!(lines[0]["instance"]["id"], index_one.0.as_str());

    // A filter naming nothing fails the task.
    let (_, task, _) = w
        .errand_run("smoke", json!({"instances": [{"group": "web", "id": "7"}]}))
        .await;
    assert_eq!(task["state"], "error", "{task}");
    assert!(
        task["result"]
            .as_str()
            .unwrap()
            .contains("No instances match selection criteria: [web/7]"),
        "{task}"
    );
    let (_, task, _) = w.errand_run("nope", json!({})).await;
    assert_eq!(task["state"], "error", "{task}");
    assert!(
        task["result"]
            .as_str()
            .unwrap()
            .contains("Errand 'nope' doesn't exist"),
        "{task}"
    );
    let (_, task, _) = w.errand_run("web", json!({})).await;
    assert_eq!(task["state"], "error", "{task}");
    assert!(
        task["result"]
            .as_str()
            .unwrap()
            .contains("is not an errand"),
        "{task}"
    );
}

const GREETER_CLOUD_CONFIG: &str = r#"
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.96.0.0/24
    gateway: 127.96.0.1
    reserved: [127.96.0.2 - 127.96.0.9]
    azs: [z1, z2]
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
  reuse_compilation_vms: true
"#;

/// The example greeter deployment as shipped (`examples/manifests/greeter.yml`): its
/// `smoke-tests` errand group checks every greeter server and the proxy through its links.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn greeter_smoke_tests_errand_passes() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with_stemcell(work.path(), GREETER_CLOUD_CONFIG).await;
    w.upload(
        "releases",
        &deploy_world::greeter_tarball(work.path(), "greeter", None),
    )
    .await;
    let manifest_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/manifests/greeter.yml");
    let manifest = std::fs::read_to_string(manifest_path).unwrap();
    let (_, task) = w.deploy(&manifest, "").await;
    assert_eq!(task["state"], "done", "{task}");
    let (_, task, lines) = w.errand_run_in("greeter", "smoke-tests", json!({})).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["instance"]["group"], "smoke-tests");
    assert_eq!(lines[0]["exit_code"], 0, "{lines:?}");
    let stdout = lines[0]["stdout"].as_str().unwrap();
    // Every server of the link is named in the report.
    let greeters: Vec<String> = w
        .instances("greeter")
        .await
        .into_iter()
        .filter(|r| r.0 == "greeter")
        .map(|r| r.1)
        .collect();
    assert_eq!(greeters.len(), 3);
    for id in &greeters {
        assert!(stdout.contains(id.as_str()), "{id} missing from {stdout}");
    }
    assert!(
        !w.groups_with_vms_of("greeter")
            .await
            .contains(&"smoke-tests".to_owned()),
        "the errand VM is deleted"
    );
}
