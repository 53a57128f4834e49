//! `inspect-local-release`, `inspect-local-stemcell`, `sha1ify-release`, `sha2ify-release`
//! through the binary, compared with the reference CLI's table layout.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(rel)
}

fn bosh(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_local_stemcell_prints_the_reference_table() {
    let path = fixture("upstream/light-bosh-stemcell-3001-aws-xen-centos-7-go_agent.tgz");
    let (code, out, _) = bosh(&["inspect-local-stemcell", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    // Reference layout: every cell (the last too) followed by two spaces, count line after.
    assert_eq!(
        out,
        "Name                            OS        Version  Infrastructure  Hypervisor  \n\
         bosh-aws-xen-centos-7-go_agent  centos-7  3001     aws             xen  \n\
         \n\
         1 stemcell-metadata\n\
         \n\
         Succeeded\n"
    );
    let (code, _, err) = bosh(&["inspect-local-stemcell", "/nonexistent/stemcell.tgz"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/stemcell.tgz") && err.ends_with("Exit code 1\n"),
        "{err}"
    );
}

#[test]
fn inspect_local_release_lists_jobs_and_packages_from_release_mf() {
    let path = fixture("kv-release-expected/kv-1.0.0.tgz");
    let manifest = bosh_types::release::ReleaseManifest::parse(
        &std::fs::read_to_string(fixture("kv-release-expected/release-1.0.0.MF")).unwrap(),
    )
    .unwrap();
    let (code, out, err) = bosh(&["inspect-local-release", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Name         kv  ");
    assert_eq!(lines[1], "Version      1.0.0  ");
    assert!(lines[2].starts_with("Commit Hash  ") && lines[2].ends_with("  "));
    assert_eq!(lines[3], format!("Archive      {}  ", path.display()));
    assert_eq!(lines[4], "");
    assert!(
        lines[5].starts_with("Job ")
            && lines[5].contains("  Digest ")
            && lines[5].ends_with("Packages  ")
    );
    // kv-server needs two packages: the second one continues on its own line.
    let server = &manifest.jobs[0];
    let row = lines
        .iter()
        .position(|l| l.starts_with(&format!("kv-server/{}", server.fingerprint)))
        .unwrap();
    assert!(lines[row].ends_with("  kvserver  "), "{}", lines[row]);
    assert!(lines[row + 1].trim_start().starts_with("kvtools  "));
    // kv-smoke has no packages: an empty cell prints as '-'.
    assert!(out.contains(&format!("kv-smoke/{}", manifest.jobs[1].fingerprint)));
    assert!(out.contains("\n2 jobs\n") && out.contains("\n3 packages\n"));
    for p in &manifest.packages {
        assert!(out.contains(&format!("{}/{}", p.name, p.fingerprint)));
    }
    assert!(out.ends_with("\n3 packages\n\nSucceeded\n"));
}

#[test]
fn inspect_local_release_json_has_the_reference_shape() {
    let path = fixture("kv-release-expected/kv-1.0.0.tgz");
    let (code, out, _) = bosh(&["--json", "inspect-local-release", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        !out.ends_with('\n'),
        "Go's MarshalIndent output has no trailing newline"
    );
    assert!(out.starts_with("{\n    \"Tables\": [\n"));
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tables = doc["Tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3);
    assert_eq!(tables[0]["Header"]["commit_hash"], "Commit Hash");
    assert_eq!(tables[0]["Rows"][0]["name"], "kv");
    assert_eq!(tables[1]["Content"], "jobs");
    assert_eq!(tables[1]["Rows"][0]["packages"], "kvserver\nkvtools");
    assert_eq!(tables[1]["Rows"][1]["packages"], "");
    assert_eq!(tables[2]["Header"]["dependencies"], "Dependencies");
    assert_eq!(doc["Blocks"], serde_json::Value::Null);
    assert_eq!(doc["Lines"], serde_json::json!(["Succeeded"]));
}

#[test]
fn refused_releases_exit_1_naming_the_problem() {
    for (name, needle) in [
        ("upstream/release_no_name.tgz", "name"),
        (
            "upstream/release_invalid_checksum.tgz",
            "packages/stuff.tgz",
        ),
        ("upstream/release_invalid_jobs.tgz", "jobs/broken.tgz"),
    ] {
        let (code, _, err) = bosh(&["inspect-local-release", fixture(name).to_str().unwrap()]);
        assert_eq!(code, 1, "{name}");
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn sha1ify_and_sha2ify_release_rewrite_digests() {
    let dir = tempfile::tempdir().unwrap();
    let sha1 = dir.path().join("sha1.tgz");
    let sha2 = dir.path().join("sha2.tgz");
    let src = fixture("kv-release-expected/kv-1.0.0.tgz");
    let (code, out, err) = bosh(&[
        "sha1ify-release",
        src.to_str().unwrap(),
        sha1.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("Archive      {}  ", sha1.display())));
    assert!(!out.contains("sha256:"), "{out}");
    let (code, out, err) = bosh(&[
        "sha2ify-release",
        sha1.to_str().unwrap(),
        sha2.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let original =
        std::fs::read_to_string(fixture("kv-release-expected/release-1.0.0.MF")).unwrap();
    let original = bosh_types::release::ReleaseManifest::parse(&original).unwrap();
    for j in &original.jobs {
        assert!(out.contains(&j.sha1), "{out}");
    }
}
