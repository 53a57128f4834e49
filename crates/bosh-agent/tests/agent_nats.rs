//! The agent binary against a real nats-server with TLS client certificates and BOSH's
//! per-agent authorization.

mod common;

use common::{Harness, sha1_hex, sha256_digest, tgz};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_info_get_state_and_errors() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    assert_eq!(
        d.call("info", json!([])).await,
        json!({"value": {"api_version": 1}})
    );
    // Extra arguments are ignored.
    assert_eq!(
        d.call("ping", json!(["extra"])).await,
        json!({"value": "pong"})
    );

    let state = d.call("get_state", json!([])).await["value"].clone();
    assert_eq!(state["agent_id"], json!(h.agent_id));
    assert_eq!(state["vm"], json!({"name": format!("vm-{}", h.agent_id)}));
    assert_eq!(
        state["job_state"], "running",
        "a VM with no jobs is running"
    );
    assert_eq!(state["networks"], json!({}));
    assert_eq!(state["processes"], json!([]));
    assert!(state.get("vitals").is_none());
    let full = d.call("get_state", json!(["full"])).await["value"].clone();
    assert_eq!(full["vitals"]["load"].as_array().unwrap().len(), 3);
    assert!(full["vitals"]["mem"]["percent"].is_string());
    assert!(full["vitals"]["disk"]["system"]["percent"].is_string());

    assert_eq!(
        d.call("bogus_method", json!([])).await,
        json!({"exception": {"message": "unknown message bogus_method"}})
    );
    assert_eq!(
        d.call("get_task", json!(["nope"])).await,
        json!({"exception": {"message": "Action Failed get_task: Task with id nope could not be found"}})
    );
    assert_eq!(
        d.call("get_task", json!([])).await,
        json!({"exception": {"message": "Action Failed get_task: Not enough arguments, expected 1, got 0"}})
    );
    // Partial apply (no configuration_hash) records identity and installs nothing.
    let applied = d
        .run_task("apply", json!([{"deployment": "dep", "job": {"name": "grp"}, "index": 2, "id": "inst-1",
                                    "networks": {"d": {"type": "dynamic", "default": ["gateway"]}}}]))
        .await;
    assert_eq!(applied, json!({"value": "applied"}));
    let state = d.call("get_state", json!([])).await["value"].clone();
    assert_eq!(state["deployment"], "dep");
    assert_eq!(state["index"], 2);
    assert_eq!(
        state["networks"]["d"]["ip"], "10.1.0.7",
        "DHCP address filled from settings"
    );
    assert_eq!(
        std::fs::read_to_string(h.base.join("instance/id")).unwrap(),
        "inst-1"
    );
    assert!(!h.base.join("jobs").exists());
    let bad = d
        .run_task(
            "apply",
            json!([{"deployment": "dep", "networks": {"zzz": {}}}]),
        )
        .await;
    let msg = bad["exception"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with("Action Failed get_task: Task ")
            && msg.ends_with(" result: Network 'zzz' is not found in settings"),
        "{bad}"
    );
    // A failed async task does not break the agent.
    assert_eq!(d.call("ping", json!([])).await, json!({"value": "pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_then_shutdown_notice() {
    let mut h = Harness::start();
    let hm = h.client(&h.pki.hm().unwrap()).await.unwrap();
    let mut heartbeats = hm
        .subscribe(format!("hm.agent.heartbeat.{}", h.agent_id))
        .await
        .unwrap();
    let mut shutdowns = hm
        .subscribe(format!("hm.agent.shutdown.{}", h.agent_id))
        .await
        .unwrap();
    hm.flush().await.unwrap();
    h.spawn_agent();
    // One right after connecting, then every interval (1 s here).
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), heartbeats.next())
            .await
            .expect("no heartbeat")
            .unwrap();
        let hb: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(hb["job"], Value::Null);
        assert_eq!(hb["index"], Value::Null);
        assert_eq!(hb["job_state"], "running");
        assert_eq!(hb["number_of_processes"], 0);
        assert!(hb["vitals"]["cpu"]["user"].is_string());
        assert!(hb["vitals"]["uptime"]["secs"].is_u64());
    }
    let mut d = h.director().await;
    d.wait_ready().await;
    assert_eq!(d.call("shutdown", json!([])).await, json!({"value": ""}));
    let msg = tokio::time::timeout(Duration::from_secs(10), shutdowns.next())
        .await
        .expect("no shutdown notice")
        .unwrap();
    assert_eq!(&msg.payload[..], b"null");
    let status = h
        .wait_agent_exit(Duration::from_secs(10))
        .expect("agent did not exit after shutdown");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_need_valid_certificates() {
    let mut h = Harness::start();
    // A client certificate from another CA is refused by the server.
    let other = bosh_agent::testing::TestPki::generate().unwrap();
    let mut foreign = other.director().unwrap();
    foreign.ca = h.pki.ca_pem.clone();
    assert!(
        h.client(&foreign).await.is_err(),
        "foreign client certificate accepted"
    );
    // No client certificate at all is refused too.
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut h.pki.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    })
    .with_no_client_auth();
    let no_cert = async_nats::ConnectOptions::new()
        .require_tls(true)
        .tls_client_config(tls)
        .connection_timeout(Duration::from_secs(5))
        .connect(h.nats.url())
        .await;
    assert!(no_cert.is_err(), "client without certificate accepted");

    // An agent without a client certificate refuses to start its message bus.
    h.write_settings(
        &h.nats.url(),
        &bosh_agent_protocol::MbusCert {
            ca: h.pki.ca_pem.clone(),
            ..Default::default()
        },
    );
    h.spawn_agent();
    let status = h
        .wait_agent_exit(Duration::from_secs(20))
        .expect("agent without a certificate kept running");
    assert!(!status.success());
    assert!(
        h.agent_log()
            .contains("Parsing certificate and private key"),
        "{}",
        h.agent_log()
    );

    // An agent refuses a NATS server whose CN is not *.nats.bosh-internal.
    let bad = bosh_agent::testing::NatsServer::start(
        &h.dir.path().join("bad-nats"),
        &h.pki,
        &h.pki.server_with_cn("nats.example.com").unwrap(),
        &[&h.agent_id],
    )
    .unwrap();
    let cert = h.pki.agent(&h.agent_id).unwrap();
    h.write_settings(&bad.url(), &cert);
    h.spawn_agent();
    let status = h
        .wait_agent_exit(Duration::from_secs(30))
        .expect("agent accepted a server with a bad CN");
    assert!(!status.success());
}

/// A job whose monit file runs a shell loop via `bin/ctl`, plus scripts for run_script/drain.
fn job_files(base: &std::path::Path, job: &str, pre_start_exit: u8) -> Vec<(String, String, u32)> {
    let monit = format!(
        "check process {job}\n  with pidfile /var/vcap/sys/run/{job}/{job}.pid\n  start program \"/var/vcap/jobs/{job}/bin/ctl start\"\n  stop program \"/var/vcap/jobs/{job}/bin/ctl stop\"\n  group vcap\n"
    );
    let ctl = format!(
        "#!/bin/sh\nRUN=$BOSH_AGENT_BASE_DIR/sys/run/{job}\ncase $1 in\n  start) mkdir -p $RUN; (while true; do sleep 0.2; done) </dev/null >/dev/null 2>&1 & echo $! > $RUN/{job}.pid ;;\n  stop) kill $(cat $RUN/{job}.pid) ;;\nesac\n"
    );
    // Rendered with absolute paths, as the director renders /var/vcap paths.
    let data = base.join("data");
    let data = data.display();
    let pre_start =
        format!("#!/bin/sh\necho \"$MY_VAR $0\" > {data}/{job}.pre-start\nexit {pre_start_exit}\n");
    // Dynamic drain: ask to be polled once, then report done; record each call's arguments.
    let drain = format!(
        "#!/bin/sh\nLOG={data}/{job}.drain\necho \"$* $BOSH_JOB_STATE\" >> \"$LOG\"\nif [ \"$1\" = job_check_status ]; then echo 0; else echo -1; fi\n"
    );
    vec![
        (format!("{job}/monit"), monit, 0o644),
        (format!("{job}/bin/ctl"), ctl, 0o755),
        (format!("{job}/bin/pre-start"), pre_start, 0o755),
        (format!("{job}/bin/drain"), drain, 0o755),
    ]
}

/// Puts the job archive and a package into the local blobstore; returns the apply spec.
fn full_spec(h: &Harness, jobs: &[(&str, u8)]) -> Value {
    let files: Vec<(String, String, u32)> = jobs
        .iter()
        .flat_map(|(j, code)| job_files(&h.base, j, *code))
        .collect();
    let entries: Vec<(&str, &str, u32)> = files
        .iter()
        .map(|(p, c, m)| (p.as_str(), c.as_str(), *m))
        .collect();
    let archive = tgz(&entries);
    std::fs::write(h.blobs.join("rendered-1"), &archive).unwrap();
    let package = tgz(&[("hello.txt", "hello\n", 0o644)]);
    std::fs::write(h.blobs.join("pkg-1"), &package).unwrap();
    let templates: Vec<Value> = jobs.iter().map(|(j, _)| json!({"name": j, "version": format!("{j}-v1"), "sha1": "ignored", "blobstore_id": "ignored"})).collect();
    json!({
        "deployment": "dep", "name": "grp", "id": "inst-1", "index": 0, "az": "z1",
        "job": {"name": "grp", "template": jobs[0].0, "version": "v", "templates": templates},
        "packages": {"pkg1": {"name": "pkg1", "version": "1.0.1", "sha1": sha256_digest(&package), "blobstore_id": "pkg-1"}},
        "networks": {"a": {"type": "manual", "ip": "192.168.50.2", "netmask": "255.255.255.0", "default": ["dns", "gateway"]}},
        "configuration_hash": "cfg-1",
        "rendered_templates_archive": {"blobstore_id": "rendered-1", "sha1": sha1_hex(&archive)},
        "persistent_disk": 0,
        "template_hashes": {"x": "y"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_start_supervise_and_stop_a_job() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let spec = full_spec(&h, &[("looper", 0)]);
    assert_eq!(
        d.run_task("apply", json!([spec])).await,
        json!({"value": "applied"})
    );
    assert_eq!(
        std::fs::read_to_string(h.base.join("packages/pkg1/hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(h.base.join("jobs/looper/packages/pkg1/hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(h.base.join("jobs/looper/bin/ctl").is_file());
    let link = std::fs::read_link(h.base.join("jobs/looper")).unwrap();
    assert!(
        link.starts_with(h.base.join("data/jobs/looper")),
        "{}",
        link.display()
    );
    let state = d.call("get_state", json!([])).await["value"].clone();
    assert!(
        state.get("template_hashes").is_none(),
        "unknown spec keys are dropped"
    );
    assert_eq!(state["configuration_hash"], "cfg-1");

    assert_eq!(
        d.call("start", json!([])).await,
        json!({"value": "started"})
    );
    let running = d.wait_job_state("running", Duration::from_secs(20)).await;
    assert_eq!(running["processes"][0]["name"], "looper");
    assert_eq!(running["processes"][0]["state"], "running");
    let pidfile = h.base.join("data/sys/run/looper/looper.pid");
    let pid = bosh_agent::supervisor::read_pid(&pidfile).unwrap();
    assert!(bosh_agent::supervisor::pid_alive(pid));

    // Crash the process: the supervisor notices and starts it again.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let new = bosh_agent::supervisor::read_pid(&pidfile);
        if new.is_some_and(|p| p != pid && bosh_agent::supervisor::pid_alive(p)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.wait_job_state("running", Duration::from_secs(20)).await;
    let restarted = bosh_agent::supervisor::read_pid(&pidfile).unwrap();

    // Heartbeats report the job.
    let hm = h.client(&h.pki.hm().unwrap()).await.unwrap();
    let mut heartbeats = hm
        .subscribe(format!("hm.agent.heartbeat.{}", h.agent_id))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), heartbeats.next())
        .await
        .unwrap()
        .unwrap();
    let hb: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(
        (
            hb["job"].clone(),
            hb["index"].clone(),
            hb["node_id"].clone()
        ),
        (json!("grp"), json!(0), json!("inst-1"))
    );
    assert_eq!(hb["number_of_processes"], 1);

    assert_eq!(
        d.run_task("stop", json!([])).await,
        json!({"value": "stopped"})
    );
    assert!(
        !bosh_agent::supervisor::pid_alive(restarted),
        "process still alive after stop"
    );
    d.wait_job_state("stopped", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !bosh_agent::supervisor::pid_alive(
            bosh_agent::supervisor::read_pid(&pidfile).unwrap_or(restarted)
        ),
        "stopped job was restarted"
    );

    // A corrupted blob fails apply with a digest error.
    let mut bad = full_spec(&h, &[("looper", 0)]);
    bad["configuration_hash"] = json!("cfg-2");
    bad["packages"]["pkg1"]["version"] = json!("2.0");
    bad["packages"]["pkg1"]["sha1"] = json!(sha256_digest(b"something else"));
    let reply = d.run_task("apply", json!([bad])).await;
    assert!(
        reply["exception"]["message"]
            .as_str()
            .unwrap()
            .contains("Checking downloaded blob 'pkg-1'"),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_script_and_drain() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;
    assert_eq!(
        d.run_task("apply", json!([full_spec(&h, &[("good", 0), ("bad", 3)])]))
            .await,
        json!({"value": "applied"})
    );

    let reply = d
        .run_task(
            "run_script",
            json!(["pre-start", {"env": {"MY_VAR": "hello"}}]),
        )
        .await;
    let msg = reply["exception"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.ends_with(
            "result: 1 of 2 pre-start scripts failed. Failed Jobs: bad. Successful Jobs: good."
        ),
        "{reply}"
    );
    let out = std::fs::read_to_string(h.base.join("data/good.pre-start")).unwrap();
    assert!(out.starts_with("hello "), "env not passed: {out}");
    // Jobs without the script are skipped; all succeeding gives `{}`.
    assert_eq!(
        d.run_task("run_script", json!(["post-start", {}])).await,
        json!({"value": {}})
    );

    // Dynamic drain: -1 then 0 from the status call; the action itself returns 0.
    let new_spec = json!({"configuration_hash": "cfg-2", "persistent_disk": 2048, "packages": {}});
    assert_eq!(
        d.run_task("drain", json!(["update", new_spec])).await,
        json!({"value": 0})
    );
    let log = std::fs::read_to_string(h.base.join("data/good.drain")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"job_changed hash_changed {"persistent_disk":0}"#,
            r#"job_check_status hash_unchanged {"persistent_disk":0}"#
        ]
    );
    let status = d.run_task("drain", json!(["status"])).await;
    assert!(status.get("exception").is_some(), "{status}");
    let missing = d.run_task("drain", json!(["update"])).await;
    assert!(
        missing["exception"]["message"]
            .as_str()
            .unwrap()
            .contains("Drain update requires new spec"),
        "{missing}"
    );
    // cancel_task on a finished non-cancellable task is refused.
    let first = d.call("run_script", json!(["nothing", {}])).await;
    let id = first["value"]["agent_task_id"].as_str().unwrap().to_owned();
    let cancel = d.call("cancel_task", json!([id])).await;
    assert_eq!(
        cancel,
        json!({"exception": {"message": "Action Failed cancel_task: not supported"}})
    );
}
