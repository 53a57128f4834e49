//! The real templates of the example greeter release and the kv fixture release, rendered
//! with plausible properties and links.

mod common;

use bosh_templates::{
    InstanceRender, JobTemplates, LinkSpec, ProvidedLink, RenderRequest, properties_bind,
};
use common::*;
use indexmap::IndexMap;
use pretty_assertions::assert_eq;
use serde_json::json;
use std::path::PathBuf;

fn greeter_job(name: &str) -> JobTemplates {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/greeter-release/jobs")
        .join(name);
    JobTemplates::from_dir(&dir).unwrap()
}

fn kv_job(name: &str) -> JobTemplates {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/kv-release/jobs")
        .join(name);
    JobTemplates::from_dir(&dir).unwrap()
}

fn links(entries: Vec<(&str, LinkSpec)>) -> IndexMap<String, LinkSpec> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[test]
fn greeter_release_renders() {
    let greeter = greeter_job("greeter");
    let proxy = greeter_job("greeter-proxy");
    let smoke = greeter_job("greeter-smoke-tests");

    let greeter_props = properties_bind(
        &greeter.spec,
        &json!({"port": 9090, "motd": "line one\nline two", "unknown": "dropped"}),
    )
    .unwrap();
    let backends = link("greeter", 2, json!({"port": 9090, "greeting": "Hi there"}));
    let mut peers = backends.clone();
    peers.instances[0].id = "uuid-web-0".into();

    let mut web = InstanceRender {
        instance: instance("web", 0, "uuid-web-0"),
        jobs: vec![greeter.job_render(
            release(),
            greeter_props,
            links(vec![("peers", peers)]),
            vec![ProvidedLink {
                name: "greeter".into(),
                type_: "greeter".into(),
                group: "2".into(),
            }],
        )],
    };
    web.instance.az = Some("z1".into());
    let proxy_props = properties_bind(&proxy.spec, &json!({})).unwrap();
    let proxy_inst = InstanceRender {
        instance: instance("proxy", 0, "uuid-proxy-0"),
        jobs: vec![proxy.job_render(
            release(),
            proxy_props,
            links(vec![("backends", backends.clone())]),
            vec![],
        )],
    };
    let smoke_props = properties_bind(&smoke.spec, &json!({"timeout_ms": 1500})).unwrap();
    let smoke_inst = InstanceRender {
        instance: instance("smoke", 0, "uuid-smoke-0"),
        jobs: vec![smoke.job_render(
            release(),
            smoke_props,
            links(vec![("greeter", backends)]),
            vec![],
        )],
    };
    let batch = render(&RenderRequest {
        instances: vec![web, proxy_inst, smoke_inst],
        ..RenderRequest::default()
    });

    let g = batch.instances[0].job("greeter").unwrap();
    assert!(
        g.monit.starts_with("check process greeter\n"),
        "{}",
        g.monit
    );
    let conf = g.file("config/greeter.conf").unwrap();
    assert!(
        conf.starts_with(
            "# greeter configuration for web/uuid-web-0 (index 0),\n\
         # rendered by BOSH from the job's properties. Format: \"key = value\" lines.\n\
         listen_address = 0.0.0.0\nport = 9090\n"
        ),
        "{conf}"
    );
    for line in [
        "request_timeout_ms = 5000\n",
        "deployment = demo\ninstance_group = web\nindex = 0\naz = z1\nid = uuid-web-0\n\
         address = 10.0.0.10\nbootstrap = true\n",
        "greeting = Hello from greeter!\nmotd = line one line two\npeers = 10.0.1.11:9090\n",
    ] {
        assert!(conf.contains(line), "missing {line:?} in:\n{conf}");
    }
    assert!(!conf.contains("stats_token"), "{conf}");
    let ctl = g.file("bin/ctl").unwrap();
    assert!(ctl.contains("SHUTDOWN_TIMEOUT=10\n"), "{ctl}");
    assert_eq!(
        g.file(".bosh/links.json").unwrap(),
        "[\n  {\n    \"name\": \"greeter\",\n    \"type\": \"greeter\",\n    \"group\": \"2\"\n  }\n]\n"
    );

    let p = batch.instances[1].job("greeter-proxy").unwrap();
    let conf = p.file("config/greeter-proxy.conf").unwrap();
    assert!(conf.contains("port = 8000\n"), "{conf}");
    assert!(
        conf.contains("# 2 greeter server(s) from the 'backends' link\n"),
        "{conf}"
    );
    assert!(
        conf.ends_with("backends = 10.0.1.10:9090,10.0.1.11:9090\n"),
        "{conf}"
    );
    assert_eq!(p.file(".bosh/links.json").unwrap(), "[]\n");

    let s = batch.instances[2].job("greeter-smoke-tests").unwrap();
    assert_eq!(s.monit, "");
    let run = s.file("bin/run").unwrap();
    assert!(
        run.contains("# greeter smoke tests (errand), rendered by BOSH for demo.\n"),
        "{run}"
    );
    assert!(
        run.contains("args=(-t 1500)\nargs+=(-g 'Hi there')\nservers=(\n"),
        "{run}"
    );
    assert!(
        run.contains(
            "  'greeter/greeter-id-0 (index 0, az z1)|10.0.1.10|9090'\n  \
         'greeter/greeter-id-1 (index 1, az z2)|10.0.1.11|9090'\n)\n"
        ),
        "{run}"
    );
    assert!(!run.contains("-P "), "no proxy link, no proxies: {run}");
}

#[test]
fn kv_release_renders() {
    let server = kv_job("kv-server");
    let smoke = kv_job("kv-smoke");
    let props = properties_bind(&server.spec, &json!({"admin": {"password": "s3cret"}})).unwrap();
    assert_eq!(
        serde_json::Value::Object(props.clone()),
        json!({"port": 7000, "max_keys": 128, "admin": {"password": "s3cret"}})
    );
    let kv = link("kv", 2, json!({"port": 7000}));
    let batch = render(&RenderRequest {
        instances: vec![
            InstanceRender {
                instance: instance("kv", 1, "uuid-kv-1"),
                jobs: vec![server.job_render(release(), props, IndexMap::new(), vec![])],
            },
            InstanceRender {
                instance: instance("smoke", 0, "uuid-smoke"),
                jobs: vec![smoke.job_render(
                    release(),
                    properties_bind(&smoke.spec, &json!({})).unwrap(),
                    links(vec![("kv", kv)]),
                    vec![],
                )],
            },
        ],
        ..RenderRequest::default()
    });
    let s = batch.instances[0].job("kv-server").unwrap();
    let config: serde_json::Value =
        serde_json::from_str(s.file("config/config.json").unwrap()).unwrap();
    assert_eq!(config["port"], 7000);
    assert_eq!(config["max_keys"], 128);
    assert_eq!(config["index"], 1);
    assert_eq!(config["admin_password"], "s3cret");
    // `if_link(..) { } || []` yields the else-block object itself: the fixture's quirk.
    assert!(config["peers"].is_string(), "{config}");
    assert!(s.file("bin/ctl").unwrap().contains("--port 7000\n"));

    let run = batch.instances[1]
        .job("kv-smoke")
        .unwrap()
        .file("bin/run")
        .unwrap();
    assert_eq!(
        run,
        "#!/bin/bash\n\necho \"checking 10.0.1.10:7000\"\n\necho \"checking 10.0.1.11:7000\"\n\n"
    );
}

#[test]
fn properties_bind_applies_defaults_sorts_and_rejects_non_hashes() {
    let server = kv_job("kv-server");
    let bound = properties_bind(&server.spec, &json!({"port": null, "max_keys": 5})).unwrap();
    assert_eq!(
        serde_json::Value::Object(bound),
        json!({"port": 7000, "max_keys": 5, "admin": {"password": null}})
    );
    let sorted = properties_bind(
        &server.spec,
        &json!({"port": {"z": 1, "a": {"y": 2, "b": 3}}}),
    )
    .unwrap();
    let keys: Vec<&String> = sorted["port"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "z"]);
    let inner: Vec<&String> = sorted["port"]["a"].as_object().unwrap().keys().collect();
    assert_eq!(inner, ["b", "y"]);

    let err = properties_bind(&server.spec, &json!({"admin": "plain"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Property 'admin.password' expects a hash, but received 'String'"
    );
}
