//! The external client against small fake CPI scripts.

mod common;

use bosh_cpi::{Cpi, CpiError, ExternalCpi, ExternalCpiConfig, MemoryLogSink};
use bosh_cpi_protocol::CpiErrorKind;
use bosh_types::ids::{DiskCid, VmCid};
use common::{pid_dead, wait_for, write_script};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Fake {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Fake {
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn client(&self) -> ExternalCpi {
        let mut config = ExternalCpiConfig::new(&self.path, "director-1");
        config.timeout = Duration::from_secs(20);
        ExternalCpi::new(config)
    }
}

/// A CPI that records requests, answers `info` with `info_version` (`null` = absent) and
/// runs `other` (shell) for every other method.
fn fake_cpi(info_version: Value, other: &str) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cpi");
    let info = match info_version {
        Value::Null => json!({"result": {"stemcell_formats": []}, "error": null, "log": ""}),
        v => {
            json!({"result": {"api_version": v, "stemcell_formats": ["x"]}, "error": null, "log": ""})
        }
    };
    write_script(
        &path,
        &format!(
            r#"req=$(cat)
echo "$req" >> '{log}'
case "$req" in
  *'"method":"info"'*) echo '{info}' ;;
  *) {other} ;;
esac"#,
            log = dir.path().join("requests.log").display(),
        ),
    );
    Fake { dir, path }
}

fn answer(response: Value) -> String {
    format!("echo '{response}'")
}

fn vm() -> VmCid {
    "vm-1".parse().unwrap()
}

#[tokio::test]
async fn every_known_error_type_keeps_type_message_and_retry() {
    for kind in CpiErrorKind::ALL {
        let fake = fake_cpi(
            json!(2),
            &answer(json!({"result": null, "log": "", "error": {
                "type": kind.type_name(), "message": "it broke", "ok_to_retry": true}})),
        );
        let e = fake.client().delete_vm(&vm()).await.unwrap_err();
        let CpiError::Cloud {
            kind: got,
            message,
            ok_to_retry,
            method,
            request_id,
        } = &e
        else {
            panic!("{kind}: {e:?}")
        };
        assert_eq!(*got, kind);
        assert_eq!(message, "it broke");
        assert!(*ok_to_retry);
        assert_eq!(method, "delete_vm");
        assert!(request_id.as_deref().unwrap().starts_with("cpi-"));
        assert_eq!(e.ok_to_retry(), kind.carries_ok_to_retry());
        assert!(
            e.to_string()
                .contains(&format!("CPI error '{}'", kind.type_name()))
        );
    }
}

#[tokio::test]
async fn legacy_not_implemented_errors_and_unknown_types() {
    let fake = fake_cpi(
        json!(2),
        &answer(json!({"result": null, "log": "", "error": {
            "type": "InvalidCall", "message": "Method is not known, got 'x'", "ok_to_retry": false}})),
    );
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::NotImplemented));
    assert!(e.is(CpiErrorKind::CpiError));

    let fake = fake_cpi(
        json!(2),
        &answer(json!({"result": null, "log": "", "error": {
            "type": "Unknown", "message": "ruby exploded", "ok_to_retry": false}})),
    );
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert!(matches!(&e, CpiError::Unknown { error_type, .. } if error_type == "Unknown"));
    assert!(
        e.to_string()
            .starts_with("Unknown CPI error 'Unknown' with message 'ruby exploded'")
    );
}

#[tokio::test]
async fn invalid_responses_keep_stdout_stderr_and_status() {
    let fake = fake_cpi(
        json!(2),
        "echo oops >&2; echo '{\"result\":true,\"error\":null}'; exit 3",
    );
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    let CpiError::InvalidResponse {
        reason,
        stdout,
        stderr,
        exit_status,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert!(reason.contains("log"), "{reason}");
    assert!(stdout.contains("\"result\":true"));
    assert_eq!(stderr, "oops\n");
    assert_eq!(*exit_status, Some(3));

    let fake = fake_cpi(json!(2), "echo 'this is not json'");
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert!(
        matches!(&e, CpiError::InvalidResponse { reason, .. } if reason.contains("ParserError"))
    );

    let fake = fake_cpi(json!(2), "true");
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert!(
        matches!(e, CpiError::InvalidResponse { .. }),
        "empty stdout is invalid"
    );

    let fake = fake_cpi(
        json!(2),
        &answer(json!({"result": "yes", "error": null, "log": ""})),
    );
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert!(
        matches!(&e, CpiError::InvalidResponse { reason, .. } if reason.contains("unexpected result"))
    );
}

#[tokio::test]
async fn non_zero_exit_with_a_valid_response_is_success() {
    let fake = fake_cpi(
        json!(2),
        "echo '{\"result\":true,\"error\":null,\"log\":\"\"}'; exit 1",
    );
    assert!(fake.client().has_vm(&vm()).await.unwrap());
}

#[tokio::test]
async fn hanging_cpi_times_out_and_its_process_group_is_killed() {
    let fake = fake_cpi(
        json!(2),
        "sleep 60 & echo $! > \"$0.sleeper\"; echo started >&2; wait",
    );
    let mut config = ExternalCpiConfig::new(&fake.path, "d");
    config.timeout = Duration::from_millis(800);
    let cpi = ExternalCpi::new(config);
    // First call (`info`) answers at once; the second one hangs.
    cpi.api_version().await.unwrap();
    let start = Instant::now();
    let e = cpi.has_vm(&vm()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    let CpiError::Timeout { method, stderr, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(method, "has_vm");
    assert_eq!(stderr, "started\n");
    let sleeper_file = PathBuf::from(format!("{}.sleeper", fake.path.display()));
    let sleeper: u32 = std::fs::read_to_string(sleeper_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("sleeping child killed", || pid_dead(sleeper));
}

#[tokio::test]
async fn api_version_is_negotiated_once_and_omitted_on_info() {
    let ok = answer(json!({"result": true, "error": null, "log": ""}));
    let fake = fake_cpi(json!(5), &ok);
    let cpi = fake.client();
    assert!(cpi.has_vm(&vm()).await.unwrap());
    assert!(
        cpi.with_stemcell_api_version(Some(3))
            .has_vm(&vm())
            .await
            .unwrap()
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3, "info once, then two calls: {reqs:?}");
    assert_eq!(reqs[0]["method"], "info");
    assert!(reqs[0].get("api_version").is_none());
    assert_eq!(reqs[0]["arguments"], json!([]));
    assert_eq!(reqs[1]["api_version"], 3, "min(5, 3)");
    assert_eq!(reqs[1]["arguments"], json!(["vm-1"]));
    assert!(reqs[1]["context"].get("vm").is_none());
    assert_eq!(
        reqs[2]["context"]["vm"],
        json!({"stemcell": {"api_version": 3}})
    );

    let fake = fake_cpi(json!(2), &ok);
    fake.client().has_vm(&vm()).await.unwrap();
    assert_eq!(fake.requests()[1]["api_version"], 2);

    let fake = fake_cpi(json!(1), &ok);
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "CPI API version 1 is not supported. Minimum required version is 2."
    );
    assert_eq!(fake.requests().len(), 1, "nothing is sent to a v1 CPI");

    let fake = fake_cpi(Value::Null, &ok);
    let e = fake.client().has_vm(&vm()).await.unwrap_err();
    assert!(matches!(
        e,
        CpiError::UnsupportedApiVersion { version: None }
    ));
}

#[tokio::test]
async fn context_carries_director_uuid_request_id_and_cpi_config_properties() {
    let fake = fake_cpi(
        json!(2),
        &answer(json!({"result": true, "error": null, "log": ""})),
    );
    let mut config = ExternalCpiConfig::new(&fake.path, "director-1");
    config.properties = json!({"host": "tcp://d:2376", "api_version": "1.44"})
        .as_object()
        .unwrap()
        .clone();
    ExternalCpi::new(config)
        .has_disk(&"disk-1".parse::<DiskCid>().unwrap())
        .await
        .unwrap();
    for req in fake.requests() {
        let ctx = &req["context"];
        assert_eq!(ctx["director_uuid"], "director-1");
        assert_eq!(ctx["host"], "tcp://d:2376");
        assert_eq!(ctx["api_version"], "1.44");
        let id = ctx["request_id"].as_str().unwrap();
        let digits = id.strip_prefix("cpi-").unwrap();
        assert!(
            digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit()),
            "{id}"
        );
    }
}

#[tokio::test]
async fn environment_is_scrubbed() {
    let fake = fake_cpi(
        json!(2),
        "env > \"$0.env\"; echo '{\"result\":true,\"error\":null,\"log\":\"\"}'",
    );
    fake.client().has_vm(&vm()).await.unwrap();
    let env = std::fs::read_to_string(format!("{}.env", fake.path.display())).unwrap();
    assert!(
        env.lines()
            .any(|l| l == "PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
        "{env}"
    );
    assert!(!env.contains("CARGO"), "no caller environment leaks: {env}");
    for line in env.lines() {
        let key = line.split('=').next().unwrap();
        assert!(
            matches!(
                key,
                "PATH" | "TMPDIR" | "HOME" | "PWD" | "SHLVL" | "OLDPWD" | "_"
            ),
            "{line}"
        );
    }
}

#[tokio::test]
async fn stderr_lines_and_log_field_reach_the_sink() {
    let fake = fake_cpi(
        json!(2),
        "echo first >&2; echo second >&2; echo '{\"result\":true,\"error\":null,\"log\":\"from-log\"}'",
    );
    let sink = Arc::new(MemoryLogSink::default());
    fake.client()
        .with_log_sink(sink.clone())
        .has_vm(&vm())
        .await
        .unwrap();
    let log = sink.contents();
    assert!(log.contains("first\nsecond\n"), "{log}");
    assert!(log.ends_with("from-log"), "{log}");
}

#[tokio::test]
async fn attach_disk_without_a_hint_is_an_error() {
    let fake = fake_cpi(
        json!(2),
        &answer(json!({"result": null, "error": null, "log": ""})),
    );
    let e = fake
        .client()
        .attach_disk(&vm(), &"d-1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(&e, CpiError::InvalidResponse { reason, .. } if reason == "No disk_hint"));
    let fake = fake_cpi(
        json!(2),
        &answer(json!({"result": {"lun": "0"}, "error": null, "log": ""})),
    );
    let hint = fake
        .client()
        .attach_disk(&vm(), &"d-1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(hint).unwrap(), json!({"lun": "0"}));
}

#[tokio::test]
async fn create_stemcell_sends_tags_only_to_v3_cpis() {
    use bosh_cpi_protocol::methods::{CreateStemcellArgs, StemcellOptions};
    let args = CreateStemcellArgs {
        image_path: "/i".into(),
        cloud_properties: Default::default(),
        options: Some(StemcellOptions {
            tags: [("k".into(), "v".into())].into(),
        }),
    };
    for (version, len) in [(2, 2), (3, 3)] {
        let fake = fake_cpi(
            json!(version),
            &answer(json!({"result": "sc-1", "error": null, "log": ""})),
        );
        let cid = fake.client().create_stemcell(args.clone()).await.unwrap();
        assert_eq!(cid.as_str(), "sc-1");
        assert_eq!(
            fake.requests()[1]["arguments"].as_array().unwrap().len(),
            len
        );
    }
}

#[tokio::test]
async fn missing_executable_is_a_spawn_error() {
    let cpi = ExternalCpi::new(ExternalCpiConfig::new(
        Path::new("/nonexistent/bin/cpi"),
        "d",
    ));
    assert!(matches!(
        cpi.info().await.unwrap_err(),
        CpiError::Spawn { .. }
    ));
}
