//! The HTTPS mbus `create-env` uses: the agent binary with an `https://user:pass@host:port`
//! mbus URL, driven with reqwest over TLS (the server certificate from `env.bosh.mbus.cert`).

mod common;

use bosh_agent_protocol::MbusCert;
use common::{Harness, sha1_hex, sha256_digest, tgz};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Https {
    http: reqwest::Client,
    base: String,
}

impl Https {
    fn new(h: &Harness, port: u16) -> Https {
        let ca = reqwest::Certificate::from_pem(h.pki.ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Https {
            http,
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    async fn post(&self, user: &str, pass: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/agent", self.base))
            .basic_auth(user, Some(pass))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn call(&self, method: &str, args: Value) -> Value {
        // create-env's client sends no protocol and a reply_to it never reads.
        let resp = self
            .post(
                "mbus",
                "s3cret",
                json!({"method": method, "arguments": args, "reply_to": "cli"}),
            )
            .await;
        assert_eq!(resp.status(), 200, "{method}");
        resp.json().await.unwrap()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = self
                .http
                .post(format!("{}/agent", self.base))
                .basic_auth("mbus", Some("s3cret"))
                .json(&json!({"method": "ping", "arguments": []}))
                .send()
                .await;
            if let Ok(r) = attempt
                && r.status() == 200
            {
                assert_eq!(r.json::<Value>().await.unwrap(), json!({"value": "pong"}));
                return;
            }
            assert!(Instant::now() < deadline, "agent never answered over HTTPS");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn put_blob(&self, id: &str, data: Vec<u8>) -> reqwest::StatusCode {
        self.http
            .put(format!("{}/blobs/{id}", self.base))
            .basic_auth("mbus", Some("s3cret"))
            .body(data)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn run_task(&self, method: &str, args: Value) -> Value {
        let first = self.call(method, args).await;
        let id = first["value"]["agent_task_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} did not start a task: {first}"))
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.call("get_task", json!([id])).await;
            if r["value"]["state"] != "running" || r["value"]["agent_task_id"] != json!(id) {
                return r;
            }
            assert!(Instant::now() < deadline, "task {method} never finished");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Settings with an HTTPS mbus; the agent's server certificate is signed by the test CA.
fn start_https_agent(h: &mut Harness) -> u16 {
    let port = bosh_agent::testing::free_port().unwrap();
    let server = h.pki.server().unwrap();
    let cert = MbusCert {
        ca: h.pki.ca_pem.clone(),
        certificate: server.certificate,
        private_key: server.private_key,
    };
    h.write_settings(&format!("https://mbus:s3cret@127.0.0.1:{port}"), &cert);
    h.spawn_agent();
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_protocol_and_blobs_over_https() {
    let mut h = Harness::start();
    let port = start_https_agent(&mut h);
    let a = Https::new(&h, port);
    a.wait_ready().await;

    // Basic auth guards every route.
    let wrong = a
        .post("mbus", "wrong", json!({"method": "ping", "arguments": []}))
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.headers()["www-authenticate"].to_str().unwrap(),
        r#"Basic realm="""#
    );
    let anonymous = a
        .http
        .get(format!("{}/blobs/x", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let get = a
        .http
        .get(format!("{}/agent", a.base))
        .basic_auth("mbus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404, "only POST /agent");
    let garbage = a
        .http
        .post(format!("{}/agent", a.base))
        .basic_auth("mbus", Some("s3cret"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 500);

    assert_eq!(
        a.call("info", json!([])).await,
        json!({"value": {"api_version": 1}})
    );
    assert_eq!(
        a.call("nope", json!([])).await,
        json!({"exception": {"message": "unknown message nope"}})
    );
    let state = a.call("get_state", json!([])).await;
    assert_eq!(state["value"]["agent_id"], h.agent_id.as_str());
    assert_eq!(state["value"]["job_state"], "running");

    // Blobs: PUT then GET round trip, 404 for unknown ids.
    let missing = a
        .http
        .get(format!("{}/blobs/nothing-here", a.base))
        .basic_auth("mbus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let monit = "check process web\n  with pidfile /var/vcap/sys/run/web/web.pid\n  start program \"/var/vcap/jobs/web/bin/ctl start\"\n  stop program \"/var/vcap/jobs/web/bin/ctl stop\"\n  group vcap\n";
    let ctl = "#!/bin/sh\nRUN=$BOSH_AGENT_BASE_DIR/sys/run/web\ncase $1 in\n  start) mkdir -p $RUN; (while true; do sleep 0.2; done) </dev/null >/dev/null 2>&1 & echo $! > $RUN/web.pid ;;\n  stop) kill $(cat $RUN/web.pid) ;;\nesac\n";
    let archive = tgz(&[("web/monit", monit, 0o644), ("web/bin/ctl", ctl, 0o755)]);
    let package = tgz(&[("hello.txt", "hello over https\n", 0o644)]);
    assert_eq!(a.put_blob("rendered-https", archive.clone()).await, 201);
    assert_eq!(a.put_blob("pkg-https", package.clone()).await, 201);
    let fetched = a
        .http
        .get(format!("{}/blobs/rendered-https", a.base))
        .basic_auth("mbus", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), archive.as_slice());
    assert!(h.base.join("data/blobs/rendered-https").is_file());

    // apply from the uploaded blobs, through get_task polling, then start.
    let spec = json!({
        "deployment": "dep", "name": "bosh", "id": "inst-1", "index": 0,
        "job": {"name": "bosh", "templates": [{"name": "web", "version": "v1"}]},
        "packages": {"pkg": {"name": "pkg", "version": "1", "sha1": sha256_digest(&package), "blobstore_id": "pkg-https"}},
        "networks": {"a": {"type": "manual", "ip": "192.168.50.2", "netmask": "255.255.255.0", "default": ["dns", "gateway"]}},
        "configuration_hash": "cfg-1",
        "rendered_templates_archive": {"blobstore_id": "rendered-https", "sha1": sha1_hex(&archive)},
    });
    assert_eq!(
        a.run_task("apply", json!([spec])).await,
        json!({"value": "applied"})
    );
    assert_eq!(
        std::fs::read_to_string(h.base.join("packages/pkg/hello.txt")).unwrap(),
        "hello over https\n"
    );
    assert_eq!(
        a.call("start", json!([])).await,
        json!({"value": "started"})
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = a.call("get_state", json!([])).await;
        if state["value"]["job_state"] == "running"
            && state["value"]["processes"][0]["state"] == "running"
        {
            assert_eq!(state["value"]["configuration_hash"], "cfg-1");
            break;
        }
        assert!(Instant::now() < deadline, "job never ran: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        a.run_task("stop", json!([])).await,
        json!({"value": "stopped"})
    );

    let unknown_task = a.call("get_task", json!(["no-such-task"])).await;
    assert!(
        unknown_task["exception"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be found"),
        "{unknown_task}"
    );
}

#[tokio::test]
async fn an_https_mbus_without_a_certificate_fails_to_start() {
    let mut h = Harness::start();
    let port = bosh_agent::testing::free_port().unwrap();
    h.write_settings(
        &format!("https://mbus:s3cret@127.0.0.1:{port}"),
        &MbusCert::default(),
    );
    h.spawn_agent();
    let status = h
        .wait_agent_exit(Duration::from_secs(30))
        .expect("agent started without a server certificate");
    assert!(!status.success());
    assert!(
        h.agent_log().contains("Loading configured tls certificate"),
        "{}",
        h.agent_log()
    );
}
