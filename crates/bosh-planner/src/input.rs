//! What the planner reads: the documents of a deploy, what the director has uploaded, and
//! what the deployment currently runs. The director loads all of this from its database.

use crate::plan::NetworkSettings;
use bosh_types::cloud_config::CloudConfig;
use bosh_types::ids::{DiskCid, InstanceId, StemcellCid, VmCid};
use bosh_types::manifest::{Count, Manifest};
use bosh_types::release::JobSpec;
use bosh_types::runtime_config::RuntimeConfig;
use bosh_yaml::Value;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Everything one plan depends on. Nothing else is read: no clock, no IO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInput {
    /// The interpolated manifest (properties/env may still hold `((placeholders))`).
    pub manifest: Manifest,
    /// The merged cloud config.
    pub cloud_config: CloudConfig,
    #[serde(default)]
    pub runtime_configs: Vec<RuntimeConfig>,
    /// Uploaded releases the manifest and runtime configs may name.
    #[serde(default)]
    pub releases: Vec<ReleaseInput>,
    /// Uploaded stemcells.
    #[serde(default)]
    pub stemcells: Vec<StemcellInput>,
    /// The deployment's instances as the director last recorded them.
    #[serde(default)]
    pub current: Vec<ExistingInstance>,
    /// IPs other deployments hold; IPs are unique per director, whatever the network name.
    #[serde(default)]
    pub other_reservations: Vec<IpReservation>,
    #[serde(default)]
    pub options: PlanOptions,
}

/// One uploaded release version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseInput {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub jobs: Vec<ReleaseJob>,
    #[serde(default)]
    pub packages: Vec<ReleasePackage>,
}

/// A job of an uploaded release, with its parsed spec (`job.MF`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseJob {
    pub name: String,
    /// The job's version (its fingerprint since CLI v2).
    pub version: String,
    /// Digest of the job archive, as the apply spec carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    pub spec: JobSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasePackage {
    pub name: String,
    pub version: String,
    pub fingerprint: String,
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// An uploaded stemcell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StemcellInput {
    pub name: String,
    pub operating_system: String,
    pub version: String,
    pub cid: StemcellCid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<i64>,
}

/// Desired process state of an instance; a deploy keeps whatever state an instance has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    #[default]
    Started,
    Stopped,
    Detached,
}

/// One instance of the deployment as recorded by the director.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExistingInstance {
    /// Instance group name.
    pub group: String,
    pub id: InstanceId,
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    #[serde(default)]
    pub bootstrap: bool,
    #[serde(default)]
    pub state: InstanceState,
    /// The previous update of this instance did not finish.
    #[serde(default)]
    pub dirty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<ExistingVm>,
    /// Network settings last applied, by network name (IP reservations included).
    #[serde(default)]
    pub networks: IndexMap<String, NetworkSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_disk: Option<ExistingDisk>,
    /// What the last successful apply put on the instance; `None` if never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedState>,
}

impl ExistingInstance {
    /// `group/uuid`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.group, self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExistingVm {
    pub cid: VmCid,
    pub stemcell: StemcellVersion,
    /// Merged cloud properties the VM was created with.
    #[serde(default)]
    pub cloud_properties: Value,
    /// Agent env the VM was created with.
    #[serde(default)]
    pub env: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StemcellVersion {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExistingDisk {
    pub cid: DiskCid,
    /// MB.
    pub size: u64,
    #[serde(default)]
    pub cloud_properties: Value,
}

/// The change-detection digests of the last applied spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedState {
    /// `(job name, release name, job version)`, in instance-group order.
    pub jobs: Vec<AppliedJob>,
    /// Package name → fingerprint.
    #[serde(default)]
    pub packages: IndexMap<String, String>,
    /// [`crate::plan::InstanceGroupPlan::properties_digest`] when applied.
    pub properties_digest: String,
    /// [`crate::plan::InstanceGroupPlan::links_digest`] when applied.
    pub links_digest: String,
    /// Rendered-templates configuration hash (formats.md §7.2), if rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedJob {
    pub name: String,
    pub release: String,
    pub version: String,
}

/// An IP held by another deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpReservation {
    pub deployment: String,
    pub network: String,
    pub ip: IpAddr,
}

/// `bosh deploy` flags that change the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// `--recreate`: every instance gets a new VM.
    #[serde(default)]
    pub recreate: bool,
    /// `--recreate-persistent-disks`.
    #[serde(default)]
    pub recreate_persistent_disks: bool,
    /// `--fix`: instances whose VM is gone are recreated (always true here: a missing VM is
    /// planned as Recreate either way); kept for the director's bookkeeping.
    #[serde(default)]
    pub fix: bool,
    /// `bosh restart`: restart every instance's jobs.
    #[serde(default)]
    pub restart: bool,
    /// `--canaries`: overrides every group's update block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries: Option<Count>,
    /// `--max-in-flight`: overrides every group's update block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<Count>,
}

/// Mints instance ids; injected so that plans are reproducible in tests.
pub trait IdGenerator {
    fn instance_id(&mut self) -> InstanceId;
}

impl<F: FnMut() -> InstanceId> IdGenerator for F {
    fn instance_id(&mut self) -> InstanceId {
        self()
    }
}

/// Random v4 ids: what the director uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomIds;

impl IdGenerator for RandomIds {
    fn instance_id(&mut self) -> InstanceId {
        InstanceId::new_v4()
    }
}

/// `00000000-0000-4000-8000-000000000001`, `…02`, …: deterministic ids for tests.
#[derive(Debug, Default, Clone)]
pub struct SequentialIds {
    next: u64,
}

impl SequentialIds {
    /// Starts after `n` ids were already handed out.
    pub fn starting_after(n: u64) -> Self {
        SequentialIds { next: n }
    }
}

impl IdGenerator for SequentialIds {
    fn instance_id(&mut self) -> InstanceId {
        self.next += 1;
        let bits: u128 = 0x0000_0000_0000_4000_8000_0000_0000_0000 | u128::from(self.next);
        InstanceId::from_uuid(uuid::Uuid::from_u128(bits))
    }
}
