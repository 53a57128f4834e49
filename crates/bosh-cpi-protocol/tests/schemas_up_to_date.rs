//! The committed `schemas/cpi/*.json` must equal what the types generate.
//! Run with `BOSH_UPDATE_SCHEMAS=1` to rewrite them after an intended change.

use std::path::PathBuf;

#[test]
fn committed_cpi_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/cpi");
    let update = std::env::var_os("BOSH_UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (file, schema) in bosh_cpi_protocol::schema::all() {
        let path = dir.join(file);
        let want = bosh_cpi_protocol::schema::render(&schema);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &want).unwrap();
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "schemas out of date: {stale:?}; rerun with BOSH_UPDATE_SCHEMAS=1 to rewrite them"
    );
}

#[test]
fn response_schema_requires_all_three_keys() {
    let schema = bosh_cpi_protocol::schema::all()
        .into_iter()
        .find(|(f, _)| *f == "response.json")
        .unwrap()
        .1;
    let v = serde_json::to_value(&schema).unwrap();
    let mut required: Vec<&str> = v["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["error", "log", "result"]);
}
