//! What the planner produces: every decision of a deploy, before anything is touched. The
//! director persists it, prints the diff from it, then compiles, renders and updates.

use crate::input::{
    AppliedJob, AppliedState, ExistingDisk, ExistingInstance, ExistingVm, InstanceState,
    StemcellVersion,
};
use bosh_types::cloud_config::VmResources;
use bosh_types::ids::{DiskCid, InstanceId, StemcellCid, VmCid};
use bosh_types::manifest::{Count, Lifecycle, Variable};
use bosh_yaml::Value;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// Deployment name.
    pub name: String,
    /// Release versions the deployment uses (manifest and runtime configs).
    pub releases: Vec<ReleaseVersion>,
    pub instance_groups: Vec<InstanceGroupPlan>,
    /// Existing instances no longer wanted: drained and deleted after the updates.
    pub instances_to_delete: Vec<ObsoleteInstance>,
    /// IPs to reserve before any VM is created.
    pub ip_reservations_new: Vec<PlannedReservation>,
    /// IPs to release once their instance is deleted or moved.
    pub ip_reservations_released: Vec<PlannedReservation>,
    /// `variables:` of the manifest, then of the runtime configs, for the config server.
    pub variables: Vec<Variable>,
    /// Runtime-config tags overlaid by the deployment's (deployment wins).
    pub tags: IndexMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseVersion {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceGroupPlan {
    pub name: String,
    pub lifecycle: Lifecycle,
    pub update: UpdatePlan,
    pub stemcell: StemcellPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_resources: Option<VmResources>,
    #[serde(default)]
    pub vm_extensions: Vec<String>,
    /// Agent env, passed through.
    pub env: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_disk: Option<DiskPlan>,
    /// The group's networks in manifest order, with their defaults.
    pub networks: Vec<GroupNetwork>,
    /// Manifest jobs first, then addon jobs.
    pub jobs: Vec<JobPlan>,
    /// Packages the jobs need (name → release package), sorted by name.
    pub packages: Vec<PackagePlan>,
    /// SHA-256 over the jobs' bound properties: compared with the applied one.
    pub properties_digest: String,
    /// SHA-256 over the jobs' resolved links: compared with the applied one.
    pub links_digest: String,
    /// Desired instances, by index.
    pub instances: Vec<InstancePlan>,
}

impl InstanceGroupPlan {
    /// What an instance of this group carries once updated: the next plan compares with it.
    pub fn applied_state(&self) -> AppliedState {
        AppliedState {
            jobs: self
                .jobs
                .iter()
                .map(|j| AppliedJob {
                    name: j.name.clone(),
                    release: j.release.clone(),
                    version: j.version.clone(),
                })
                .collect(),
            packages: self
                .packages
                .iter()
                .map(|p| (p.name.clone(), p.fingerprint.clone()))
                .collect(),
            properties_digest: self.properties_digest.clone(),
            links_digest: self.links_digest.clone(),
            configuration_hash: None,
        }
    }
}

/// The update policy, with percentages resolved the way the director's updater does: per
/// AZ, against the number of instances that change in that AZ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatePlan {
    pub canaries: Count,
    pub max_in_flight: Count,
    pub canary_watch_time: WatchTimeMs,
    pub update_watch_time: WatchTimeMs,
    pub serial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_strategy: Option<String>,
    /// Instances to update per AZ, in update order (the bootstrap instance's AZ first);
    /// canaries are taken from the first AZ only.
    pub azs: Vec<AzUpdate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchTimeMs {
    pub min: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzUpdate {
    pub az: Option<String>,
    /// Instances in this AZ whose change is not None.
    pub instances: u32,
    pub canaries: u32,
    pub max_in_flight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StemcellPlan {
    pub alias: String,
    pub name: String,
    pub os: String,
    pub version: String,
    pub cid: StemcellCid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskPlan {
    /// MB.
    pub size: u64,
    pub cloud_properties: Value,
    /// The cloud-config disk type, when the manifest named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupNetwork {
    pub name: String,
    /// `manual`, `dynamic` or `vip`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Sorted subset of `addressable`, `dns`, `gateway`.
    pub default: Vec<String>,
    #[serde(default)]
    pub static_ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    pub name: String,
    pub release: String,
    pub release_version: String,
    /// Job version (fingerprint).
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    /// The addon that put this job here, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addon: Option<String>,
    /// Bound properties (formats.md §7.3): every declared property, set or defaulted.
    pub properties: Value,
    /// Consumed link name → resolved link; absent for optional or blocked links.
    pub links: IndexMap<String, LinkPlan>,
    /// Links this job provides, as others may consume them.
    pub provides: Vec<ProvidedLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidedLink {
    /// Name in the job spec (or custom definition).
    pub name: String,
    /// The name consumers match with `from`: the `as` alias, else `name`.
    pub alias: String,
    #[serde(rename = "type")]
    pub link_type: String,
    #[serde(default)]
    pub shared: bool,
}

/// A resolved link: the hash templates get through `link(name)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkPlan {
    pub deployment_name: String,
    pub domain: String,
    pub default_network: String,
    pub networks: Vec<String>,
    /// Provider instance group.
    pub instance_group: String,
    /// Provider job and the provided link's name and type.
    pub job: String,
    pub link_name: String,
    #[serde(rename = "type")]
    pub link_type: String,
    pub properties: Value,
    pub instances: Vec<LinkInstance>,
    pub use_dns_addresses: bool,
    pub use_short_dns_addresses: bool,
    pub use_link_dns_names: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInstance {
    /// Provider instance group.
    pub name: String,
    pub id: InstanceId,
    pub index: u32,
    pub bootstrap: bool,
    pub az: Option<String>,
    /// The IP on the link's network; a DNS name on dynamic networks (no IP known yet).
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagePlan {
    pub name: String,
    pub release: String,
    pub version: String,
    pub fingerprint: String,
    pub dependencies: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// New instance: create VM (and disk), apply, start.
    Create,
    /// Replace the VM (keeping persistent disks), apply, start.
    Recreate,
    /// Apply in place: drain/stop, apply, start.
    Update,
    /// Restart jobs only.
    Restart,
    /// Nothing to do.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub id: InstanceId,
    pub index: u32,
    pub az: Option<String>,
    pub bootstrap: bool,
    pub state: InstanceState,
    /// AZ, then vm_type, then vm_extensions cloud properties, merged key by key.
    pub cloud_properties: Value,
    /// Agent network settings by network name.
    pub networks: IndexMap<String, NetworkSettings>,
    pub change: Change,
    /// Why, in the director's order; empty for None and Create.
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_vm: Option<VmCid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_disk: Option<DiskCid>,
}

impl InstancePlan {
    /// The IP of the default-`addressable` network, else the default-`gateway` one.
    pub fn address(&self) -> Option<IpAddr> {
        let by = |d: &str| {
            self.networks
                .values()
                .find(|n| n.default.iter().any(|x| x == d))
                .and_then(|n| n.ip)
        };
        by("addressable").or_else(|| by("gateway"))
    }
}

/// Agent settings for one network (`networks.<name>` of the agent settings / apply spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSettings {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Sorted.
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default)]
    pub cloud_properties: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObsoleteInstance {
    pub group: String,
    pub id: InstanceId,
    pub index: u32,
    pub az: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmCid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskCid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedReservation {
    /// `group/uuid`.
    pub instance: String,
    pub network: String,
    pub ip: IpAddr,
    /// From the group's `static_ips` (else allocated from the dynamic pool).
    #[serde(rename = "static")]
    pub is_static: bool,
}

impl DeploymentPlan {
    pub fn instance_group(&self, name: &str) -> Option<&InstanceGroupPlan> {
        self.instance_groups.iter().find(|g| g.name == name)
    }

    /// The instances as the director would record them after carrying this plan out: what
    /// a redeploy plans against. New VMs and disks get cids from `mint` (a CPI stands in).
    pub fn instances_after_apply(
        &self,
        mut mint: impl FnMut(&str) -> String,
    ) -> Vec<ExistingInstance> {
        let mut out = Vec::new();
        for g in &self.instance_groups {
            for i in &g.instances {
                let vm_cid = match (&i.existing_vm, i.change) {
                    (Some(cid), c) if c != Change::Recreate => cid.clone(),
                    _ => VmCid::new(mint("vm")).unwrap_or_else(|_| unreachable_cid()),
                };
                let disk = g.persistent_disk.as_ref().map(|d| ExistingDisk {
                    cid: i.existing_disk.clone().unwrap_or_else(|| {
                        DiskCid::new(mint("disk")).unwrap_or_else(|_| unreachable_disk())
                    }),
                    size: d.size,
                    cloud_properties: d.cloud_properties.clone(),
                });
                out.push(ExistingInstance {
                    group: g.name.clone(),
                    id: i.id,
                    index: i.index,
                    az: i.az.clone(),
                    bootstrap: i.bootstrap,
                    state: i.state,
                    dirty: false,
                    vm: Some(ExistingVm {
                        cid: vm_cid,
                        stemcell: StemcellVersion {
                            name: g.stemcell.name.clone(),
                            version: g.stemcell.version.clone(),
                        },
                        cloud_properties: i.cloud_properties.clone(),
                        env: g.env.clone(),
                    }),
                    networks: i.networks.clone(),
                    persistent_disk: disk,
                    applied: Some(g.applied_state()),
                });
            }
        }
        out
    }
}

// `mint` returning an empty string is a caller bug; a fixed placeholder keeps this total.
fn unreachable_cid() -> VmCid {
    VmCid::new("vm-unknown").expect("non-empty")
}

fn unreachable_disk() -> DiskCid {
    DiskCid::new("disk-unknown").expect("non-empty")
}
