//! Alerts on `hm.agent.alert.<agent_id>` when a supervised process dies, through a real
//! nats-server with TLS and per-agent permissions, received by the health monitor's identity.

mod common;

use common::{Harness, sha1_hex, tgz};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_job_process_raises_an_alert_naming_it() {
    let mut h = Harness::start();
    let hm = h.client(&h.pki.hm().unwrap()).await.unwrap();
    let mut alerts = hm
        .subscribe(format!("hm.agent.alert.{}", h.agent_id))
        .await
        .unwrap();
    hm.flush().await.unwrap();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let monit = "check process pinger\n  with pidfile /var/vcap/sys/run/pinger/pinger.pid\n  start program \"/var/vcap/jobs/pinger/bin/ctl start\"\n  stop program \"/var/vcap/jobs/pinger/bin/ctl stop\"\n  group vcap\n";
    let ctl = "#!/bin/sh\nRUN=$BOSH_AGENT_BASE_DIR/sys/run/pinger\ncase $1 in\n  start) mkdir -p $RUN; (while true; do sleep 0.2; done) </dev/null >/dev/null 2>&1 & echo $! > $RUN/pinger.pid ;;\n  stop) kill $(cat $RUN/pinger.pid) ;;\nesac\n";
    let archive = tgz(&[
        ("pinger/monit", monit, 0o644),
        ("pinger/bin/ctl", ctl, 0o755),
    ]);
    std::fs::write(h.blobs.join("rendered-alerts"), &archive).unwrap();
    let spec = json!({
        "deployment": "dep", "name": "grp", "id": "inst-1", "index": 0,
        "job": {"name": "grp", "templates": [{"name": "pinger", "version": "v1"}]},
        "packages": {},
        "networks": {"a": {"type": "manual", "ip": "192.168.50.2", "netmask": "255.255.255.0", "default": ["dns", "gateway"]}},
        "configuration_hash": "cfg-1",
        "rendered_templates_archive": {"blobstore_id": "rendered-alerts", "sha1": sha1_hex(&archive)},
    });
    assert_eq!(
        d.run_task("apply", json!([spec])).await,
        json!({"value": "applied"})
    );
    assert_eq!(
        d.call("start", json!([])).await,
        json!({"value": "started"})
    );
    d.wait_job_state("running", Duration::from_secs(20)).await;
    let pidfile = h.base.join("data/sys/run/pinger/pinger.pid");
    let pid = bosh_agent::supervisor::read_pid(&pidfile).unwrap();
    let before_kill = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(20), alerts.next())
        .await
        .expect("no alert after the process was killed")
        .unwrap();
    let alert: Value = serde_json::from_slice(&msg.payload).unwrap();
    let keys: Vec<&str> = alert
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        ["id", "severity", "title", "summary", "created_at"],
        "{alert}"
    );
    // Settings' networks give the IPs: 192.168.50.2 (manual) and 10.1.0.7 (dynamic), sorted.
    assert_eq!(
        alert["title"],
        "pinger (10.1.0.7, 192.168.50.2) - Does not exist - restart"
    );
    assert_eq!(alert["severity"], 1);
    assert_eq!(alert["summary"], "process is not running");
    assert!(!alert["id"].as_str().unwrap().is_empty());
    assert!(alert["created_at"].as_i64().unwrap() >= before_kill);

    // The supervisor restarts it; a running process raises nothing more.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = bosh_agent::supervisor::read_pid(&pidfile);
        if now.is_some_and(|p| p != pid && bosh_agent::supervisor::pid_alive(p)) {
            break;
        }
        assert!(Instant::now() < deadline, "process was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.wait_job_state("running", Duration::from_secs(20)).await;
    assert_eq!(
        d.run_task("stop", json!([])).await,
        json!({"value": "stopped"})
    );
    // A stop is not a crash: no alert for it.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), alerts.next()).await;
    assert!(
        quiet.is_err(),
        "unexpected alert after stop: {:?}",
        quiet.ok().flatten().map(|m| m.payload)
    );
}
