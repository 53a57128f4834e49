//! `bosh-docker-cpi` as an external CPI: driven through `ExternalCpi`, one process per call.

mod docker_support;

use bosh_cpi::{Cpi, ExternalCpi, ExternalCpiConfig};
use bosh_cpi_protocol::methods::*;
use bosh_cpi_protocol::{CpiErrorKind, CpiResponse};
use bosh_types::ids::VmCid;
use docker_support::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_bosh-docker-cpi");

#[test]
fn docker_binary_answers_bad_config_with_a_cpi_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cpi.json");
    std::fs::write(
        &cfg,
        br#"{"docker": {"host": "unix:///x"}, "agent": {"mbus": ""}}"#,
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["-configPath", cfg.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary answers a bad config before reading stdin: a broken pipe here is expected.
    if let Err(e) = child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"method":"info","arguments":[],"context":{}}"#)
    {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    let r = CpiResponse::from_slice_strict(&out.stdout).unwrap();
    let e = r.error.expect("an error");
    assert_eq!(e.error_type, "Bosh::Clouds::CpiError");
    assert!(e.message.contains("Mbus"), "{}", e.message);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn docker_binary_round_trips_through_external_cpi() {
    let Some(docker) = engine("docker_binary_round_trips_through_external_cpi").await else {
        return;
    };
    let prefix = unique_prefix();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cpi.json");
    std::fs::write(&cfg, serde_json::to_vec(&cpi_config(&prefix)).unwrap()).unwrap();
    // Directors run a CPI with no arguments; the job's wrapper adds the config flag.
    let wrapper = dir.path().join("cpi");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{BIN}' -configPath '{}'\n", cfg.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = ExternalCpiConfig::new(&wrapper, "director-uuid");
    config.timeout = Duration::from_secs(120);
    let cpi = ExternalCpi::new(config);

    let info = cpi.info().await.unwrap();
    assert_eq!(info.api_version, Some(2));
    assert!(info.stemcell_formats.contains(&"docker-light".to_owned()));

    let image = dir.path().join("image");
    write_test_image(&image);
    let stemcell = cpi
        .create_stemcell(CreateStemcellArgs {
            image_path: image.to_string_lossy().into_owned(),
            cloud_properties: CloudProperties::new(),
            options: None,
        })
        .await
        .unwrap();
    assert!(docker.inspect_image(stemcell.as_str()).await.is_ok());

    let ghost: VmCid = format!("{prefix}c-ghost").parse().unwrap();
    assert!(!cpi.has_vm(&ghost).await.unwrap());
    let e = cpi.delete_vm(&ghost).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmNotFound), "{e}");

    let disk = cpi
        .create_disk(CreateDiskArgs {
            size_mib: 10,
            cloud_properties: CloudProperties::new(),
            vm_cid: None,
        })
        .await
        .unwrap();
    assert!(cpi.has_disk(&disk).await.unwrap());
    cpi.delete_disk(&disk).await.unwrap();
    assert!(!cpi.has_disk(&disk).await.unwrap());
    cpi.delete_stemcell(&stemcell).await.unwrap();

    let left = leftovers(&docker, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}
