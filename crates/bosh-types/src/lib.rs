//! The BOSH domain model, with no IO: digests, versions, typed ids, release and stemcell
//! manifests, deployment manifest v2 and the cloud/runtime/CPI configs, with validation
//! errors that name the field path (and line, when the YAML gave one).

pub mod cloud_config;
pub mod cpi_config;
pub mod digest;
pub mod ids;
pub mod manifest;
pub mod release;
pub mod runtime_config;
pub mod stemcell;
pub mod validate;
pub mod version;
