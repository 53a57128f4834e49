//! `bosh-sim-cpi` answers every input with one valid JSON response.

mod common;

use bosh_cpi_protocol::CpiResponse;
use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &[u8]) -> (CpiResponse, i32) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosh-sim-cpi"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A CPI may answer without reading its input (e.g. no config): like the director, ignore a
    // broken pipe and judge the response on stdout.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    let response = CpiResponse::from_slice_strict(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (response, out.status.code().unwrap())
}

fn error_of(r: &CpiResponse) -> (&str, &str) {
    let e = r.error.as_ref().expect("an error response");
    (e.error_type.as_str(), e.message.as_str())
}

#[test]
fn bad_input_gets_cpi_errors_never_a_crash() {
    let env = common::sim_env();
    let cfg = env.config_path.to_str().unwrap();

    let (r, code) = run(&["-configPath", cfg], b"not json");
    assert_eq!(
        error_of(&r),
        ("Bosh::Clouds::CpiError", "Must provide valid JSON payload")
    );
    assert_eq!(code, 0);

    let (r, _) = run(
        &["-configPath", cfg],
        br#"{"method":"bogus","arguments":[],"context":{}}"#,
    );
    assert_eq!(
        error_of(&r),
        (
            "Bosh::Clouds::NotImplemented",
            "Must call implemented method: Unknown method 'bogus'"
        )
    );

    let (r, _) = run(
        &["-configPath", cfg],
        br#"{"method":"delete_vm","arguments":[7],"context":{}}"#,
    );
    let (t, m) = error_of(&r);
    assert_eq!(t, "Bosh::Clouds::CpiError");
    assert!(
        m.starts_with("Invalid arguments: argument 0 ('vm_cid') of 'delete_vm'"),
        "{m}"
    );

    let (r, _) = run(
        &[&format!("-configPath={cfg}")],
        br#"{"method":"delete_vm","arguments":["vm-nope"],"context":{"director_uuid":"d"},"api_version":2}"#,
    );
    assert_eq!(error_of(&r).0, "Bosh::Clouds::VMNotFound");

    let (r, _) = run(
        &["-configPath", cfg],
        br#"{"method":"has_vm","arguments":["../../etc"],"context":{}}"#,
    );
    assert_eq!(error_of(&r).0, "Bosh::Clouds::CloudError");

    let (r, _) = run(
        &["-configPath", cfg],
        br#"{"method":"info","arguments":[],"context":{}}"#,
    );
    assert!(r.error.is_none());
    assert_eq!(r.result["api_version"], 2);
}

#[test]
fn missing_config_is_reported_as_json() {
    let (r, code) = run(&["-configPath", "/nonexistent/cpi.json"], b"{}");
    let (t, m) = error_of(&r);
    assert_eq!(t, "Bosh::Clouds::CpiError");
    assert!(
        m.starts_with("Loading config: Reading config '/nonexistent/cpi.json'"),
        "{m}"
    );
    assert_eq!(code, 1);
    let (r, _) = run(&[], b"{}");
    assert!(error_of(&r).1.starts_with("Usage"));
}
