//! `bosh deploy` end to end: an in-process director with `--cpi sim` (its own nats-server
//! child, the real `bosh-agent` as each VM), the greeter example release and a sim stemcell
//! uploaded over the API, deployed through `POST /deployments` on a loopback network, so the
//! greeter servers answer on their own 127.x addresses.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{World, greeter_tarball, http_get};

const CLOUD_CONFIG: &str = r#"
azs: [{name: z1}, {name: z2}]
vm_types: [{name: small, cloud_properties: {}}]
networks:
- name: default
  type: manual
  subnets:
  - range: 127.91.0.0/24
    gateway: 127.91.0.1
    reserved: [127.91.0.2 - 127.91.0.9]
    static: [127.91.0.200 - 127.91.0.220]
    azs: [z1, z2]
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
  reuse_compilation_vms: true
"#;

/// Several greeter servers and a proxy consuming their link; `GREETERS`, `PROXY_TIMEOUT`,
/// `NETWORK` and `FROM` are replaced per step.
const MANIFEST: &str = r#"
name: greeter
releases: [{name: greeter, version: latest}]
stemcells: [{alias: default, os: debian-bookworm, version: latest}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 200-30000
  update_watch_time: 200-30000
instance_groups:
- name: greeter
  instances: GREETERS
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: NETWORK}]
  jobs:
  - name: greeter
    release: greeter
    properties:
      port: 8080
      bind_instance_address: true
      greeting: Hello from BOSH!
      stats_token: ((greeter_stats_token))
    consumes:
      peers: {from: greeter}
- name: proxy
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - name: greeter-proxy
    release: greeter
    properties:
      port: 8000
      bind_instance_address: true
      connect_timeout_ms: PROXY_TIMEOUT
    consumes:
      backends: {from: FROM}
variables:
- name: greeter_stats_token
  type: password
"#;

fn manifest(greeters: u32, proxy_timeout: u32, network: &str, from: &str) -> String {
    MANIFEST
        .replace("GREETERS", &greeters.to_string())
        .replace("PROXY_TIMEOUT", &proxy_timeout.to_string())
        .replace("NETWORK", network)
        .replace("FROM", from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_redeploy_change_and_scale_the_greeter() {
    let w = World::start().await;
    let work = tempfile::tempdir().unwrap();
    w.upload_sim_stemcell(work.path()).await;
    w.upload("releases", &greeter_tarball(work.path(), "greeter", None))
        .await;
    w.cloud_config_update(CLOUD_CONFIG).await;

    // A manifest without a name is refused before any task.
    let resp = w
        .client
        .post(format!("{}/deployments", w.url()))
        .basic_auth("admin", Some(&w.password))
        .header("Content-Type", "text/yaml")
        .body("releases: []\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("name"));

    // An undefined network and a broken link fail the plan, naming them; nothing is created.
    let (_, t) = w.deploy(&manifest(3, 1000, "nowhere", "greeter"), "").await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(t["result"].as_str().unwrap().contains("nowhere"), "{t}");
    let (_, t) = w
        .deploy(&manifest(3, 1000, "default", "no-such-link"), "")
        .await;
    assert_eq!(t["state"], "error", "{t}");
    assert!(
        t["result"].as_str().unwrap().contains("no-such-link"),
        "{t}"
    );
    assert_eq!(w.vms_created(), 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM instances").await, 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 0);

    // A dry run plans and renders, and creates nothing.
    let (_, t) = w
        .deploy(&manifest(3, 1000, "default", "greeter"), "?dry_run=true")
        .await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["description"], "create deployment (dry run)");
    assert_eq!(w.vms_created(), 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM instances").await, 0);

    // Fresh deploy: every instance runs, and each greeter answers on its own address.
    let (id, t) = w.deploy(&manifest(3, 1000, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(t["result"], "/deployments/greeter");
    let stages = w.stages(id);
    for s in [
        "Preparing deployment",
        "Compiling packages",
        "Creating missing vms",
    ] {
        assert!(stages.iter().any(|(n, _)| n == s), "{stages:?}");
    }
    assert!(
        stages.contains(&("Updating instance".into(), vec!["greeter".into()])),
        "{stages:?}"
    );
    let canary = w
        .task_events(id)
        .into_iter()
        .filter(|e| e["stage"] == "Updating instance" && e["tags"][0] == "greeter")
        .filter_map(|e| e["task"].as_str().map(str::to_owned))
        .filter(|t| t.ends_with("(canary)"))
        .count();
    assert!(canary > 0, "no canary task");
    let instances = w.instances("greeter").await;
    assert_eq!(instances.len(), 4, "{instances:?}");
    for (group, _, _, agent) in &instances {
        assert_eq!(w.job_state(agent).await, "running", "{group}");
    }
    let greeter_ips = w.instance_ips("greeter").await;
    assert_eq!(greeter_ips.len(), 3);
    for ip in &greeter_ips {
        let answer = http_get(&format!("{ip}:8080")).await;
        assert!(answer.contains("Hello from BOSH!"), "{ip}: {answer}");
    }
    let proxy_ip = &w.instance_ips("proxy").await[0];
    assert!(
        http_get(&format!("{proxy_ip}:8000"))
            .await
            .contains("Hello from BOSH!")
    );
    assert_eq!(w.vms_alive(), 4, "compilation VMs are gone");

    // A no-op redeploy: no VM created or deleted, no apply, no "Updating instance".
    let (created, applies) = (w.vms_created(), w.applies());
    assert!(applies >= 4, "{applies}");
    let (id, t) = w.deploy(&manifest(3, 1000, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    assert_eq!(w.vms_created(), created);
    assert_eq!(w.applies(), applies);
    assert_eq!(w.instances("greeter").await, instances);
    assert!(
        !w.stages(id).iter().any(|(n, _)| n == "Updating instance"),
        "{:?}",
        w.stages(id)
    );

    // A proxy property change updates the proxy only, on the same VM.
    let (id, t) = w.deploy(&manifest(3, 1500, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let updating: Vec<_> = w
        .stages(id)
        .into_iter()
        .filter(|(n, _)| n == "Updating instance")
        .collect();
    assert_eq!(
        updating,
        vec![("Updating instance".to_owned(), vec!["proxy".to_owned()])]
    );
    assert_eq!(w.instances("greeter").await, instances, "VMs kept");
    assert_eq!(w.applies(), applies + 1);
    assert_eq!(w.vms_created(), created);

    // Scale down 3 → 1: two VMs deleted, their IPs released.
    let (_, t) = w.deploy(&manifest(1, 1500, "default", "greeter"), "").await;
    assert_eq!(t["state"], "done", "{t}");
    let after = w.instances("greeter").await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(w.vms_alive(), 2);
    assert_eq!(w.instance_ips("greeter").await.len(), 1);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 2);
    let kept = &after.iter().find(|i| i.0 == "greeter").unwrap().2;
    assert!(
        instances.iter().any(|i| &i.2 == kept),
        "the remaining greeter kept its VM"
    );
}
