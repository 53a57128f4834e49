//! The committed schemas under `schemas/agent/` must match the types. Run with
//! `BOSH_UPDATE_SCHEMAS=1` to rewrite them after an intended change.

use std::path::PathBuf;

#[test]
fn committed_schemas_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/agent");
    let update = std::env::var_os("BOSH_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in bosh_agent_protocol::schema::all() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == text => {}
            _ => stale.push(name),
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas {stale:?}; regenerate with BOSH_UPDATE_SCHEMAS=1 cargo test -p bosh-agent-protocol"
    );
}
