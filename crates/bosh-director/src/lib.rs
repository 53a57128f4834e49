//! bosh-director: the HTTPS API the official `bosh` CLI talks to, basic auth, the database
//! (SQLite by default, PostgreSQL for scale-out) and persisted tasks run by a worker pool.
//!
//! Start with [`server::director_start`]; task types implement [`tasks::runner::TaskJob`].
pub mod agents;
pub mod api;
pub mod auth;
pub mod blobstore;
pub mod cck;
pub mod cleanup;
pub mod compile;
pub mod config;
pub mod config_server;
pub mod configs;
pub mod cpi_log;
pub mod day2;
pub mod db;
pub mod deploy;
pub mod deployments;
pub mod disks;
pub mod errands;
pub mod error;
pub mod events;
pub mod hm;
pub mod instance_listing;
pub mod instance_ops;
pub mod locks;
pub mod logs;
pub mod metrics;
pub mod nats;
pub mod pki;
mod private_file;
pub mod releases;
pub mod repair;
pub mod server;
pub mod services;
pub mod ssh;
pub mod stemcells;
pub mod tasks;
pub mod uploads;
pub mod vms;
