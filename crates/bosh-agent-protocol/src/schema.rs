//! JSON Schemas for the wire types, committed under `schemas/agent/` and kept current by a
//! test (`tests/schemas.rs`).

use schemars::schema_for;
use serde_json::Value;

/// `(file name, schema)` for every committed schema.
pub fn all() -> Vec<(&'static str, Value)> {
    let v = |s: schemars::Schema| s.to_value();
    vec![
        ("request.json", v(schema_for!(crate::envelope::Request))),
        ("response.json", v(schema_for!(crate::envelope::Response))),
        (
            "task-handle.json",
            v(schema_for!(crate::envelope::TaskHandle)),
        ),
        (
            "apply-spec.json",
            v(schema_for!(crate::apply_spec::ApplySpec)),
        ),
        ("state.json", v(schema_for!(crate::state::AgentState))),
        ("settings.json", v(schema_for!(crate::settings::Settings))),
        (
            "update-settings.json",
            v(schema_for!(crate::settings::UpdateSettings)),
        ),
        (
            "heartbeat.json",
            v(schema_for!(crate::heartbeat::Heartbeat)),
        ),
        ("alert.json", v(schema_for!(crate::heartbeat::Alert))),
    ]
}
