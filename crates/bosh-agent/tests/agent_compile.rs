//! `compile_package` end to end (§9): the agent binary over real NATS compiles the two
//! packages of `examples/greeter-release` through a local blobstore.

mod common;

use common::{Harness, sha1_hex, sha256_digest, tgz};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn release_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/greeter-release")
}

/// The source tarball of a package, as `bosh create-release` lays it out: `packaging` at
/// the top, then the package's files under their `src/` paths.
fn package_source(name: &str, src_dir: &str) -> Vec<u8> {
    let rel = release_dir();
    let packaging =
        std::fs::read_to_string(rel.join("packages").join(name).join("packaging")).unwrap();
    let mut files: Vec<(String, String, u32)> = vec![("packaging".into(), packaging, 0o644)];
    let mut entries: Vec<_> = std::fs::read_dir(rel.join("src").join(src_dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let content = std::fs::read_to_string(&p).unwrap();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        files.push((format!("{src_dir}/{file}"), content, 0o644));
    }
    let refs: Vec<(&str, &str, u32)> = files
        .iter()
        .map(|(p, c, m)| (p.as_str(), c.as_str(), *m))
        .collect();
    tgz(&refs)
}

fn task_error(reply: &Value) -> String {
    reply["exception"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_package_builds_greeter_release() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let libgreet_src = package_source("libgreet", "libgreet");
    std::fs::write(h.blobs.join("src-libgreet"), &libgreet_src).unwrap();
    let greeter_src = package_source("greeter", "greeter");
    std::fs::write(h.blobs.join("src-greeter"), &greeter_src).unwrap();

    let lib = d
        .run_task(
            "compile_package",
            json!([
                "src-libgreet",
                sha1_hex(&libgreet_src),
                "libgreet",
                "1.0.1",
                {}
            ]),
        )
        .await;
    let lib_id = lib["value"]["result"]["blobstore_id"]
        .as_str()
        .unwrap_or_else(|| panic!("libgreet: {lib}"))
        .to_owned();
    let lib_sha1 = lib["value"]["result"]["sha1"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&lib_id).is_ok(), "{lib_id}");
    let lib_blob = std::fs::read(h.blobs.join(&lib_id)).unwrap();
    assert_eq!(
        lib_sha1,
        sha1_hex(&lib_blob),
        "bare sha1 of the uploaded blob"
    );
    assert!(
        !h.base.join("packages").exists(),
        "packages are uninstalled after compiling"
    );

    // Dependency keys decode case-insensitively; the digest may be sha256.
    let greeter = d
        .run_task(
            "compile_package",
            json!(["src-greeter", sha256_digest(&greeter_src), "greeter", "2.0.1",
                   {"libgreet": {"Name": "libgreet", "version": "1.0.1", "sha1": lib_sha1, "blobstore_id": lib_id}}]),
        )
        .await;
    let id = greeter["value"]["result"]["blobstore_id"]
        .as_str()
        .unwrap_or_else(|| panic!("greeter: {greeter}"))
        .to_owned();
    let blob = std::fs::read(h.blobs.join(&id)).unwrap();
    assert_eq!(greeter["value"]["result"]["sha1"], json!(sha1_hex(&blob)));

    let out = h.dir.path().join("greeter-compiled");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    archive.unpack(&out).unwrap();
    let run = std::process::Command::new(out.join("bin/greeterd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    assert!(
        String::from_utf8_lossy(&run.stdout).starts_with("greeterd "),
        "{run:?}"
    );
    assert!(out.join("bin/greeter-smoke-test").is_file());
    assert!(
        h.base
            .join("data/sys/log/compilation/packaging.stderr.log")
            .is_file()
    );

    // A wrong digest fails the task.
    let bad = d
        .run_task(
            "compile_package",
            json!(["src-greeter", "sha256:00", "greeter", "2.0.1", {}]),
        )
        .await;
    assert!(
        task_error(&bad).contains("Fetching package greeter"),
        "{bad}"
    );

    // A failing packaging script fails the task with its output.
    let failing = tgz(&[(
        "packaging",
        "echo building-things\necho broken-compiler >&2\nexit 3\n",
        0o644,
    )]);
    std::fs::write(h.blobs.join("src-bad"), &failing).unwrap();
    let failed = d
        .run_task(
            "compile_package",
            json!(["src-bad", sha1_hex(&failing), "bad", "0.1", null]),
        )
        .await;
    let msg = task_error(&failed);
    assert!(
        msg.contains("Command exited with 3")
            && msg.contains("building-things")
            && msg.contains("broken-compiler"),
        "{failed}"
    );
    // Missing arguments.
    let short = d.run_task("compile_package", json!(["a", "b"])).await;
    assert!(
        task_error(&short).ends_with("result: Not enough arguments, expected 5, got 2"),
        "{short}"
    );
}
