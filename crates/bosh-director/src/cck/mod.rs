//! Cloud check (`bosh cck`, director-api.md §5.7): scans for problems and applies resolutions.
//!
//! The health monitor's resurrector uses the same machinery: it queues a
//! [`SCAN_AND_FIX`] task (Ruby's `PUT /deployments/{dep}/scan_and_fix`), which scans the named
//! instances and applies each problem's automatic resolution.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::services::Services;
use crate::tasks::runner::TaskRegistry;

pub mod jobs;
pub mod problems;
pub mod resolutions;
pub mod scan;

pub use jobs::{APPLY, SCAN};

/// The task type of a scan-and-fix (resurrection).
pub const SCAN_AND_FIX: &str = "cck_scan_and_fix";

/// Payload of a [`SCAN_AND_FIX`] task: instance group → instance uuids (or indexes) to check
/// and repair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanAndFixPayload {
    pub deployment: String,
    pub jobs: BTreeMap<String, Vec<String>>,
}

/// Registers this component's task types.
pub fn tasks_register(registry: &mut TaskRegistry, services: &Services, _director_name: &str) {
    registry.register(
        SCAN,
        Arc::new(jobs::ScanJob {
            services: services.clone(),
        }),
    );
    registry.register(
        APPLY,
        Arc::new(jobs::ApplyJob {
            services: services.clone(),
        }),
    );
    registry.register(
        SCAN_AND_FIX,
        Arc::new(jobs::ScanAndFixJob {
            services: services.clone(),
        }),
    );
}
