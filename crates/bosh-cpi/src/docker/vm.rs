//! VMs are privileged containers named by their cid. What a container was made from (image,
//! networks, attached disks, cloud properties) is kept in a label so that attach/detach can
//! rebuild it exactly: a container's mounts cannot change, so the container is stopped,
//! committed to `<cid>-snapshot` (its root filesystem survives, as in the real CPI), removed and
//! created again with the new binds. The ephemeral volume is kept throughout.

use super::files::{self, AGENT_ENV_PATH};
use super::network::{self, NetworkAttachment};
use super::{DockerCpi, LABEL_CPI, LABEL_CPI_VALUE, cloud_error, engine_error, is_not_found};
use crate::error::CpiError;
use bollard::Docker;
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, HostConfig,
    NetworkConnectRequest, NetworkingConfig, VolumeCreateOptions,
};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, InspectContainerOptions, KillContainerOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, RestartContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use bosh_cpi_protocol::agent_env::{AgentEnv, AgentEnvDisks, AgentEnvVm};
use bosh_cpi_protocol::methods::{CloudProperties, CreateVmArgs, CreateVmResult, Networks};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::{AgentId, DiskCid, StemcellCid, VmCid};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// Label holding the [`VmSpec`] as JSON.
const LABEL_SPEC: &str = "io.bosh-rs.docker-cpi.vm";
/// Where persistent disks are bound; the agent bind-mounts them at `/var/vcap/store`.
pub(super) const DISK_MOUNT_ROOT: &str = "/warden-cpi-dev";

/// What a container is built from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VmSpec {
    pub agent_id: AgentId,
    pub stemcell_cid: StemcellCid,
    pub networks: Vec<NetworkAttachment>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub cloud_properties: CloudProperties,
    /// Attached persistent disks, in attach order.
    #[serde(default)]
    pub disks: Vec<DiskCid>,
    /// Privileged as the real CPI, or (where the engine cannot grant every capability, e.g.
    /// inside another container) the capabilities the agent needs for its mounts.
    #[serde(default = "privileged_default")]
    pub privileged: bool,
}

fn privileged_default() -> bool {
    true
}

/// What an unprivileged VM gets: mounts (persistent disk bind mounts), network setup.
const CAPABILITIES: [&str; 2] = ["SYS_ADMIN", "NET_ADMIN"];

pub(super) fn ephemeral_volume(cid: &VmCid) -> String {
    format!("vol-eph-{cid}")
}

fn snapshot_image(cid: &VmCid) -> String {
    format!("{cid}-snapshot")
}

pub(super) fn disk_path(disk: &DiskCid) -> String {
    format!("{DISK_MOUNT_ROOT}/{disk}")
}

pub(super) fn not_found(method: Method, cid: &VmCid) -> CpiError {
    CpiError::cloud(
        CpiErrorKind::VmNotFound,
        method,
        format!("VM '{cid}' not found"),
    )
}

fn creation_failed(message: String) -> CpiError {
    CpiError::cloud(CpiErrorKind::VmCreationFailed, Method::CreateVm, message)
}

pub(super) async fn inspect(
    cpi: &DockerCpi,
    method: Method,
    cid: &VmCid,
) -> Result<ContainerInspectResponse, CpiError> {
    let docker = cpi.docker(method).await?;
    match docker
        .inspect_container(cid.as_str(), None::<InspectContainerOptions>)
        .await
    {
        Ok(c) => Ok(c),
        Err(e) if is_not_found(&e) => Err(not_found(method, cid)),
        Err(e) => Err(cloud_error(method, "Inspecting container", e)),
    }
}

pub(super) fn spec_of(
    method: Method,
    cid: &VmCid,
    container: &ContainerInspectResponse,
) -> Result<VmSpec, CpiError> {
    let text = container
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(LABEL_SPEC));
    let Some(text) = text else {
        return Err(CpiError::cloud(
            CpiErrorKind::CloudError,
            method,
            format!("Container '{cid}' was not created by this CPI (no '{LABEL_SPEC}' label)"),
        ));
    };
    serde_json::from_str(text).map_err(|e| {
        CpiError::cloud(
            CpiErrorKind::CloudError,
            method,
            format!("Container '{cid}' has an unreadable '{LABEL_SPEC}' label: {e}"),
        )
    })
}

/// Networks' DNS servers, in order, without repeats.
fn dns_servers(networks: &Networks) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for net in networks.values() {
        for server in net.dns.iter().flatten() {
            if !out.contains(server) {
                out.push(server.clone());
            }
        }
    }
    out
}

/// The container's command: hand `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname` back
/// to the image (the agent and BOSH DNS own them), reset the ephemeral `sys` dir, make the
/// store mount point, keep time sync away from the host clock, then become the stemcell's
/// runit entry point (which starts the agent) — the real docker CPI's sequence.
fn start_script(dns: &[String]) -> String {
    let mut s = String::new();
    if !dns.is_empty() {
        s.push_str("umount /etc/resolv.conf 2>/dev/null; ");
        s.push_str(": > /etc/resolv.conf; ");
        for server in dns {
            // DNS entries are addresses; anything else is dropped rather than quoted.
            if server
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
            {
                s.push_str(&format!("echo 'nameserver {server}' >> /etc/resolv.conf; "));
            }
        }
    }
    s.push_str(
        "umount /etc/hosts 2>/dev/null; umount /etc/hostname 2>/dev/null; \
         rm -rf /var/vcap/data/sys; mkdir -p /var/vcap/data/sys /var/vcap/store; \
         if [ -f /var/vcap/bosh/bin/sync-time ]; then \
         sed -i -e '/chronyc/d' /var/vcap/bosh/bin/sync-time; fi; \
         exec env -i /usr/sbin/runsvdir-start",
    );
    s
}

/// `port_bindings` / `portBindings` → `PortBindings`, so cloud properties can carry any
/// HostConfig field inline as in the real CPI (which decodes them case-insensitively).
fn pascal_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = true;
    for c in key.chars() {
        if c == '_' || c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Cloud-property keys the CPI interprets itself.
const OWN_KEYS: [&str; 1] = ["ports"];

fn host_config_from(props: &CloudProperties) -> Result<HostConfig, String> {
    let inline: serde_json::Map<String, Value> = props
        .iter()
        .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (pascal_case(k), v.clone()))
        .collect();
    serde_json::from_value(Value::Object(inline))
        .map_err(|e| format!("Invalid Docker host config in cloud_properties: {e}"))
}

fn ports_of(props: &CloudProperties) -> Vec<String> {
    match props.get("ports") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(format!("{n}/tcp")),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn container_body(
    cid: &VmCid,
    spec: &VmSpec,
    image: &str,
    local_engine: bool,
) -> Result<ContainerCreateBody, String> {
    let mut host = host_config_from(&spec.cloud_properties)?;
    let mut binds = host.binds.take().unwrap_or_default();
    binds.push(format!("{}:/var/vcap/data/", ephemeral_volume(cid)));
    // Kernel modules for jobs that load them; only when the engine shares this host.
    if local_engine && std::path::Path::new("/lib/modules").is_dir() {
        binds.push("/lib/modules:/usr/lib/modules".to_owned());
    }
    for disk in &spec.disks {
        binds.push(format!("{disk}:{}", disk_path(disk)));
    }
    host.binds = Some(binds);
    if spec.privileged {
        host.privileged = Some(true);
    } else {
        host.privileged = Some(false);
        let mut caps = host.cap_add.take().unwrap_or_default();
        caps.extend(CAPABILITIES.iter().map(|c| c.to_string()));
        host.cap_add = Some(caps);
        let mut opts = host.security_opt.take().unwrap_or_default();
        // The default profiles forbid mount(2), which the agent needs.
        opts.extend([
            "apparmor=unconfined".to_owned(),
            "seccomp=unconfined".to_owned(),
        ]);
        host.security_opt = Some(opts);
    }
    let ports = ports_of(&spec.cloud_properties);
    if !ports.is_empty() {
        host.publish_all_ports = Some(true);
    }
    let spec_json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let labels = HashMap::from([
        (LABEL_CPI.to_owned(), LABEL_CPI_VALUE.to_owned()),
        (LABEL_SPEC.to_owned(), spec_json),
    ]);
    // API < 1.44 accepts one endpoint at create; the others are connected afterwards.
    let networking = spec.networks.first().map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(n.docker_network.clone(), n.endpoint())])),
    });
    Ok(ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            start_script(&spec.dns),
        ]),
        entrypoint: Some(Vec::new()),
        labels: Some(labels),
        exposed_ports: (!ports.is_empty())
            .then(|| ports.into_iter().map(|p| (p, HashMap::new())).collect()),
        host_config: Some(host),
        networking_config: networking,
        ..Default::default()
    })
}

/// Creates (not starts) the container `cid` with its networks joined.
async fn build_container(
    cpi: &DockerCpi,
    method: Method,
    cid: &VmCid,
    spec: &VmSpec,
    image: &str,
) -> Result<(), CpiError> {
    let local = cpi.config().docker.host.starts_with("unix://");
    let body = container_body(cid, spec, image, local)
        .map_err(|m| CpiError::cloud(CpiErrorKind::VmCreationFailed, method, m))?;
    let docker = cpi.docker(method).await?;
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(cid.to_string()),
                ..Default::default()
            }),
            body,
        )
        .await
        .map_err(|e| {
            engine_error(
                CpiErrorKind::VmCreationFailed,
                method,
                "Creating container",
                e,
            )
        })?;
    for extra in spec.networks.iter().skip(1) {
        docker
            .connect_network(
                &extra.docker_network,
                NetworkConnectRequest {
                    container: Some(cid.to_string()),
                    endpoint_config: Some(extra.endpoint()),
                },
            )
            .await
            .map_err(|e| {
                engine_error(
                    CpiErrorKind::VmCreationFailed,
                    method,
                    &format!("Connecting to network '{}'", extra.docker_network),
                    e,
                )
            })?;
    }
    Ok(())
}

async fn write_agent_env(
    cpi: &DockerCpi,
    method: Method,
    cid: &VmCid,
    env: &AgentEnv,
) -> Result<(), CpiError> {
    let body = serde_json::to_vec(env).map_err(|e| {
        CpiError::cloud(
            CpiErrorKind::CloudError,
            method,
            format!("Encoding agent env: {e}"),
        )
    })?;
    files::write_file(cpi, method, cid.as_str(), AGENT_ENV_PATH, &body, 0o600).await
}

pub(super) async fn read_agent_env(
    cpi: &DockerCpi,
    method: Method,
    cid: &VmCid,
) -> Result<AgentEnv, CpiError> {
    let bytes = files::read_file(cpi, method, cid.as_str(), AGENT_ENV_PATH)
        .await?
        .ok_or_else(|| {
            CpiError::cloud(
                CpiErrorKind::CloudError,
                method,
                format!("VM '{cid}' has no agent settings at {AGENT_ENV_PATH}"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CpiError::cloud(
            CpiErrorKind::CloudError,
            method,
            format!("Reading agent settings of VM '{cid}': {e}"),
        )
    })
}

/// Creates the container, writes the agent settings (before start, so the agent never sees
/// a VM without them) and starts it. An engine that cannot grant a privileged container all
/// capabilities gets an unprivileged one instead (recorded in the spec for later rebuilds).
async fn build_and_start(
    cpi: &DockerCpi,
    method: Method,
    cid: &VmCid,
    spec: &mut VmSpec,
    image: &str,
    env: &AgentEnv,
) -> Result<(), CpiError> {
    let docker = cpi.docker(method).await?;
    build_container(cpi, method, cid, spec, image).await?;
    write_agent_env(cpi, method, cid, env).await?;
    let started = docker
        .start_container(cid.as_str(), None::<StartContainerOptions>)
        .await;
    let e = match started {
        Ok(()) => return Ok(()),
        Err(e) if spec.privileged && e.to_string().contains("apply caps") => e,
        Err(e) => {
            return Err(engine_error(
                CpiErrorKind::VmCreationFailed,
                method,
                "Starting container",
                e,
            ));
        }
    };
    tracing::warn!(%cid, error = %e, "privileged containers refused; using capabilities");
    container_remove_forced(docker, cid)
        .await
        .map_err(|e| cloud_error(method, "Removing the refused container", e))?;
    spec.privileged = false;
    build_container(cpi, method, cid, spec, image).await?;
    write_agent_env(cpi, method, cid, env).await?;
    docker
        .start_container(cid.as_str(), None::<StartContainerOptions>)
        .await
        .map_err(|e| {
            engine_error(
                CpiErrorKind::VmCreationFailed,
                method,
                "Starting container",
                e,
            )
        })
}

pub(super) async fn create(
    cpi: &DockerCpi,
    args: CreateVmArgs,
) -> Result<CreateVmResult, CpiError> {
    let m = Method::CreateVm;
    let docker = cpi.docker(m).await?;
    match docker.inspect_image(args.stemcell_cid.as_str()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            return Err(creation_failed(format!(
                "Stemcell '{}' not found",
                args.stemcell_cid
            )));
        }
        Err(e) => return Err(cloud_error(m, "Inspecting stemcell image", e)),
    }
    let attachments = network::ensure(cpi, m, &args.networks).await?;
    let cid = VmCid::new(cpi.new_name("c")).map_err(|e| creation_failed(e.to_string()))?;
    let mut spec = VmSpec {
        agent_id: args.agent_id,
        stemcell_cid: args.stemcell_cid.clone(),
        networks: attachments,
        dns: dns_servers(&args.networks),
        cloud_properties: args.cloud_properties.clone(),
        disks: Vec::new(),
        privileged: true,
    };
    let mut networks = args.networks.clone();
    for net in networks.values_mut() {
        // Docker configures the interfaces; the agent must leave them alone.
        net.preconfigured = Some(true);
    }
    let env = AgentEnv {
        agent_id: args.agent_id,
        vm: AgentEnvVm::for_cid(&cid),
        mbus: cpi.config().agent.mbus.clone(),
        ntp: cpi.config().agent.ntp.clone(),
        blobstore: cpi.config().agent.blobstore.clone(),
        networks,
        disks: AgentEnvDisks::default(),
        env: args.env.clone(),
    };
    let result = async {
        docker
            .create_volume(VolumeCreateOptions {
                name: Some(ephemeral_volume(&cid)),
                labels: Some(HashMap::from([(
                    LABEL_CPI.to_owned(),
                    LABEL_CPI_VALUE.to_owned(),
                )])),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                engine_error(
                    CpiErrorKind::VmCreationFailed,
                    m,
                    "Creating ephemeral volume",
                    e,
                )
            })?;
        build_and_start(cpi, m, &cid, &mut spec, args.stemcell_cid.as_str(), &env).await
    }
    .await;
    if let Err(e) = result {
        // The director has no cid to clean up: leave nothing behind.
        remove_everything(cpi, m, &cid).await;
        return Err(e);
    }
    tracing::info!(%cid, agent_id = %args.agent_id, "vm created");
    Ok(CreateVmResult {
        vm_cid: cid,
        networks: serde_json::to_value(&args.networks).unwrap_or(Value::Null),
    })
}

/// Removes a container whatever its state; callers decide which errors matter.
async fn container_remove_forced(
    docker: &Docker,
    cid: &VmCid,
) -> Result<(), bollard::errors::Error> {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker.remove_container(cid.as_str(), Some(options)).await
}

/// Best-effort removal of the container, its ephemeral volume and snapshot image.
async fn remove_everything(cpi: &DockerCpi, method: Method, cid: &VmCid) {
    let Ok(docker) = cpi.docker(method).await else {
        return;
    };
    let _ = container_remove_forced(docker, cid).await;
    let _ = docker
        .remove_volume(
            &ephemeral_volume(cid),
            Some(RemoveVolumeOptions { force: true }),
        )
        .await;
    let _ = docker
        .remove_image(
            &snapshot_image(cid),
            Some(RemoveImageOptions {
                force: true,
                noprune: false,
            }),
            None,
        )
        .await;
}

pub(super) async fn delete(cpi: &DockerCpi, cid: &VmCid) -> Result<(), CpiError> {
    let m = Method::DeleteVm;
    let docker = cpi.docker(m).await?;
    let found = match inspect(cpi, m, cid).await {
        Ok(_) => true,
        Err(e) if e.kind() == Some(CpiErrorKind::VmNotFound) => false,
        Err(e) => return Err(e),
    };
    if found {
        kill(cpi, m, cid).await?;
        match container_remove_forced(docker, cid).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(cloud_error(m, "Removing container", e)),
        }
    }
    // Leftovers of a half-deleted VM go too, found or not.
    match docker
        .remove_volume(
            &ephemeral_volume(cid),
            Some(RemoveVolumeOptions { force: true }),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(cloud_error(m, "Deleting ephemeral volume", e)),
    }
    match docker
        .remove_image(
            &snapshot_image(cid),
            Some(RemoveImageOptions {
                force: true,
                noprune: false,
            }),
            None,
        )
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(cloud_error(m, "Deleting snapshot image", e)),
    }
    if !found {
        return Err(not_found(m, cid));
    }
    tracing::info!(%cid, "vm deleted");
    Ok(())
}

/// SIGKILL, retried on flaky engine errors as the real CPI; "not running" is success.
async fn kill(cpi: &DockerCpi, method: Method, cid: &VmCid) -> Result<(), CpiError> {
    let docker = cpi.docker(method).await?;
    let mut last = None;
    for _ in 0..20 {
        match docker
            .kill_container(
                cid.as_str(),
                Some(KillContainerOptions {
                    signal: "KILL".to_owned(),
                }),
            )
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) if is_not_found(&e) || super::is_conflict(&e) => return Ok(()),
            Err(e) if e.to_string().contains("is not running") => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    match last {
        Some(e) => Err(cloud_error(method, "Killing container", e)),
        None => Ok(()),
    }
}

pub(super) async fn has(cpi: &DockerCpi, cid: &VmCid) -> Result<bool, CpiError> {
    match inspect(cpi, Method::HasVm, cid).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == Some(CpiErrorKind::VmNotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(super) async fn reboot(cpi: &DockerCpi, cid: &VmCid) -> Result<(), CpiError> {
    let m = Method::RebootVm;
    inspect(cpi, m, cid).await?;
    let t = i32::try_from(cpi.config().stop_timeout_secs).unwrap_or(10);
    cpi.docker(m)
        .await?
        .restart_container(
            cid.as_str(),
            Some(RestartContainerOptions {
                t: Some(t),
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| cloud_error(m, "Restarting container", e))
}

pub(super) async fn disks(cpi: &DockerCpi, cid: &VmCid) -> Result<Vec<DiskCid>, CpiError> {
    let m = Method::GetDisks;
    let container = inspect(cpi, m, cid).await?;
    Ok(spec_of(m, cid, &container)?.disks)
}

/// Rebuilds the container with `disks` as its persistent disks, keeping its root filesystem
/// and ephemeral volume; `edit` updates the agent settings written into the new container.
pub(super) async fn recreate(
    cpi: &DockerCpi,
    method: Method,
    cid: &VmCid,
    mut spec: VmSpec,
    disks: Vec<DiskCid>,
    edit: impl FnOnce(&mut AgentEnv),
) -> Result<(), CpiError> {
    let docker = cpi.docker(method).await?;
    let mut env = read_agent_env(cpi, method, cid).await?;
    edit(&mut env);
    let t = i32::try_from(cpi.config().stop_timeout_secs).unwrap_or(10);
    match docker
        .stop_container(
            cid.as_str(),
            Some(StopContainerOptions {
                t: Some(t),
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => {}
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => return Err(cloud_error(method, "Stopping container", e)),
    }
    let snapshot = snapshot_image(cid);
    docker
        .commit_container(
            CommitContainerOptions {
                container: Some(cid.to_string()),
                repo: Some(snapshot.clone()),
                tag: Some("latest".to_owned()),
                ..Default::default()
            },
            ContainerConfig::default(),
        )
        .await
        .map_err(|e| cloud_error(method, "Creating a snapshot of the container", e))?;
    container_remove_forced(docker, cid)
        .await
        .map_err(|e| cloud_error(method, "Removing the old container", e))?;
    spec.disks = disks;
    let image = format!("{snapshot}:latest");
    build_and_start(cpi, method, cid, &mut spec, &image, &env).await?;
    tracing::info!(%cid, disks = ?spec.disks, "vm recreated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cloud_properties_become_host_config() {
        let props: CloudProperties = serde_json::from_value(json!({
            "memory": 1048576, "port_bindings": {"80/tcp": [{"HostPort": "8080"}]},
            "ports": ["6868/tcp"]
        }))
        .unwrap();
        let host = host_config_from(&props).unwrap();
        assert_eq!(host.memory, Some(1048576));
        assert!(host.port_bindings.unwrap().contains_key("80/tcp"));
        assert_eq!(ports_of(&props), vec!["6868/tcp"]);
        let bad: CloudProperties = serde_json::from_value(json!({"memory": "lots"})).unwrap();
        assert!(host_config_from(&bad).is_err());
    }

    #[test]
    fn start_script_writes_dns_and_execs_runit() {
        let s = start_script(&["8.8.8.8".into(), "bad;rm".into()]);
        assert!(s.contains("echo 'nameserver 8.8.8.8'"));
        assert!(!s.contains("bad;rm"));
        assert!(s.ends_with("exec env -i /usr/sbin/runsvdir-start"));
        assert!(!start_script(&[]).contains("resolv.conf"));
    }
}
