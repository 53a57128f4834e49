//! Day-2 operations in one registry: the task types and routes of cloud check, instance
//! operations, disks and clean-up, logs and ssh, errands, the health monitor and metrics. Each
//! component lives in its own module; this file only wires them in.

use axum::Router;

use crate::api::{self, AppState};
use crate::services::Services;
use crate::tasks::runner::TaskRegistry;

/// Registers every day-2 task type.
pub fn tasks_register(registry: &mut TaskRegistry, services: &Services, director_name: &str) {
    crate::cck::tasks_register(registry, services, director_name);
    crate::instance_ops::tasks_register(registry, services, director_name);
    crate::disks::tasks_register(registry, services, director_name);
    crate::logs::tasks_register(registry, services, director_name);
    crate::errands::tasks_register(registry, services, director_name);
    crate::metrics::tasks_register(registry, services, director_name);
}

/// Every day-2 route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(api::problems::routes())
        .merge(api::instance_ops::routes())
        .merge(api::disks::routes())
        .merge(api::logs::routes())
        .merge(api::errands::routes())
        .merge(api::resurrection::routes())
        .merge(api::metrics::routes())
}
