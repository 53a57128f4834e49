//! bosh-agent: NATS RPC, job supervision and the /var/vcap layout on a VM.
//!
//! [`agent::run`] is the daemon: it loads settings ([`config`]), connects to NATS over mTLS
//! ([`mbus`]), answers requests with one module per action ([`action`]), runs asynchronous
//! actions as agent tasks ([`task`]), publishes heartbeats, and supervises jobs from their
//! monit files ([`supervisor`]), whose events become
//! health-monitor alerts ([`alert`]). [`testing`] builds the TLS material and nats-server config
//! a director uses, for tests here and elsewhere.

pub mod action;
pub mod agent;
pub mod alert;
pub mod applier;
pub mod blobstore;
pub mod config;
pub mod layout;
pub mod mbus;
pub mod platform;
pub mod supervisor;
pub mod task;
pub mod testing;
pub mod vitals;

/// An error and its sources joined with `": "`, the form error messages take on the wire.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
