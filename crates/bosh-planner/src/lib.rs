//! The deployment planner: a pure, synchronous function from a deploy's inputs (manifest,
//! cloud and runtime configs, uploaded releases and stemcells, the deployment's current
//! instances, other deployments' IPs) to a [`DeploymentPlan`]. No IO, no clock; new
//! instance ids come from an injected [`IdGenerator`].
//!
//! The director loads the inputs, calls [`plan`], persists the plan's IP reservations,
//! then compiles, renders templates (folding the rendered configuration hash in with
//! [`instance_change_with_config`]) and updates instances in the plan's order.
//!
//! Choices where BOSH offers several: link instance addresses are IPs on the provider's
//! default network (DNS names only on dynamic networks, whose IP is unknown until the VM
//! boots); VM cloud properties are merged AZ → vm_type → vm_extensions one top-level key at
//! a time, as the director's `MergedCloudProperties` does.

mod changes;
pub mod error;
pub mod input;
mod links;
mod network;
mod placement;
pub mod plan;
mod planner;
pub mod props;

pub use changes::instance_change_with_config;
pub use error::{PlanError, PlanErrors};
pub use input::{
    AppliedJob, AppliedState, ExistingDisk, ExistingInstance, ExistingVm, IdGenerator,
    InstanceState, IpReservation, PlanInput, PlanOptions, RandomIds, ReleaseInput, ReleaseJob,
    ReleasePackage, SequentialIds, StemcellInput, StemcellVersion,
};
pub use plan::*;
pub use planner::plan;
