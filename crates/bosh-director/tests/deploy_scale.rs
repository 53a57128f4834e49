//! A deploy at scale on simulated agents: the sim CPI with injected `create_vm` and agent
//! boot latency, each VM's agent an in-process task on the director's real NATS (its own
//! certificate and NATS user), several groups, a bounded VM-creation window. Speed is not
//! asserted here (bench/deploy_scale.sh measures it); every instance must end up running.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{TestJob, World, release_tarball};
use std::collections::BTreeSet;

const CLOUD_CONFIG: &str = r#"
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.93.0.0/24
    gateway: 127.93.0.1
    reserved: [127.93.0.2 - 127.93.0.9]
    azs: [z1, z2]
compilation:
  workers: 1
  network: default
  az: z1
  vm_type: small
"#;

const SPEC: &str = r#"---
name: app
templates:
  ctl.erb: bin/ctl
  app.conf.erb: config/app.conf
packages: []
properties:
  message: {default: hello}
"#;

const MONIT: &str = r#"check process app
  with pidfile /var/vcap/sys/run/app/app.pid
  start program "/var/vcap/jobs/app/bin/ctl start"
  group vcap
"#;

fn manifest(groups: &[(&str, u32)]) -> String {
    let mut out = String::from(
        "name: scale\nreleases: [{name: apps, version: latest}]\n\
         stemcells: [{alias: default, os: debian-bookworm, version: latest}]\n\
         update: {canaries: 1, max_in_flight: 100%, canary_watch_time: 1000-30000, update_watch_time: 1000-30000}\n\
         instance_groups:\n",
    );
    for (name, n) in groups {
        out.push_str(&format!(
            "- name: {name}\n  instances: {n}\n  azs: [z1, z2]\n  vm_type: small\n  stemcell: default\n  \
             networks: [{{name: default}}]\n  jobs: [{{name: app, release: apps, properties: {{message: {name}}}}}]\n"
        ));
    }
    out
}

async fn world_prepare(w: &World, work: &std::path::Path) {
    w.upload_sim_stemcell(work).await;
    w.cloud_config_update(CLOUD_CONFIG).await;
    let release = release_tarball(
        work,
        "apps",
        &[TestJob {
            name: "app",
            spec: SPEC,
            monit: MONIT,
            templates: &[
                ("ctl.erb", "#!/bin/bash\nexec sleep 100000\n"),
                ("app.conf.erb", "message: <%= p('message') %>\n"),
            ],
        }],
    );
    w.upload("releases", &release).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_instances_on_simulated_agents_all_run() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with(|o| {
        o.config.sim.simulated_agents = true;
        o.config.sim.create_vm_delay_ms = 50;
        o.config.sim.agent_boot_delay_ms = 50;
        o.config.deploy.vm_create_concurrency = 16;
    })
    .await;
    world_prepare(&w, work.path()).await;

    let agents = w.state().services.agents.clone().unwrap();
    let nats = agents.embedded().unwrap().clone();
    let reloads_before = nats.reload_count();
    let groups = [("web", 20), ("worker", 20), ("db", 10)];
    let (id, task) = w.deploy(&manifest(&groups), "").await;
    assert_eq!(task["state"], "done", "deploy: {task}");
    // The 50 VMs' agents were registered on NATS together: one nats-server reload, not one
    // per few VMs (each reload re-reads every user; at 1,000 VMs that dominated the deploy).
    let reloads = nats.reload_count() - reloads_before;
    assert!(reloads <= 2, "{reloads} nats-server reloads for one deploy");

    let instances = w.instances("scale").await;
    assert_eq!(instances.len(), 50, "{instances:?}");
    for (group, n) in groups {
        assert_eq!(
            instances.iter().filter(|i| i.0 == group).count(),
            n as usize,
            "{group}"
        );
    }
    let cids: BTreeSet<&str> = instances.iter().map(|i| i.2.as_str()).collect();
    assert_eq!(cids.len(), 50, "every instance has its own VM");
    assert_eq!(w.vms_alive(), 50, "the sim CPI holds 50 VMs");
    // No agent process was started: every VM's agent is simulated.
    let processes = deploy_world::processes_mentioning(&w.sim_root().display().to_string());
    assert!(processes.is_empty(), "agent processes: {processes:?}");

    // Each agent answers on its own inbox with the spec the director applied to it.
    for (group, uuid, cid, agent_id) in &instances {
        let state = agents
            .client()
            .get_state_value(agent_id, false)
            .await
            .unwrap();
        assert_eq!(state["job_state"], "running", "{group}/{uuid}: {state}");
        assert_eq!(state["deployment"], "scale");
        assert_eq!(state["job"]["name"], group.as_str());
        assert_eq!(state["id"], uuid.as_str());
        assert_eq!(state["vm"]["name"], cid.as_str());
    }
    let running: i64 = w
        .db_count("SELECT COUNT(*) FROM instances WHERE deployment = 'scale' AND state = 'started'")
        .await;
    assert_eq!(running, 50);
    let stages: Vec<String> = w.stages(id).into_iter().map(|s| s.0).collect();
    assert!(
        stages.iter().any(|s| s == "Creating missing vms"),
        "{stages:?}"
    );

    // Deleting the deployment deletes the VMs and stops their agents.
    let resp = w.delete("/deployments/scale").await;
    let (_, task) = w.task_follow(resp).await;
    assert_eq!(task["state"], "done", "delete: {task}");
    assert_eq!(w.vms_alive(), 0);
    let gone = agents
        .client()
        .ping_until_ready(&instances[0].3, std::time::Duration::from_secs(3))
        .await;
    assert!(gone.is_err(), "a deleted VM's agent no longer answers");
    // Their NATS users go too (written in the background, batched).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for (_, _, _, agent_id) in &instances {
        while nats.agent_known(agent_id).await {
            assert!(
                std::time::Instant::now() < deadline,
                "agent {agent_id} keeps its NATS user"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_vm_creation_leaves_no_nats_user_row_or_vm() {
    let work = tempfile::tempdir().unwrap();
    let w = World::start_with(|o| {
        o.config.sim.simulated_agents = true;
        o.config.sim.create_vm_delay_ms = 20;
        o.config.deploy.vm_create_concurrency = 4;
    })
    .await;
    world_prepare(&w, work.path()).await;
    let nats = w
        .state()
        .services
        .agents
        .clone()
        .unwrap()
        .embedded()
        .unwrap()
        .clone();
    assert_eq!(nats.agents_known_count().await, 0);
    // Every create_vm fails: the sim CPI no longer has the stemcell.
    std::fs::remove_dir_all(w.sim_root().join("stemcells")).unwrap();
    let (_, task) = w.deploy(&manifest(&[("web", 12)]), "").await;
    assert_eq!(task["state"], "error", "deploy: {task}");

    // The VMs that were tried undid themselves and the ids never used were unregistered:
    // no NATS user, no VM row, no VM.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while nats.agents_known_count().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} agents keep their NATS users",
            nats.agents_known_count().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(w.db_count("SELECT COUNT(*) FROM vms").await, 0);
    assert_eq!(w.vms_alive(), 0);
}
