//! Shared fixtures: a sim CPI root in a temp dir with a shell "agent", and the lifecycle
//! run against any `Cpi` backed by that root.
#![allow(dead_code)]

use bosh_cpi::sim::{SimAgentConfig, SimCpi, SimCpiConfig};
use bosh_cpi::{Cpi, CpiError};
use bosh_cpi_protocol::CpiErrorKind;
use bosh_cpi_protocol::methods::*;
use bosh_types::ids::{AgentId, VmCid};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct SimEnv {
    pub dir: tempfile::TempDir,
    pub config: SimCpiConfig,
    pub config_path: PathBuf,
    pub stemcell_image: PathBuf,
}

pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The "agent": records its arguments, starts a child in its group, and waits.
const AGENT_SCRIPT: &str = r#"echo "$@" > ./marker
sleep 600 &
echo $! > ./sleeper.pid
wait"#;

pub fn sim_env() -> SimEnv {
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("fake-agent.sh");
    std::fs::write(&agent, AGENT_SCRIPT).unwrap();
    let stemcell_dir = dir.path().join("stemcell");
    std::fs::create_dir_all(&stemcell_dir).unwrap();
    std::fs::write(stemcell_dir.join("image"), b"").unwrap();
    std::fs::write(stemcell_dir.join("stemcell.MF"), b"name: sim\n").unwrap();
    let config = SimCpiConfig {
        root_dir: dir.path().join("root"),
        agent: SimAgentConfig {
            // Through /bin/sh so the script itself need not be executable.
            command: vec!["/bin/sh".into(), agent.to_string_lossy().into_owned()],
            mbus: "nats://127.0.0.1:4222".into(),
            ntp: vec![],
            blobstore: Some(json!({"provider": "local", "options": {"blobstore_path": "/tmp/b"}})),
            platform: "dummy".into(),
            job_supervisor: "dummy-nats".into(),
        },
        stemcell_formats: vec!["warden-tar".into()],
    };
    let config_path = dir.path().join("cpi.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    SimEnv {
        dir,
        config,
        config_path,
        stemcell_image: stemcell_dir.join("image"),
    }
}

/// A `bin/cpi`-style wrapper running the real `bosh-sim-cpi` binary.
pub fn sim_wrapper(env: &SimEnv) -> PathBuf {
    let path = env.dir.path().join("cpi");
    write_script(
        &path,
        &format!(
            "exec '{}' -configPath '{}'",
            env!("CARGO_BIN_EXE_bosh-sim-cpi"),
            env.config_path.display()
        ),
    );
    path
}

/// Gone or a zombie.
pub fn pid_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => {
            let rest = &s[s.rfind(')').unwrap() + 1..];
            matches!(rest.split_whitespace().next(), Some("Z" | "X"))
        }
    }
}

/// A pid file's pid, once it has been completely written.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kind(e: &CpiError) -> Option<CpiErrorKind> {
    e.kind()
}

/// Every method of the sim CPI, checking effects on the shared state directory.
pub async fn exercise_every_method(cpi: &dyn Cpi, env: &SimEnv) {
    let sim = SimCpi::new(env.config.clone()).unwrap();

    let info = cpi.info().await.unwrap();
    assert_eq!(info.api_version, Some(2));
    assert_eq!(info.stemcell_formats, ["warden-tar"]);

    // Stemcells.
    let missing = cpi
        .create_stemcell(CreateStemcellArgs {
            image_path: "/nonexistent/image".into(),
            cloud_properties: Default::default(),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(kind(&missing), Some(CpiErrorKind::CloudError));
    let stemcell = cpi
        .create_stemcell(CreateStemcellArgs {
            image_path: env.stemcell_image.to_string_lossy().into_owned(),
            cloud_properties: json!({"name": "sim"}).as_object().unwrap().clone(),
            options: None,
        })
        .await
        .unwrap();

    // VM.
    let agent_id = AgentId::new_v4();
    let networks: Networks = serde_json::from_value(json!({"default": {
        "type": "manual", "ip": "10.0.0.5", "netmask": "255.255.255.0",
        "gateway": "10.0.0.1", "default": ["dns", "gateway"], "cloud_properties": {"x": 1}}}))
    .unwrap();
    let vm_env = json!({"bosh": {"group": "g", "mbus": {"cert": {"ca": "CA"}}}});
    let created = cpi
        .create_vm(CreateVmArgs {
            agent_id,
            stemcell_cid: stemcell.clone(),
            cloud_properties: Default::default(),
            networks,
            disk_cids: Default::default(),
            env: vm_env.as_object().unwrap().clone(),
        })
        .await
        .unwrap();
    let vm = created.vm_cid.clone();
    assert_eq!(created.networks["default"]["ip"], "10.0.0.5");

    let settings: Value =
        serde_json::from_slice(&std::fs::read(sim.vm_settings_path(&vm)).unwrap()).unwrap();
    assert_eq!(settings["agent_id"], agent_id.to_string());
    assert_eq!(
        settings["vm"],
        json!({"name": vm.as_str(), "id": vm.as_str()})
    );
    assert_eq!(settings["mbus"], "nats://127.0.0.1:4222");
    assert_eq!(settings["networks"]["default"]["ip"], "10.0.0.5");
    assert_eq!(settings["networks"]["default"]["preconfigured"], true);
    assert_eq!(settings["disks"]["persistent"], json!({}));
    assert_eq!(settings["env"], vm_env);
    assert_eq!(settings["blobstore"]["provider"], "local");

    let process = sim.vm_agent_process(&vm).expect("agent process recorded");
    assert!(process.is_alive());
    // Until the child has exec'd, /proc shows the parent's command line (or nothing).
    wait_for("agent exec", || {
        process.cmdline().is_some_and(|c| c.contains(vm.as_str()))
    });
    let cmdline = process.cmdline().unwrap();
    assert!(cmdline.contains("-P dummy -M dummy-nats -C"), "{cmdline}");
    let vm_dir = sim.vm_dir(&vm);
    // `echo $! > sleeper.pid` creates the file before it writes the pid.
    wait_for("agent marker", || {
        read_pid(&vm_dir.join("sleeper.pid")).is_some()
    });
    let marker = std::fs::read_to_string(vm_dir.join("marker")).unwrap();
    assert!(
        marker.contains(&format!("-b {}", vm_dir.display())),
        "{marker}"
    );
    let sleeper: u32 = std::fs::read_to_string(vm_dir.join("sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    assert!(cpi.has_vm(&vm).await.unwrap());
    let unknown: VmCid = "vm-unknown".parse().unwrap();
    assert!(!cpi.has_vm(&unknown).await.unwrap());

    let metadata: Metadata = [("deployment".to_owned(), "d".to_owned())].into();
    cpi.set_vm_metadata(&vm, &metadata).await.unwrap();
    let record: Value =
        serde_json::from_slice(&std::fs::read(vm_dir.join("vm.json")).unwrap()).unwrap();
    assert_eq!(record["metadata"]["deployment"], "d");
    let e = cpi.set_vm_metadata(&unknown, &metadata).await.unwrap_err();
    assert_eq!(kind(&e), Some(CpiErrorKind::VmNotFound));

    let cp = cpi
        .calculate_vm_cloud_properties(&VmResources {
            ram: 1024,
            cpu: 2,
            ephemeral_disk_size: 10,
        })
        .await
        .unwrap();
    assert_eq!(cp["ram"], 1024);

    // Disks.
    let disk = cpi
        .create_disk(CreateDiskArgs {
            size_mib: 1024,
            cloud_properties: Default::default(),
            vm_cid: Some(vm.clone()),
        })
        .await
        .unwrap();
    assert!(cpi.has_disk(&disk).await.unwrap());
    let hint = cpi.attach_disk(&vm, &disk).await.unwrap();
    let DiskHint::Path(hint_path) = &hint else {
        panic!("expected a path hint: {hint:?}")
    };
    assert!(Path::new(hint_path).is_dir());
    let settings: Value =
        serde_json::from_slice(&std::fs::read(sim.vm_settings_path(&vm)).unwrap()).unwrap();
    assert_eq!(
        settings["disks"]["persistent"][disk.as_str()],
        json!(hint_path)
    );
    assert_eq!(cpi.get_disks(&vm).await.unwrap(), vec![disk.clone()]);
    cpi.set_disk_metadata(&disk, &metadata).await.unwrap();
    cpi.resize_disk(&disk, 2048).await.unwrap();
    let e = cpi.resize_disk(&disk, 10).await.unwrap_err();
    assert_eq!(kind(&e), Some(CpiErrorKind::NotSupported));
    let updated = cpi
        .update_disk(UpdateDiskArgs {
            disk_cid: disk.clone(),
            new_size_mib: 4096,
            cloud_properties: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(updated, None);
    let snap = cpi.snapshot_disk(&disk, &metadata).await.unwrap();
    assert!(sim.snapshot_exists(&snap));
    cpi.delete_snapshot(&snap).await.unwrap();
    assert!(!sim.snapshot_exists(&snap));

    let e = cpi.delete_disk(&disk).await.unwrap_err();
    assert_eq!(
        kind(&e),
        Some(CpiErrorKind::CloudError),
        "attached disks are not deleted"
    );
    cpi.detach_disk(&vm, &disk).await.unwrap();
    let e = cpi.detach_disk(&vm, &disk).await.unwrap_err();
    assert_eq!(kind(&e), Some(CpiErrorKind::DiskNotAttached));
    assert!(cpi.get_disks(&vm).await.unwrap().is_empty());
    let settings: Value =
        serde_json::from_slice(&std::fs::read(sim.vm_settings_path(&vm)).unwrap()).unwrap();
    assert_eq!(settings["disks"]["persistent"], json!({}));

    // Reboot restarts the agent.
    cpi.reboot_vm(&vm).await.unwrap();
    let rebooted = sim.vm_agent_process(&vm).unwrap();
    assert_ne!(rebooted, process);
    assert!(rebooted.is_alive());
    wait_for("old agent gone", || {
        pid_dead(process.pid) && pid_dead(sleeper)
    });
    wait_for("new sleeper", || {
        std::fs::read_to_string(vm_dir.join("sleeper.pid"))
            .is_ok_and(|s| s.trim().parse::<u32>().is_ok_and(|p| p != sleeper))
    });
    let sleeper: u32 = std::fs::read_to_string(vm_dir.join("sleeper.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // Delete.
    cpi.delete_vm(&vm).await.unwrap();
    assert!(!vm_dir.exists());
    wait_for("agent and its children gone", || {
        pid_dead(rebooted.pid) && pid_dead(sleeper)
    });
    assert!(!cpi.has_vm(&vm).await.unwrap());
    let e = cpi.delete_vm(&vm).await.unwrap_err();
    assert_eq!(kind(&e), Some(CpiErrorKind::VmNotFound));

    cpi.delete_disk(&disk).await.unwrap();
    assert!(!cpi.has_disk(&disk).await.unwrap());
    let e = cpi.delete_disk(&disk).await.unwrap_err();
    assert_eq!(kind(&e), Some(CpiErrorKind::DiskNotFound));
    cpi.delete_stemcell(&stemcell).await.unwrap();
}
