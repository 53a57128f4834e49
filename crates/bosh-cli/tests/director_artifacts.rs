//! `bosh-rs` stemcell and release commands against a real `bosh-director` (sim CPI):
//! uploads with the pre-checks and the trimmed release tarball, listings, inspect, delete,
//! and a tarball the director refuses. One director serves the whole file (see
//! `director_cli.rs` for how it is found or started).

mod common;
use common::*;

use std::process::Output;

fn with_env<'a>(d: &'a Director, ca: &'a str, password: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("BOSH_ENVIRONMENT", d.url.as_str()),
        ("BOSH_CA_CERT", ca),
        ("BOSH_CLIENT", "admin"),
        ("BOSH_CLIENT_SECRET", password),
    ]
}

#[test]
fn stemcells_and_releases_end_to_end() {
    let kv0 = fixture("kv-release-expected/kv-0+dev.1.tgz");
    let kv1 = fixture("kv-release-expected/kv-1.0.0.tgz");
    let stemcell = fixture("upstream/valid_stemcell.tgz");
    let d = director_start();
    let home = tempfile::tempdir().unwrap();
    let cli = Cli { home: home.path() };
    let ca = d.dir.join("ca.crt");
    let ca = ca.to_str().unwrap().to_owned();
    let password = admin_password(&d.dir);
    let env = with_env(&d, &ca, &password);
    let run = |args: &[&str]| cli.run_env(args, &env);

    // Release tarballs: the first sends everything.
    let out = run(&["upload-release", &kv0]);
    let text = ok(&out);
    assert!(text.contains("Task "), "{text}");
    assert!(text.contains("done"), "{text}");

    // The second: /packages/matches finds every package, and the tarball sent leaves them out.
    let out = run_debug(&cli, &env, &["upload-release", &kv1]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uploading release tarball with 0 of 3 packages (3 matched on the director)"),
        "{err}"
    );

    // Already there, named on the command line: skipped.
    let out = ok(&run(&[
        "upload-release",
        &kv1,
        "--name",
        "kv",
        "--version",
        "1.0.0",
    ]));
    assert!(out.contains("Release 'kv/1.0.0' already exists."), "{out}");
    assert!(!out.contains("Task "), "{out}");

    let out = ok(&run(&["releases"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Name") && l.contains("Version") && l.contains("Commit Hash")),
        "{out}"
    );
    let kv_rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("kv") || l.starts_with("~"))
        .collect();
    assert_eq!(kv_rows.len(), 2, "{out}");
    assert!(kv_rows[0].contains("1.0.0"), "newest version first: {out}");
    assert!(kv_rows[1].contains("0+dev.1"), "{out}");
    assert!(out.contains("(*) Currently deployed"), "{out}");
    assert!(out.contains("(+) Uncommitted changes"), "{out}");
    assert!(out.contains("2 releases"), "{out}");

    let out = ok(&run(&["inspect-release", "kv/1.0.0"]));
    for needle in [
        "Job",
        "Blobstore ID",
        "Digest",
        "Links Consumed",
        "Links Provided",
        "kv-server/",
        "kv-smoke/",
        "Package",
        "Compiled for",
        "(source)",
        "kvlib/",
        "kvserver/",
        "kvtools/",
        "2 jobs",
        "3 packages",
        "name: kv",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    let (_, err) = fails(&run(&["inspect-release", "kv/7.7.7"]));
    assert!(err.contains("kv"), "{err}");

    // Stemcells: the second upload is skipped by the pre-check.
    let out = ok(&run(&["upload-stemcell", &stemcell]));
    assert!(out.contains("Task "), "{out}");
    let out = ok(&run(&["upload-stemcell", &stemcell]));
    assert!(out.contains("already exists."), "{out}");
    assert!(!out.contains("Task "), "{out}");
    let listed = api_json(&d, "/stemcells");
    let sc = &listed[0];
    let (name, version) = (
        sc["name"].as_str().unwrap().to_owned(),
        sc["version"].as_str().unwrap().to_owned(),
    );
    assert!(
        out.contains(&format!("Stemcell '{name}/{version}' already exists.")),
        "{out}"
    );
    // --fix uploads anyway.
    let out = ok(&run(&["upload-stemcell", &stemcell, "--fix"]));
    assert!(out.contains("Task "), "{out}");

    let out = ok(&run(&["stemcells"]));
    assert!(
        out.contains("Name") && out.contains("OS") && out.contains("CPI") && out.contains("CID"),
        "{out}"
    );
    assert!(out.contains(&name) && out.contains(&version), "{out}");
    assert!(out.contains("(*) Currently deployed"), "{out}");
    assert!(out.contains("1 stemcells"), "{out}");

    let slug = format!("{name}/{version}");
    let out = ok(&run(&["delete-stemcell", &slug, "-n"]));
    assert!(out.contains("Task "), "{out}");
    assert_eq!(api_json(&d, "/stemcells").as_array().unwrap().len(), 0);
    let (_, err) = fails(&run(&["delete-stemcell", "nope", "-n"]));
    assert!(err.contains("name/version"), "{err}");

    // Releases: delete one version, then a missing one.
    let out = ok(&run(&["delete-release", "kv/0+dev.1", "-n"]));
    assert!(out.contains("Task "), "{out}");
    let out = ok(&run(&["releases"]));
    assert!(!out.contains("0+dev.1") && out.contains("1.0.0"), "{out}");
    let out = ok(&run(&["delete-release", "kv/0+dev.1", "-n"]));
    assert!(
        out.contains("Release 'kv/0+dev.1' does not exist."),
        "{out}"
    );

    // A tarball the director refuses: exit 1 with the director's error.
    let bad = fixture("upstream/release_invalid_checksum.tgz");
    let out = run(&["upload-release", &bad]);
    let (stdout, err) = fails(&out);
    let all = format!("{stdout}{err}");
    assert!(all.contains("digest"), "{all}");
    assert!(err.contains("to succeed but state is 'error'"), "{err}");

    // The whole series.
    ok(&run(&["delete-release", "kv", "-n"]));
    assert!(!ok(&run(&["releases"])).contains("kv"));
}

fn run_debug(cli: &Cli, env: &[(&str, &str); 4], args: &[&str]) -> Output {
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push(("BOSH_LOG_LEVEL", "debug"));
    cli.run_env(args, &all)
}

fn api_json(d: &Director, path: &str) -> serde_json::Value {
    let ca = std::fs::read(d.dir.join("ca.crt")).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
        .get(format!("{}{path}", d.url))
        .basic_auth("admin", Some(admin_password(&d.dir)))
        .send()
        .unwrap()
        .json()
        .unwrap()
}
