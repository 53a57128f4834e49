//! The external CPI protocol (contract version 2, accepting 3): one JSON request on a CPI
//! executable's stdin, one JSON response on its stdout. See `shared/specs/cpi-protocol.md`.
//!
//! This crate has the wire types only and does no IO:
//! - [`CpiRequest`] / [`RequestContext`]: what the director sends;
//! - [`CpiResponse`] / [`ResponseError`]: what a CPI answers, with the director's strict
//!   validation in [`CpiResponse::from_slice_strict`];
//! - [`CpiErrorKind`]: the error classes the director knows, their families and the
//!   back-compat mappings;
//! - [`methods`]: typed positional arguments and results of every v2 method;
//! - [`agent_env`]: the agent settings document CPIs write into a VM;
//! - [`schema`]: JSON Schemas generated from these types, committed under `schemas/cpi/`.

pub mod agent_env;
pub mod error_kind;
pub mod methods;
pub mod request;
pub mod response;
pub mod schema;

pub use error_kind::{CpiErrorFamily, CpiErrorKind};
pub use methods::{ArgumentsError, CpiMethod, Method};
pub use request::{CpiRequest, RequestContext, StemcellContext, VmContext};
pub use response::{CpiResponse, ResponseError, ResponseInvalid};

/// The highest contract version a director asks for (`min(info.api_version, this)`).
pub const PREFERRED_API_VERSION: u32 = 3;
/// CPIs below this version are refused (they return a bare string from `create_vm`).
pub const MINIMUM_API_VERSION: u32 = 2;
