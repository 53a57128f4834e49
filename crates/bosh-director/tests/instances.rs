//! `bosh instances`, `bosh vms` and `delete-deployment` end to end: an in-process director
//! with `--cpi sim` (its own nats-server child, the real `bosh-agent` as each VM), a sim
//! stemcell uploaded over the API, and a deployment whose instances and VMs are made here
//! directly (rows plus `vms::vm_create`), so these tests do not depend on the deploy task.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use bosh_director::vms::{self, VmSpec};
use bosh_types::ids::StemcellCid;
use deploy_world::{World, processes_mentioning};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const STEMCELL: &str = "bosh-sim-debian-bookworm-go_agent";

impl World {
    /// A full listing through HTTP, as the CLI does it: the GET redirects to a task whose
    /// result output is JSON lines.
    async fn listing_full(&self, what: &str) -> (Value, Vec<Value>) {
        let resp = self
            .get(&format!("/deployments/dep/{what}?format=full"))
            .await;
        let (id, task) = self.task_follow(resp).await;
        assert_eq!(task["state"], "done", "{task}");
        assert_eq!(task["description"], "retrieve vm-stats");
        let result = self.get(&format!("/tasks/{id}/output?type=result")).await;
        assert!(result.status().is_success());
        let text = result.text().await.unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text}");
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (task, lines)
    }

    async fn upload_stemcell(&self) {
        let work = tempfile::tempdir().unwrap();
        self.upload_sim_stemcell(work.path()).await;
    }

    /// An instance row; `ip` goes into its apply spec (and a reservation when it gets a VM).
    async fn instance_insert(&self, index: i64, ip: &str) -> (i64, String) {
        let uuid = uuid::Uuid::new_v4().to_string();
        let spec = json!({
            "deployment": "dep", "name": "web", "index": index, "id": uuid, "az": "z1",
            "vm_type": {"name": "small", "cloud_properties": {"cpu": 1}},
            "stemcell": {"name": STEMCELL, "version": "1"},
            "networks": {"default": {"ip": ip}},
        });
        let row: (i64,) = sqlx::query_as(
            "INSERT INTO instances (deployment, instance_group, uuid, instance_index, az, \
             bootstrap, state, spec_json, created_at) \
             VALUES ('dep', 'web', $1, $2, 'z1', $3, 'started', $4, 0) RETURNING id",
        )
        .bind(&uuid)
        .bind(index)
        .bind(i64::from(index == 0))
        .bind(spec.to_string())
        .fetch_one(self.db().pool())
        .await
        .unwrap();
        (row.0, uuid)
    }

    /// A real VM for the instance (the sim CPI starts a `bosh-agent`), its IP reserved.
    async fn vm_create(&self, instance_id: i64, ip: &str) -> vms::Vm {
        let stemcell_cid: (String,) = sqlx::query_as("SELECT cid FROM stemcells WHERE name = $1")
            .bind(STEMCELL)
            .fetch_one(self.db().pool())
            .await
            .unwrap();
        let addr: IpAddr = ip.parse().unwrap();
        let got = vms::ip_reserve_dynamic(self.db(), "default", "dep", [addr], None)
            .await
            .unwrap();
        assert_eq!(got, Some(addr));
        sqlx::query("UPDATE ip_addresses SET instance_id = $1 WHERE address = $2")
            .bind(instance_id)
            .bind(ip)
            .execute(self.db().pool())
            .await
            .unwrap();
        let network = serde_json::from_value(json!({
            "type": "manual", "ip": ip, "netmask": "255.255.255.0", "gateway": "10.245.0.1",
            "default": ["dns", "gateway"],
        }))
        .unwrap();
        let spec = VmSpec {
            deployment: "dep".into(),
            instance_id: Some(instance_id),
            stemcell_name: STEMCELL.into(),
            stemcell_version: "1".into(),
            stemcell_cid: StemcellCid::new(stemcell_cid.0).unwrap(),
            cloud_properties: Default::default(),
            networks: [("default".to_owned(), network)].into_iter().collect(),
            env: Default::default(),
            group: "web".into(),
            groups: vec!["dep".into(), "web".into()],
            metadata: Default::default(),
            compilation: false,
            task_id: None,
            agent_wait: Duration::from_secs(120),
            agent_id: None,
        };
        let vm = vms::vm_create(self.db(), &self.state().services, spec)
            .await
            .unwrap();
        vms::ip_assign_vm(self.db(), "default", addr, vm.id)
            .await
            .unwrap();
        vm
    }

    /// `dep` with web/0 and web/1 on VMs, web/2 without one; web/0 has a persistent disk.
    async fn deployment_create(&self) -> Vec<(i64, String, Option<vms::Vm>)> {
        bosh_director::deployments::deployment_upsert(
            self.db(),
            "dep",
            "name: dep\nreleases: []\nstemcells: []\n",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        for (index, ip, with_vm) in [
            (0, "10.245.0.10", true),
            (1, "10.245.0.11", true),
            (2, "10.245.0.12", false),
        ] {
            let (id, uuid) = self.instance_insert(index, ip).await;
            let vm = if with_vm {
                Some(self.vm_create(id, ip).await)
            } else {
                None
            };
            out.push((id, uuid, vm));
        }
        sqlx::query(
            "INSERT INTO persistent_disks (instance_id, cid, size, active, created_at) \
             VALUES ($1, 'disk-web-0', 1024, 1, 0)",
        )
        .bind(out[0].0)
        .execute(self.db().pool())
        .await
        .unwrap();
        out
    }
}

fn line_of<'a>(lines: &'a [Value], uuid: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["id"] == uuid)
        .unwrap_or_else(|| panic!("no line for {uuid}: {lines:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_report_agents_and_delete_deployment_leaves_nothing() {
    let w = World::start().await;
    w.upload_stemcell().await;

    // Unknown deployment: 404 code 70000, for both forms.
    for path in [
        "/deployments/nope/instances?format=full",
        "/deployments/nope/vms",
    ] {
        let resp = w.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], 70000, "{body}");
    }

    let instances = w.deployment_create().await;
    let (web0, web1, web2) = (&instances[0], &instances[1], &instances[2]);
    let vm0 = web0.2.clone().unwrap();
    let vm1 = web1.2.clone().unwrap();
    assert_eq!(w.vms_alive(), 2);

    // Full instances listing: every instance, agents asked for vitals.
    let (_, lines) = w.listing_full("instances").await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let l0 = line_of(&lines, &web0.1);
    assert_eq!(l0["agent_id"], vm0.agent_id.to_string());
    assert_eq!(l0["vm_cid"], vm0.cid.as_str());
    assert_eq!(l0["job_name"], "web");
    assert_eq!(l0["index"], 0);
    assert_eq!(l0["bootstrap"], true);
    assert_eq!(l0["ips"], json!(["10.245.0.10"]));
    assert_eq!(l0["az"], "z1");
    assert_eq!(l0["state"], "started");
    assert_eq!(l0["vm_type"], "small");
    assert_eq!(l0["cloud_properties"], json!({"cpu": 1}));
    assert_eq!(l0["disk_cid"], "disk-web-0");
    assert_eq!(l0["disk_cids"], json!(["disk-web-0"]));
    assert_eq!(l0["active"], true);
    assert_eq!(l0["stemcell"]["name"], STEMCELL);
    assert_eq!(l0["stemcell"]["version"], "1");
    assert!(l0["stemcell"]["api_version"].is_i64(), "{l0}");
    let created = l0["vm_created_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "{created}"
    );
    let job_state = l0["job_state"].as_str().unwrap();
    assert_ne!(job_state, "unresponsive agent");
    assert!(l0["processes"].is_array());
    // Vitals numbers are strings (the official CLI rejects numbers there).
    let vitals = &l0["vitals"];
    for path in [
        "/cpu/sys",
        "/cpu/user",
        "/mem/kb",
        "/mem/percent",
        "/swap/kb",
    ] {
        assert!(
            vitals.pointer(path).unwrap().is_string(),
            "{path}: {vitals}"
        );
    }
    assert!(
        vitals["load"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string)
    );
    assert!(vitals["disk"]["system"]["percent"].is_string(), "{vitals}");
    assert!(vitals["uptime"]["secs"].is_u64(), "{vitals}");

    let l2 = line_of(&lines, &web2.1);
    assert!(l2["vm_cid"].is_null() && l2["agent_id"].is_null(), "{l2}");
    assert!(l2["job_state"].is_null(), "{l2}");
    assert_eq!(l2["ips"], json!(["10.245.0.12"]), "from the apply spec");
    assert_eq!(l2["vitals"], json!({}));
    assert_eq!(l2["processes"], json!([]));

    // The short forms, answered directly.
    let short: Vec<Value> = w
        .get("/deployments/dep/instances")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(short.len(), 3);
    assert_eq!(short[0]["cid"], vm0.cid.as_str());
    assert_eq!(short[0]["job"], "web");
    assert_eq!(short[0]["expects_vm"], true);
    let short_vms: Vec<Value> = w.get("/deployments/dep/vms").await.json().await.unwrap();
    assert_eq!(short_vms.len(), 2);
    assert!(short_vms.iter().all(|v| v["active"] == true));

    // An agent that died: "unresponsive agent" with empty vitals, after the short timeout,
    // and the task still succeeds.
    let vm1_dir = w.sim_root().join("vms").join(vm1.cid.as_str());
    let pids = processes_mentioning(&vm1_dir.display().to_string());
    assert!(!pids.is_empty(), "no process for {}", vm1_dir.display());
    for pid in &pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let started = Instant::now();
    let (_, vm_lines) = w.listing_full("vms").await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        vm_lines.len(),
        2,
        "vms lists only instances with a VM: {vm_lines:?}"
    );
    let l1 = line_of(&vm_lines, &web1.1);
    assert_eq!(l1["job_state"], "unresponsive agent");
    assert_eq!(l1["vitals"], json!({}));
    assert_eq!(l1["vm_cid"], vm1.cid.as_str());
    let l0 = line_of(&vm_lines, &web0.1);
    assert_ne!(l0["job_state"], "unresponsive agent");

    // delete-deployment: every VM and agent gone, IPs freed, the disk orphaned.
    assert_eq!(w.db_count("SELECT COUNT(*) FROM ip_addresses").await, 2);
    let (id, task) = w.task_follow(w.delete("/deployments/dep?").await).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(task["result"], "/deployments/dep");
    assert_eq!(w.vms_alive(), 0);
    assert!(
        processes_mentioning(&w.sim_root().display().to_string()).is_empty(),
        "agent processes left"
    );
    for (table, n) in [
        ("vms", 0),
        ("instances", 0),
        ("ip_addresses", 0),
        ("persistent_disks", 0),
        ("orphan_disks", 1),
        ("deployments", 0),
    ] {
        assert_eq!(
            w.db_count(&format!("SELECT COUNT(*) FROM {table}")).await,
            n,
            "{table}"
        );
    }
    let orphan: (String, String, String) =
        sqlx::query_as("SELECT cid, deployment, instance_name FROM orphan_disks")
            .fetch_one(w.db().pool())
            .await
            .unwrap();
    assert_eq!(
        orphan,
        ("disk-web-0".into(), "dep".into(), format!("web/{}", web0.1))
    );
    let events = std::fs::read_to_string(w.dir.join(format!("tasks/{id}/event"))).unwrap();
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let deleted: Vec<&Value> = events
        .iter()
        .filter(|e| e["stage"] == "Deleting instances" && e["state"] == "finished")
        .collect();
    assert_eq!(deleted.len(), 3, "{events:?}");
    assert!(deleted.iter().all(|e| e["total"] == 3));
    assert!(
        events
            .iter()
            .any(|e| e["stage"] == "Removing deployment artifacts")
    );
    // An audit event pair per instance.
    assert_eq!(
        w.db_count(
            "SELECT COUNT(*) FROM events WHERE object_type = 'instance' AND action = 'delete'"
        )
        .await,
        6
    );

    // Gone: a second delete and the listings answer 404.
    let again = w.delete("/deployments/dep").await;
    assert_eq!(again.status(), 404);
    assert_eq!(
        w.get("/deployments/dep/instances?format=full")
            .await
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_without_vms_deletes_cleanly_and_ignored_instances_block_it() {
    let w = World::start().await;
    bosh_director::deployments::deployment_upsert(w.db(), "dep", "name: dep\n")
        .await
        .unwrap();
    let (id, _) = w.instance_insert(0, "10.245.0.20").await;
    sqlx::query("UPDATE instances SET ignored = 1 WHERE id = $1")
        .bind(id)
        .execute(w.db().pool())
        .await
        .unwrap();
    let (_, task) = w.task_follow(w.delete("/deployments/dep").await).await;
    assert_eq!(task["state"], "error");
    assert!(
        task["result"]
            .as_str()
            .unwrap()
            .contains("ignored instance"),
        "{task}"
    );
    assert_eq!(w.db_count("SELECT COUNT(*) FROM deployments").await, 1);

    sqlx::query("UPDATE instances SET ignored = 0 WHERE id = $1")
        .bind(id)
        .execute(w.db().pool())
        .await
        .unwrap();
    let (_, task) = w.task_follow(w.delete("/deployments/dep").await).await;
    assert_eq!(task["state"], "done", "{task}");
    assert_eq!(w.db_count("SELECT COUNT(*) FROM instances").await, 0);
    assert_eq!(w.db_count("SELECT COUNT(*) FROM deployments").await, 0);
    let listing = w.get("/deployments/dep/vms?format=full").await;
    assert_eq!(listing.status(), 404);
}
