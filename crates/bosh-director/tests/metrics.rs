//! `GET /metrics` end to end: an in-process director with `--cpi sim` (real `bosh-agent`s on
//! NATS), the greeter release deployed; the Prometheus text must parse and follow what the
//! deploy did.

mod common;
#[path = "common/deploy_world.rs"]
mod deploy_world;

use deploy_world::{World, greeter_tarball};
use std::collections::BTreeMap;

// The dynamic pool of this /24: 256 minus network, broadcast, gateway, 8 reserved and 21
// static addresses.
const POOL: f64 = 256.0 - 3.0 - 8.0 - 21.0;

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
    static: [127.93.0.200 - 127.93.0.220]
    azs: [z1, z2]
- name: spare
  type: manual
  subnets:
  - range: 127.94.0.0/28
    gateway: 127.94.0.1
    azs: [z1]
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
  reuse_compilation_vms: true
"#;

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
  instances: 2
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs:
  - name: greeter
    release: greeter
    properties:
      port: 8080
      bind_instance_address: true
      greeting: Hello from metrics
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
      connect_timeout_ms: 1000
    consumes:
      backends: {from: greeter}
variables:
- name: greeter_stats_token
  type: password
"#;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text exposition format strictly enough to catch malformed output:
/// every sample belongs to a family announced by `# TYPE`, names and labels are well formed,
/// values are numbers, and the text ends with `# EOF` (OpenMetrics) or a newline.
fn exposition_parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "{text}");
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect(line);
            assert!(valid_name(name), "{line}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "untyped",
                    "info",
                    "unknown"
                ]
                .contains(&kind),
                "{line}"
            );
            families.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect(line);
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect(line);
                    assert!(valid_name(k), "{line}");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        assert!(valid_name(name), "{line}");
        let family = families
            .iter()
            .rev()
            .find(|(f, kind)| {
                name == f
                    || (["counter"].contains(&kind.as_str()) && name == format!("{f}_total"))
                    || (kind == "histogram"
                        && ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name == format!("{f}{s}")))
            })
            .unwrap_or_else(|| panic!("no # TYPE for {line}"));
        if family.1 == "histogram" && name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "{line}");
        }
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

/// The value of `name` whose labels include all of `want`; `None` when there is none.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

async fn scrape(w: &World) -> Vec<Sample> {
    let resp = w.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    exposition_parse(&resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_deploy() {
    let w = World::start().await;

    // Authenticated like the rest of the API.
    let resp = w
        .client
        .get(format!("{}/metrics", w.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = w
        .client
        .get(format!("{}/metrics", w.url()))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let work = tempfile::tempdir().unwrap();
    w.upload_sim_stemcell(work.path()).await;
    w.upload("releases", &greeter_tarball(work.path(), "greeter", None))
        .await;
    w.cloud_config_update(CLOUD_CONFIG).await;

    let before = scrape(&w).await;
    let free = "bosh_director_network_ips_free";
    assert_eq!(value(&before, free, &[("network", "default")]), Some(POOL));
    // A /28 without reserved or static ranges: 16 minus network, broadcast and gateway.
    assert_eq!(value(&before, free, &[("network", "spare")]), Some(13.0));
    let tasks = "bosh_director_tasks";
    for t in ["update_stemcell", "update_release"] {
        assert_eq!(
            value(&before, tasks, &[("type", t), ("state", "done")]),
            Some(1.0),
            "{t}"
        );
    }
    assert_eq!(
        value(&before, tasks, &[("type", "update_deployment")]),
        None
    );
    let phases = "bosh_director_deploy_phase_duration_seconds_count";
    assert_eq!(value(&before, phases, &[]), None);

    let (_, t) = w.deploy(MANIFEST, "").await;
    assert_eq!(t["state"], "done", "{t}");
    // A failing deploy (unknown network) adds an errored task and no phase past the plan.
    let broken = MANIFEST.replace("networks: [{name: default}]", "networks: [{name: nowhere}]");
    let (_, t) = w.deploy(&broken, "").await;
    assert_eq!(t["state"], "error", "{t}");

    let after = scrape(&w).await;
    assert_eq!(
        value(
            &after,
            tasks,
            &[("type", "update_deployment"), ("state", "done")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            tasks,
            &[("type", "update_deployment"), ("state", "error")]
        ),
        Some(1.0)
    );
    // The gauge agrees with the table, whatever else ran (e.g. health monitor tasks).
    let listed: f64 = after
        .iter()
        .filter(|(n, _, _)| n == tasks)
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(
        listed,
        w.db_count("SELECT COUNT(*) FROM tasks").await as f64
    );

    for phase in ["plan", "compile", "create_vms", "update"] {
        assert_eq!(
            value(&after, phases, &[("phase", phase)]),
            Some(1.0),
            "{phase}"
        );
        let sum = value(
            &after,
            "bosh_director_deploy_phase_duration_seconds_sum",
            &[("phase", phase)],
        )
        .unwrap();
        assert!(sum > 0.0, "{phase}: {sum}");
        // The +Inf bucket holds every observation.
        assert_eq!(
            value(
                &after,
                "bosh_director_deploy_phase_duration_seconds_bucket",
                &[("phase", phase), ("le", "+Inf")]
            ),
            Some(1.0),
            "{phase}"
        );
    }

    // Every instance VM plus the compilation VMs went through create_vm.
    let instances = w.db_count("SELECT COUNT(*) FROM instances").await;
    assert_eq!(instances, 3);
    let create_vm = value(
        &after,
        "bosh_director_cpi_call_duration_seconds_count",
        &[("method", "create_vm")],
    )
    .unwrap();
    assert!(create_vm >= instances as f64, "{create_vm}");
    assert_eq!(create_vm, w.vms_created() as f64);
    assert_eq!(
        value(
            &after,
            "bosh_director_cpi_call_errors_total",
            &[("method", "create_vm")]
        ),
        None
    );

    // Agents answered over NATS: at least one apply per instance.
    let applies = value(
        &after,
        "bosh_director_nats_round_trip_seconds_count",
        &[("method", "apply")],
    )
    .unwrap_or_else(|| {
        let nats: Vec<_> = after
            .iter()
            .filter(|(n, _, _)| n.contains("nats"))
            .collect();
        panic!("no apply round trip: {nats:?}")
    });
    assert!(applies >= instances as f64, "{applies}");

    // The instances hold one dynamic IP each; compilation VMs gave theirs back.
    assert_eq!(
        value(&after, free, &[("network", "default")]),
        Some(POOL - instances as f64)
    );
    assert_eq!(value(&after, free, &[("network", "spare")]), Some(13.0));
}
