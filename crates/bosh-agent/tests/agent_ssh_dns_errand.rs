//! `ssh` (dummy platform), `sync_dns` and `run_errand` (with `cancel_task`) against the agent
//! binary over real NATS.

mod common;

use common::{Harness, sha1_hex};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_setup_and_cleanup_on_dummy() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let setup = d
        .call(
            "ssh",
            json!(["setup", {"User": "bosh_abc", "public_key": "ssh-rsa AAAA test@x"}]),
        )
        .await;
    assert_eq!(
        setup,
        json!({"value": {"command": "setup", "status": "success", "ip": "192.168.50.2", "host_public_key": ""}})
    );
    let keys = h.base.join("bosh_ssh/bosh_abc/.ssh/authorized_keys");
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        "ssh-rsa AAAA test@x\n"
    );
    d.call(
        "ssh",
        json!(["setup", {"user": "bosh_other", "public_key": "k2"}]),
    )
    .await;
    let bad = d
        .call(
            "ssh",
            json!(["setup", {"user": "../evil", "public_key": "k"}]),
        )
        .await;
    assert!(bad.get("exception").is_some(), "{bad}");
    assert_eq!(
        d.call("ssh", json!(["cleanup", {"user_regex": "^bosh_ab"}]))
            .await,
        json!({"value": {"command": "cleanup", "status": "success"}})
    );
    assert!(!h.base.join("bosh_ssh/bosh_abc").exists());
    assert!(h.base.join("bosh_ssh/bosh_other").exists());
    assert_eq!(
        d.call("ssh", json!(["bogus", {}])).await,
        json!({"exception": {"message": "Action Failed ssh: Unknown command bogus"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_dns_saves_newer_records_only() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let v2 = json!({"version": 2, "records": [["10.0.0.5", "a.b.bosh"]], "record_keys": [], "record_infos": []}).to_string();
    std::fs::write(h.blobs.join("dns-2"), &v2).unwrap();
    assert_eq!(
        d.call("sync_dns", json!(["dns-2", sha1_hex(v2.as_bytes()), 2]))
            .await,
        json!({"value": "synced"})
    );
    let saved = h.base.join("instance/dns/records.json");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), v2);
    // Older or equal versions are no-ops, even with a missing blob.
    assert_eq!(
        d.call("sync_dns", json!(["missing", "sha1:00", 1])).await,
        json!({"value": "synced"})
    );
    // A blob whose embedded version differs is refused.
    let v3 = json!({"version": 4, "records": []}).to_string();
    std::fs::write(h.blobs.join("dns-3"), &v3).unwrap();
    let r = d
        .call("sync_dns", json!(["dns-3", sha1_hex(v3.as_bytes()), 3]))
        .await;
    assert!(
        r["exception"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match"),
        "{r}"
    );
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), v2);
    let bad_digest = d.call("sync_dns", json!(["dns-3", "sha1:00", 3])).await;
    assert!(bad_digest.get("exception").is_some(), "{bad_digest}");
}

fn install_job(h: &Harness, job: &str, script: &str) {
    let bin = h.base.join("jobs").join(job).join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("run"), script).unwrap();
    std::fs::set_permissions(bin.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_errand_results_and_cancel() {
    let mut h = Harness::start();
    install_job(
        &h,
        "smoke",
        "#!/bin/bash\necho ran-smoke\necho warn >&2\nexit 3\n",
    );
    install_job(&h, "slow", "#!/bin/bash\necho started\nexec sleep 60\n");
    let spec = json!({"deployment": "dep", "job": {"name": "grp", "template": "smoke", "version": "v",
        "templates": [{"name": "smoke", "version": "1"}, {"name": "slow", "version": "1"}]}});
    std::fs::write(h.base.join("bosh/spec.json"), spec.to_string()).unwrap();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    // Default errand: job.template; a non-zero exit is a result, not an error.
    let r = d.run_task("run_errand", json!([])).await;
    assert_eq!(
        r,
        json!({"value": {"stdout": "ran-smoke\n", "stderr": "warn\n", "exit_code": 3}})
    );
    let unknown = d.run_task("run_errand", json!(["nope"])).await;
    assert!(
        unknown["exception"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Could not find errand 'nope'"),
        "{unknown}"
    );

    // cancel_task stops a running errand; polling then returns its result.
    let first = d.call("run_errand", json!(["slow"])).await;
    let id = first["value"]["agent_task_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        d.call("cancel_task", json!([id])).await,
        json!({"value": "canceled"})
    );
    let mut last = Value::Null;
    for _ in 0..100 {
        last = d.call("get_task", json!([id])).await;
        if last["value"]["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["value"]["stdout"], "started\n", "{last}");
    assert_eq!(last["value"]["exit_code"], 128 + 15, "{last}");
}
