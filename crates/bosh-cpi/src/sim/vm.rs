//! VMs: a directory that is the agent's base dir, a settings file the agent reads, and a
//! detached agent process.

use super::process::{self, AgentProcess};
use super::simulated_agent::SimulatedAgentSpec;
use super::store::{io_error, read_json, write_json};
use super::{SimCpi, check_cid, new_cid, stemcell};
use crate::error::CpiError;
use bosh_cpi_protocol::agent_env::{AgentEnv, AgentEnvDisks, AgentEnvVm};
use bosh_cpi_protocol::methods::{
    CloudProperties, CreateVmArgs, CreateVmResult, Metadata, NetworkType, Networks,
};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::{AgentId, DiskCid, StemcellCid, VmCid};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `vms/<cid>/vm.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VmRecord {
    pub agent_id: AgentId,
    pub stemcell_cid: StemcellCid,
    pub cloud_properties: CloudProperties,
    #[serde(default)]
    pub metadata: Metadata,
    /// Attached persistent disks, in attach order.
    #[serde(default)]
    pub disks: Vec<DiskCid>,
    pub process: Option<AgentProcess>,
    /// The agent is a simulated one in the CPI's process (see `simulated_agent`).
    #[serde(default)]
    pub simulated: bool,
}

fn record_path(sim: &SimCpi, cid: &VmCid) -> std::path::PathBuf {
    sim.vm_dir(cid).join("vm.json")
}

fn not_found(method: Method, cid: &VmCid) -> CpiError {
    CpiError::cloud(
        CpiErrorKind::VmNotFound,
        method,
        format!("VM '{cid}' not found"),
    )
}

/// The VM's record, or `VMNotFound`.
pub(super) fn read_record_for(
    sim: &SimCpi,
    method: Method,
    cid: &VmCid,
) -> Result<VmRecord, CpiError> {
    check_cid(method, cid.as_str())?;
    let path = record_path(sim, cid);
    if !path.is_file() {
        return Err(not_found(method, cid));
    }
    read_json(method, &path)
}

pub(super) fn read_record(sim: &SimCpi, cid: &VmCid) -> Result<VmRecord, CpiError> {
    read_record_for(sim, Method::HasVm, cid)
}

pub(super) fn write_record(
    sim: &SimCpi,
    method: Method,
    cid: &VmCid,
    r: &VmRecord,
) -> Result<(), CpiError> {
    write_json(method, &record_path(sim, cid), r)
}

pub(super) fn read_settings(
    sim: &SimCpi,
    method: Method,
    cid: &VmCid,
) -> Result<AgentEnv, CpiError> {
    read_json(method, &sim.vm_settings_path(cid))
}

pub(super) fn write_settings(
    sim: &SimCpi,
    method: Method,
    cid: &VmCid,
    env: &AgentEnv,
) -> Result<(), CpiError> {
    write_json(method, &sim.vm_settings_path(cid), env)
}

fn start_agent(sim: &SimCpi, method: Method, cid: &VmCid) -> Result<AgentProcess, CpiError> {
    let root = &sim.config.root_dir;
    let log_path = root.join("logs").join(format!("agent.{cid}.log"));
    process::spawn(
        &sim.config.agent,
        &sim.vm_dir(cid),
        &log_path,
        &root.join("tmp"),
    )
    .map_err(|e| {
        CpiError::cloud(
            CpiErrorKind::VmCreationFailed,
            method,
            format!(
                "Starting agent '{}' for VM '{cid}': {e}",
                sim.config.agent.command[0]
            ),
        )
    })
}

pub(super) async fn create(sim: &SimCpi, args: CreateVmArgs) -> Result<CreateVmResult, CpiError> {
    let m = Method::CreateVm;
    if !sim.options.create_vm_delay.is_zero() {
        tokio::time::sleep(sim.options.create_vm_delay).await;
    }
    if !stemcell::exists(sim, &args.stemcell_cid) {
        return Err(CpiError::cloud(
            CpiErrorKind::VmCreationFailed,
            m,
            format!("Stemcell '{}' not found", args.stemcell_cid),
        ));
    }
    let cid = VmCid::new(new_cid("vm")).expect("generated cids are not empty");
    let dir = sim.vm_dir(&cid);
    match prepare_and_start(sim, &cid, &args) {
        Ok(result) => {
            tracing::info!(%cid, agent_id = %args.agent_id, "vm created");
            Ok(result)
        }
        Err(e) => {
            // Leave nothing behind; the director has no cid to delete.
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn prepare_and_start(
    sim: &SimCpi,
    cid: &VmCid,
    args: &CreateVmArgs,
) -> Result<CreateVmResult, CpiError> {
    let m = Method::CreateVm;
    let dir = sim.vm_dir(cid);
    if sim.options.simulated_agents {
        return simulated_create(sim, cid, args);
    }
    for sub in ["bosh", "root_dir/etc/logrotate.d", "data", "store"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| io_error(m, "Creating", &p, e))?;
    }
    let settings_path = sim.vm_settings_path(cid);
    // The real agent's file settings source; our agent reads the same config.
    let agent_json = json!({"Infrastructure": {"Settings": {"Sources": [
        {"Type": "File", "SettingsPath": settings_path}
    ]}}});
    write_json(m, &dir.join("agent.json"), &agent_json)?;

    let mut networks: Networks = args.networks.clone();
    for net in networks.values_mut() {
        // The host's interfaces are not the agent's to configure.
        net.preconfigured = Some(true);
    }
    if let Some(dynamic) = networks
        .values()
        .find(|n| n.network_type == Some(NetworkType::Dynamic))
    {
        // The dummy platform reads a dynamic network's address from this file.
        let ip = dynamic.ip.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
        write_json(
            m,
            &dir.join("bosh/dummy-default-network-settings.json"),
            &json!({"ip": ip}),
        )?;
    }
    let settings = AgentEnv {
        agent_id: args.agent_id,
        vm: AgentEnvVm::for_cid(cid),
        mbus: sim.config.agent.mbus.clone(),
        ntp: sim.config.agent.ntp.clone(),
        blobstore: sim.config.agent.blobstore.clone(),
        networks: networks.clone(),
        disks: AgentEnvDisks::default(),
        env: args.env.clone(),
    };
    write_settings(sim, m, cid, &settings)?;
    let mut record = VmRecord {
        agent_id: args.agent_id,
        stemcell_cid: args.stemcell_cid.clone(),
        cloud_properties: args.cloud_properties.clone(),
        metadata: Metadata::new(),
        disks: Vec::new(),
        process: None,
        simulated: false,
    };
    write_record(sim, m, cid, &record)?;
    let process = start_agent(sim, m, cid)?;
    record.process = Some(process);
    if let Err(e) = write_record(sim, m, cid, &record) {
        kill_now(process);
        return Err(e);
    }
    let networks = serde_json::to_value(&args.networks).expect("networks serialize");
    Ok(CreateVmResult {
        vm_cid: cid.clone(),
        networks,
    })
}

/// A VM whose agent is simulated: only the sim state files, then the agent task boots.
fn simulated_create(
    sim: &SimCpi,
    cid: &VmCid,
    args: &CreateVmArgs,
) -> Result<CreateVmResult, CpiError> {
    let m = Method::CreateVm;
    let failed = |message: String| CpiError::cloud(CpiErrorKind::VmCreationFailed, m, message);
    let bosh = sim.vm_dir(cid).join("bosh");
    std::fs::create_dir_all(&bosh).map_err(|e| io_error(m, "Creating", &bosh, e))?;
    let settings = AgentEnv {
        agent_id: args.agent_id,
        vm: AgentEnvVm::for_cid(cid),
        mbus: sim.config.agent.mbus.clone(),
        ntp: sim.config.agent.ntp.clone(),
        blobstore: sim.config.agent.blobstore.clone(),
        networks: args.networks.clone(),
        disks: AgentEnvDisks::default(),
        env: args.env.clone(),
    };
    write_settings(sim, m, cid, &settings)?;
    let record = VmRecord {
        agent_id: args.agent_id,
        stemcell_cid: args.stemcell_cid.clone(),
        cloud_properties: args.cloud_properties.clone(),
        metadata: Metadata::new(),
        disks: Vec::new(),
        process: None,
        simulated: true,
    };
    write_record(sim, m, cid, &record)?;
    simulated_start(sim, cid, &settings).map_err(failed)?;
    let networks = serde_json::to_value(&args.networks).expect("networks serialize");
    Ok(CreateVmResult {
        vm_cid: cid.clone(),
        networks,
    })
}

fn simulated_start(sim: &SimCpi, cid: &VmCid, settings: &AgentEnv) -> Result<(), String> {
    let cert = SimulatedAgentSpec::cert_from_env(&settings.env).map_err(|e| e.to_string())?;
    sim.simulated
        .start(SimulatedAgentSpec {
            agent_id: settings.agent_id.to_string(),
            vm_cid: cid.to_string(),
            mbus_url: settings.mbus.clone(),
            cert,
            boot_delay: sim.options.agent_boot_delay,
        })
        .map_err(|e| format!("Starting the simulated agent of VM '{cid}': {e}"))
}

/// Kills a just-started agent without waiting (used only on a failed create).
fn kill_now(process: AgentProcess) {
    if let Ok(pgid) = i32::try_from(process.pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub(super) async fn delete(sim: &SimCpi, cid: &VmCid) -> Result<(), CpiError> {
    let m = Method::DeleteVm;
    let record = read_record_for(sim, m, cid)?;
    if record.simulated {
        sim.simulated.stop(cid.as_str());
        for disk in &record.disks {
            super::disk::forget_attachment(sim, disk, cid);
        }
        let dir = sim.vm_dir(cid);
        std::fs::remove_dir_all(&dir).map_err(|e| io_error(m, "Removing", &dir, e))?;
        tracing::info!(%cid, "vm deleted");
        return Ok(());
    }
    if let Some(process) = record.process
        && !process.terminate().await
    {
        return Err(CpiError::cloud(
            CpiErrorKind::CloudError,
            m,
            format!("Agent process {} of VM '{cid}' did not exit", process.pid),
        ));
    }
    let dir = sim.vm_dir(cid);
    let jobs = process::kill_vm_processes(&dir);
    if jobs > 0 {
        tracing::info!(%cid, jobs, "killed the VM's job processes");
    }
    for disk in &record.disks {
        super::disk::forget_attachment(sim, disk, cid);
    }
    std::fs::remove_dir_all(&dir).map_err(|e| io_error(m, "Removing", &dir, e))?;
    tracing::info!(%cid, "vm deleted");
    Ok(())
}

pub(super) fn has(sim: &SimCpi, cid: &VmCid) -> Result<bool, CpiError> {
    match read_record_for(sim, Method::HasVm, cid) {
        Ok(r) if r.simulated => Ok(sim.simulated.is_running(cid.as_str())),
        Ok(r) => Ok(r.process.is_some_and(|p| p.is_alive())),
        Err(e) if e.kind() == Some(CpiErrorKind::VmNotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) async fn reboot(sim: &SimCpi, cid: &VmCid) -> Result<(), CpiError> {
    let m = Method::RebootVm;
    let mut record = read_record_for(sim, m, cid)?;
    if record.simulated {
        let settings = read_settings(sim, m, cid)?;
        return simulated_start(sim, cid, &settings)
            .map_err(|e| CpiError::cloud(CpiErrorKind::CloudError, m, e));
    }
    if let Some(process) = record.process.take() {
        process.terminate().await;
    }
    record.process = Some(start_agent(sim, m, cid)?);
    write_record(sim, m, cid, &record)
}

pub(super) fn set_metadata(sim: &SimCpi, cid: &VmCid, metadata: &Metadata) -> Result<(), CpiError> {
    let m = Method::SetVmMetadata;
    let mut record = read_record_for(sim, m, cid)?;
    record
        .metadata
        .extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    write_record(sim, m, cid, &record)
}

pub(super) fn disks(sim: &SimCpi, cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
    Ok(read_record_for(sim, Method::GetDisks, cid)?.disks)
}
