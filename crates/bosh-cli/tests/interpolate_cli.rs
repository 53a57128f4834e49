//! `bosh-rs interpolate` behaviour beyond the recorded fixtures: variable sources and their
//! precedence, the vars store, `--path`, and error reporting.

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bosh-rs"));
    cmd.arg("interpolate").args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("bosh-rs runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write test file");
}

#[test]
fn sources_apply_in_reference_precedence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "m.yml", "a: ((a))\nb: ((b))\nc: ((c))\nd: ((d))\n");
    write(d, "vars.yml", "a: from-file\nb: from-file\nc: from-file\n");
    write(d, "c.txt", "from-var-file");
    let out = run(
        d,
        &[
            "m.yml",
            "-l",
            "vars.yml",
            "--var-file",
            "c=c.txt",
            "-v",
            "b=from-flag",
            "--vars-env",
            "TESTPFX",
        ],
        &[("TESTPFX_d", "from-env"), ("TESTPFX_a", "from-env")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Env < vars file < var file < -v.
    assert_eq!(
        stdout(&out),
        "a: from-file\nb: from-flag\nc: from-var-file\nd: from-env\n"
    );
}

#[test]
fn vars_store_generates_then_reuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(
        d,
        "m.yml",
        "pw: ((pw))\nvariables:\n- name: pw\n  type: password\n",
    );
    let first = run(d, &["m.yml", "--vars-store", "creds.yml"], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let store = std::fs::read_to_string(d.join("creds.yml")).expect("store written");
    let pw = store
        .strip_prefix("pw: ")
        .and_then(|s| s.strip_suffix('\n'))
        .expect("one entry");
    assert_eq!(pw.len(), 20);
    assert_eq!(stdout(&first), format!("pw: {pw}\nvariables: []\n"));
    let second = run(d, &["m.yml", "--vars-store", "creds.yml"], &[]);
    assert_eq!(stdout(&second), stdout(&first));
}

#[test]
fn path_prints_multiline_strings_raw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "m.yml", "k:\n  key: |\n    line1\n    line2\n");
    let out = run(d, &["m.yml", "--path", "/k/key"], &[]);
    assert_eq!(stdout(&out), "line1\nline2\n\n");
    let out = run(d, &["m.yml", "--path", "/k"], &[]);
    assert_eq!(stdout(&out), "key: |\n  line1\n  line2\n");
}

#[test]
fn unused_variables_fail_with_var_errs_unused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "m.yml", "a: ((a))\n");
    let out = run(
        d,
        &["m.yml", "-v", "a=1", "-v", "extra=2", "--var-errs-unused"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "- Expected to use variables:\n    - extra\n\nExit code 1\n"
    );
}

#[test]
fn bad_flag_values_are_reported_like_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "m.yml", "a: 1\n");
    let out = run(d, &["m.yml", "-o", "nope.yml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "invalid argument for flag `-o, --ops-file' (expected []opts.OpsFileArg): Reading ops file 'nope.yml': Opening file nope.yml: open nope.yml: no such file or directory\n\nExit code 1\n"
    );
    let out = run(d, &["m.yml", "-v", "novalue"], &[]);
    assert_eq!(
        stderr(&out),
        "invalid argument for flag `-v, --var' (expected []template.VarKV): Expected var 'novalue' to be in format 'name=value'\n\nExit code 1\n"
    );
    let out = run(d, &["m.yml", "--path", "nope"], &[]);
    assert_eq!(
        stderr(&out),
        "invalid argument for flag `--path' (expected patch.Pointer): Expected to start with '/'\n\nExit code 1\n"
    );
}

#[test]
fn ops_file_definition_errors_name_the_operation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "m.yml", "a: 1\n");
    write(d, "ops.yml", "- type: replace\n  path: /a\n");
    let out = run(d, &["m.yml", "-o", "ops.yml"], &[]);
    assert_eq!(
        stderr(&out),
        "invalid argument for flag `-o, --ops-file' (expected []opts.OpsFileArg): Building ops: Replace operation [0]: Missing value within\n{\n  \"Type\": \"replace\",\n  \"Path\": \"/a\",\n  \"Error\": \"operation [0] in ops.yml failed\"\n}\n\nExit code 1\n"
    );
}

#[test]
fn missing_manifest_names_the_absolute_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = run(d, &["missing.yml"], &[]);
    let abs = d.join("missing.yml");
    assert_eq!(
        stderr(&out),
        format!(
            "Opening file {0}:\n  open {0}: no such file or directory\n\nExit code 1\n",
            abs.display()
        )
    );
}

#[test]
fn manifest_can_come_from_stdin() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
        .args(["interpolate", "-", "-v", "x=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bosh-rs runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"b: ((x))\na: 2\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("finishes");
    assert_eq!(stdout(&out), "a: 2\nb: 1\n");
}
