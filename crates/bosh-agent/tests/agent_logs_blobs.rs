//! `fetch_logs` and `upload_blob` against the agent binary over real NATS.

mod common;

use base64::Engine as _;
use common::{Harness, sha1_hex, sha256_digest, tgz};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn tar_names(blob: &[u8]) -> BTreeSet<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type().is_file())
        .map(|e| e.path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn fetched(h: &Harness, reply: &Value) -> Vec<u8> {
    let id = reply["value"]["blobstore_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let blob = std::fs::read(h.blobs.join(id)).unwrap();
    assert_eq!(reply["value"]["sha1"], json!(sha1_hex(&blob)));
    blob
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_logs_filters_and_uploads() {
    let mut h = Harness::start();
    let logs = h.base.join("data/sys/log");
    std::fs::create_dir_all(logs.join("web/nested")).unwrap();
    std::fs::write(logs.join("web/web.stdout.log"), "out\n").unwrap();
    std::fs::write(logs.join("web/nested/deep.log"), "deep\n").unwrap();
    std::fs::write(logs.join("web/notes.txt"), "txt\n").unwrap();
    std::fs::create_dir_all(h.base.join("bosh/log")).unwrap();
    std::fs::write(h.base.join("bosh/log/current"), "agent\n").unwrap();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let all = d.run_task("fetch_logs", json!(["job", null])).await;
    assert_eq!(
        tar_names(&fetched(&h, &all)),
        ["web/nested/deep.log", "web/notes.txt", "web/web.stdout.log"]
            .map(String::from)
            .into()
    );
    let filtered = d.run_task("fetch_logs", json!(["job", ["**/*.log"]])).await;
    assert_eq!(
        tar_names(&fetched(&h, &filtered)),
        ["web/nested/deep.log", "web/web.stdout.log"]
            .map(String::from)
            .into()
    );
    let top = d
        .run_task("fetch_logs", json!(["job", ["web/*.log"]]))
        .await;
    assert_eq!(
        tar_names(&fetched(&h, &top)),
        ["web/web.stdout.log"].map(String::from).into()
    );
    let both = d
        .run_task("fetch_logs", json!(["job,agent", ["**/*.log", "current"]]))
        .await;
    assert_eq!(
        tar_names(&fetched(&h, &both)),
        [
            "agent/current",
            "job/web/nested/deep.log",
            "job/web/web.stdout.log"
        ]
        .map(String::from)
        .into()
    );
    let bad = d.run_task("fetch_logs", json!(["bogus", []])).await;
    assert!(
        bad["exception"]["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("result: Invalid log type"),
        "{bad}"
    );
    let short = d.run_task("fetch_logs", json!(["job"])).await;
    assert!(
        short["exception"]["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Not enough arguments, expected 2, got 1"),
        "{short}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_blob_verifies_and_serves_locally() {
    let mut h = Harness::start();
    h.spawn_agent();
    let mut d = h.director().await;
    d.wait_ready().await;

    let source = tgz(&[(
        "packaging",
        "echo from-sensitive > \"$BOSH_INSTALL_TARGET/out\"\n",
        0o644,
    )]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&source);
    // Line-wrapped base64, as Ruby's Base64.encode64 produces.
    let wrapped: String = b64
        .as_bytes()
        .chunks(60)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let ok = d
        .run_task(
            "upload_blob",
            json!([{"blob_id": "tmpl-1", "checksum": sha256_digest(&source), "payload": wrapped}]),
        )
        .await;
    assert_eq!(ok, json!({"value": "tmpl-1"}));
    assert_eq!(
        std::fs::read(h.base.join("data/sensitive_blobs/tmpl-1")).unwrap(),
        source
    );
    // The blob is served from the agent before the blobstore (which does not have it).
    assert!(!h.blobs.join("tmpl-1").exists());
    let compiled = d
        .run_task(
            "compile_package",
            json!(["tmpl-1", sha1_hex(&source), "p", "1", {}]),
        )
        .await;
    assert!(
        compiled["value"]["result"]["blobstore_id"].is_string(),
        "{compiled}"
    );

    let bad = d
        .run_task(
            "upload_blob",
            json!([{"Blob_ID": "tmpl-2", "checksum": sha1_hex(b"other"), "payload": b64}]),
        )
        .await;
    let msg = bad["exception"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("Payload corrupted"), "{bad}");
    assert!(!h.base.join("data/sensitive_blobs/tmpl-2").exists());
    let garbage = d
        .run_task(
            "upload_blob",
            json!([{"blob_id": "tmpl-3", "checksum": sha1_hex(b""), "payload": "!!!"}]),
        )
        .await;
    assert!(
        garbage["exception"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Decoding payload"),
        "{garbage}"
    );
}
