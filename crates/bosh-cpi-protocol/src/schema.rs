//! JSON Schemas generated from the wire types. They are committed under `schemas/cpi/` and a
//! test fails when the types and the committed files drift apart.

use schemars::{JsonSchema, Schema, schema_for};

fn named<T: JsonSchema>(file: &'static str) -> (&'static str, Schema) {
    (file, schema_for!(T))
}

/// `(file name, schema)` for every committed schema.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        named::<crate::CpiRequest>("request.json"),
        named::<crate::CpiResponse>("response.json"),
        named::<crate::methods::InfoResult>("info-result.json"),
        named::<crate::methods::Networks>("networks.json"),
        named::<crate::methods::DiskHint>("disk-hint.json"),
        named::<crate::methods::VmResources>("vm-resources.json"),
        named::<crate::agent_env::AgentEnv>("agent-env.json"),
    ]
}

/// The text written to disk: pretty JSON with a trailing newline.
pub fn render(schema: &Schema) -> String {
    let mut s = serde_json::to_string_pretty(schema).expect("a schema serializes to JSON");
    s.push('\n');
    s
}
