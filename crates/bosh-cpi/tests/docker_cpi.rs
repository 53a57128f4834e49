//! The docker CPI against this machine's Docker engine: stemcell import, a VM with a static
//! IP and its settings file, a persistent disk that survives detach, delete and re-attach
//! to a new VM, and nothing left behind.

mod docker_support;

use bollard::query_parameters::InspectContainerOptions;
use bosh_cpi::Cpi;
use bosh_cpi::docker::{AGENT_ENV_PATH, DockerCpi};
use bosh_cpi_protocol::CpiErrorKind;
use bosh_cpi_protocol::methods::*;
use bosh_types::ids::{AgentId, DiskCid, StemcellCid, VmCid};
use docker_support::*;
use serde_json::{Value, json};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(240);

struct Net {
    name: String,
    ip: String,
    networks: Networks,
}

fn manual_network(prefix: &str) -> Net {
    let (ip, gateway, _) = random_subnet();
    let name = format!("{prefix}net");
    let networks: Networks = serde_json::from_value(json!({
        "default": {"type": "manual", "ip": ip, "netmask": "255.255.255.0", "gateway": gateway,
                    "dns": ["8.8.8.8"], "default": ["dns", "gateway"],
                    "cloud_properties": {"name": name}}
    }))
    .unwrap();
    Net { name, ip, networks }
}

fn vm_args(stemcell: &StemcellCid, agent: AgentId, networks: &Networks) -> CreateVmArgs {
    CreateVmArgs {
        agent_id: agent,
        stemcell_cid: stemcell.clone(),
        cloud_properties: CloudProperties::new(),
        networks: networks.clone(),
        disk_cids: DiskCids::default(),
        env: serde_json::from_value(json!({"bosh": {"password": "secret"}})).unwrap(),
    }
}

async fn settings(docker: &bollard::Docker, vm: &VmCid) -> Value {
    let (code, text) = exec(docker, vm.as_str(), &["cat", AGENT_ENV_PATH]).await;
    assert_eq!(code, 0, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn container_ip(docker: &bollard::Docker, vm: &VmCid, network: &str) -> (bool, String) {
    let c = docker
        .inspect_container(vm.as_str(), None::<InspectContainerOptions>)
        .await
        .unwrap();
    let running = c.state.and_then(|s| s.running).unwrap_or(false);
    let ip = c
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
        .unwrap_or_default();
    (running, ip)
}

#[tokio::test]
async fn docker_cpi_vm_disk_lifecycle() {
    let Some(docker) = engine("docker_cpi_vm_disk_lifecycle").await else {
        return;
    };
    let prefix = unique_prefix();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    tokio::time::timeout(LIMIT, lifecycle(&docker, &prefix))
        .await
        .expect("the lifecycle finishes in time");
    let left = leftovers(&docker, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

async fn lifecycle(docker: &bollard::Docker, prefix: &str) {
    let cpi = DockerCpi::new(cpi_config(prefix)).unwrap();
    let info = cpi.info().await.unwrap();
    assert_eq!(info.api_version, Some(2));
    assert_eq!(
        info.stemcell_formats,
        ["warden-tar", "general-tar", "docker-light"]
    );

    let dir = tempfile::tempdir().unwrap();
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
    assert!(
        stemcell
            .as_str()
            .starts_with(&format!("bosh.io/stemcells:{prefix}img-")),
        "{stemcell}"
    );

    let net = manual_network(prefix);
    let agent = AgentId::new_v4();
    let created = cpi
        .create_vm(vm_args(&stemcell, agent, &net.networks))
        .await
        .unwrap();
    let vm = created.vm_cid.clone();
    assert!(vm.as_str().starts_with(&format!("{prefix}c-")), "{vm}");
    assert_eq!(
        created.networks,
        serde_json::to_value(&net.networks).unwrap(),
        "networks are echoed unchanged"
    );
    assert!(cpi.has_vm(&vm).await.unwrap());
    assert_eq!(
        container_ip(docker, &vm, &net.name).await,
        (true, net.ip.clone())
    );
    let s = settings(docker, &vm).await;
    assert_eq!(s["agent_id"], agent.to_string());
    assert_eq!(s["vm"]["name"], vm.to_string());
    assert_eq!(s["mbus"], "nats://nats:secret@127.0.0.1:4222");
    assert_eq!(s["networks"]["default"]["ip"], net.ip);
    assert_eq!(s["networks"]["default"]["preconfigured"], true);
    assert_eq!(s["disks"]["system"], "");
    assert_eq!(s["env"]["bosh"]["password"], "secret");
    let (_, resolv) = exec(docker, vm.as_str(), &["cat", "/etc/resolv.conf"]).await;
    assert_eq!(resolv.trim(), "nameserver 8.8.8.8");
    // Something the agent would keep on the root filesystem.
    let (code, _) = exec(
        docker,
        vm.as_str(),
        &["sh", "-c", "echo applied > /var/vcap/bosh/spec.json"],
    )
    .await;
    assert_eq!(code, 0);
    cpi.set_vm_metadata(&vm, &Metadata::from([("director".into(), "d".into())]))
        .await
        .unwrap();
    cpi.reboot_vm(&vm).await.unwrap();
    assert_eq!(
        container_ip(docker, &vm, &net.name).await,
        (true, net.ip.clone())
    );

    let disk = cpi
        .create_disk(CreateDiskArgs {
            size_mib: 1024,
            cloud_properties: CloudProperties::new(),
            vm_cid: Some(vm.clone()),
        })
        .await
        .unwrap();
    assert!(
        disk.as_str().starts_with(&format!("{prefix}vol-")),
        "{disk}"
    );
    assert!(cpi.has_disk(&disk).await.unwrap());
    cpi.set_disk_metadata(&disk, &Metadata::new())
        .await
        .unwrap();

    let hint = cpi.attach_disk(&vm, &disk).await.unwrap();
    let mount = format!("/warden-cpi-dev/{disk}");
    assert_eq!(hint, DiskHint::Path(mount.clone()));
    assert_eq!(cpi.get_disks(&vm).await.unwrap(), vec![disk.clone()]);
    assert_eq!(
        container_ip(docker, &vm, &net.name).await,
        (true, net.ip.clone()),
        "the recreated container keeps its address"
    );
    let s = settings(docker, &vm).await;
    assert_eq!(s["disks"]["persistent"][disk.as_str()], mount);
    assert_eq!(s["agent_id"], agent.to_string());
    let (_, spec) = exec(docker, vm.as_str(), &["cat", "/var/vcap/bosh/spec.json"]).await;
    assert_eq!(
        spec.trim(),
        "applied",
        "the root filesystem survives attach"
    );
    let (_, boots) = exec(docker, vm.as_str(), &["cat", "/var/vcap/data/boots"]).await;
    assert_eq!(
        boots.lines().count(),
        3,
        "the ephemeral volume survives (create, reboot, attach): {boots}"
    );
    // Attaching again is a no-op.
    assert_eq!(cpi.attach_disk(&vm, &disk).await.unwrap(), hint);

    let (code, out) = exec(
        docker,
        vm.as_str(),
        &["sh", "-c", &format!("echo persisted > {mount}/data")],
    )
    .await;
    assert_eq!(code, 0, "{out}");

    cpi.detach_disk(&vm, &disk).await.unwrap();
    assert!(cpi.get_disks(&vm).await.unwrap().is_empty());
    let s = settings(docker, &vm).await;
    assert_eq!(s["disks"]["persistent"], json!({}));
    // The empty mount point stays in the committed root filesystem; the data does not.
    let (code, _) = exec(
        docker,
        vm.as_str(),
        &["test", "-e", &format!("{mount}/data")],
    )
    .await;
    assert_ne!(code, 0, "the disk is unbound after detach");

    cpi.delete_vm(&vm).await.unwrap();
    assert!(!cpi.has_vm(&vm).await.unwrap());
    let e = cpi.delete_vm(&vm).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmNotFound), "{e}");
    let e = cpi.attach_disk(&vm, &disk).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmNotFound), "{e}");

    // A new VM with the same address gets the disk and its data back.
    let vm2 = cpi
        .create_vm(vm_args(&stemcell, AgentId::new_v4(), &net.networks))
        .await
        .unwrap()
        .vm_cid;
    assert_eq!(
        container_ip(docker, &vm2, &net.name).await,
        (true, net.ip.clone())
    );
    cpi.attach_disk(&vm2, &disk).await.unwrap();
    let (code, data) = exec(docker, vm2.as_str(), &["cat", &format!("{mount}/data")]).await;
    assert_eq!((code, data.trim()), (0, "persisted"));

    let e = cpi.delete_disk(&disk).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::CloudError), "in use: {e}");
    cpi.delete_vm(&vm2).await.unwrap();
    cpi.delete_disk(&disk).await.unwrap();
    assert!(!cpi.has_disk(&disk).await.unwrap());
    let e = cpi.delete_disk(&disk).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::DiskNotFound), "{e}");
    cpi.delete_stemcell(&stemcell).await.unwrap();
    cpi.delete_stemcell(&stemcell).await.unwrap();
    // Networks outlive VMs (the real CPI never deletes them); the test removes its own.
    docker.remove_network(&net.name).await.unwrap();
}

#[tokio::test]
async fn docker_cpi_refusals_leave_nothing_behind() {
    let Some(docker) = engine("docker_cpi_refusals_leave_nothing_behind").await else {
        return;
    };
    let prefix = unique_prefix();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let cpi = DockerCpi::new(cpi_config(&prefix)).unwrap();
    let net = manual_network(&prefix);
    let missing: StemcellCid = format!("bosh.io/stemcells:{prefix}img-missing")
        .parse()
        .unwrap();
    let e = cpi
        .create_vm(vm_args(&missing, AgentId::new_v4(), &net.networks))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmCreationFailed), "{e}");

    let e = cpi
        .create_stemcell(CreateStemcellArgs {
            image_path: "/nonexistent/image".into(),
            cloud_properties: CloudProperties::new(),
            options: None,
        })
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("Importing stemcell from '/nonexistent/image'"),
        "{e}"
    );

    // A light stemcell names an image already on the engine; deleting it keeps the image.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    write_test_image(&image);
    let full = cpi
        .create_stemcell(CreateStemcellArgs {
            image_path: dir.path().to_string_lossy().into_owned(),
            cloud_properties: CloudProperties::new(),
            options: None,
        })
        .await
        .unwrap();
    std::fs::write(dir.path().join("light-image"), b"").unwrap();
    let light = cpi
        .create_stemcell(CreateStemcellArgs {
            image_path: dir
                .path()
                .join("light-image")
                .to_string_lossy()
                .into_owned(),
            cloud_properties: serde_json::from_value(json!({"image_reference": full.as_str()}))
                .unwrap(),
            options: None,
        })
        .await
        .unwrap();
    assert_ne!(light, full);
    cpi.delete_stemcell(&light).await.unwrap();
    assert!(docker.inspect_image(full.as_str()).await.is_ok());
    assert!(docker.inspect_image(light.as_str()).await.is_err());

    // No network at all, and a dynamic network without a name, are refused before any
    // container exists.
    let e = cpi
        .create_vm(vm_args(&full, AgentId::new_v4(), &Networks::new()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmCreationFailed), "{e}");
    let dynamic: Networks = serde_json::from_value(json!({"d": {"type": "dynamic"}})).unwrap();
    let e = cpi
        .create_vm(vm_args(&full, AgentId::new_v4(), &dynamic))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cloud_properties.name"), "{e}");

    let ghost: VmCid = format!("{prefix}c-ghost").parse().unwrap();
    assert!(!cpi.has_vm(&ghost).await.unwrap());
    let e = cpi.reboot_vm(&ghost).await.unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::VmNotFound), "{e}");
    let ghost_disk: DiskCid = format!("{prefix}vol-ghost").parse().unwrap();
    assert!(!cpi.has_disk(&ghost_disk).await.unwrap());
    let e = cpi
        .set_disk_metadata(&ghost_disk, &Metadata::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(CpiErrorKind::DiskNotFound), "{e}");
    assert_eq!(
        cpi.snapshot_disk(&ghost_disk, &Metadata::new())
            .await
            .unwrap(),
        SnapshotCid(String::new())
    );

    cpi.delete_stemcell(&full).await.unwrap();
    let left = leftovers(&docker, &prefix).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}
