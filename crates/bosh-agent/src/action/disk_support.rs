//! Shared by the persistent-disk actions: where a disk's settings come from (settings.json
//! `disks.persistent` and the hints recorded by `add_persistent_disk`) and which disks are
//! mounted at `store` / `store_migration_target`.

use super::ActionError;
use crate::agent::Agent;
use serde_json::{Map, Value};

/// Recorded `add_persistent_disk` hints, by disk cid.
pub(crate) fn read_hints(agent: &Agent) -> Map<String, Value> {
    std::fs::read(agent.layout.persistent_disk_hints())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(crate) fn write_hints(agent: &Agent, hints: &Map<String, Value>) -> Result<(), ActionError> {
    crate::config::write_json(&agent.layout.persistent_disk_hints(), hints).map_err(Into::into)
}

/// Every known persistent disk: settings first, then recorded hints.
pub(crate) fn all_disks(agent: &Agent) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    if let Some(Value::Object(p)) = agent.settings().disks.get("persistent") {
        out.extend(p.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for (k, v) in read_hints(agent) {
        if !out.iter().any(|(c, _)| *c == k) {
            out.push((k, v));
        }
    }
    out
}

/// The device path of a disk hint: a string, or an object's `path` (else `volume_id`).
pub(crate) fn device_path(hint: &Value) -> Option<String> {
    match hint {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => ["path", "volume_id", "id"]
            .iter()
            .filter_map(|k| o.get(*k).and_then(Value::as_str))
            .find(|s| !s.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

/// The device of disk `cid`, or the real agent's not-found error.
pub(crate) fn find_disk(agent: &Agent, cid: &str) -> Result<String, ActionError> {
    all_disks(agent)
        .into_iter()
        .find(|(c, _)| c == cid)
        .and_then(|(_, hint)| device_path(&hint))
        .ok_or_else(|| {
            ActionError::msg(format!(
                "Persistent disk with volume id '{cid}' could not be found"
            ))
        })
}

/// Cids of known disks mounted at the store or the migration target.
pub(crate) fn mounted_cids(agent: &Agent) -> Vec<String> {
    let disks = agent.platform.disks();
    let mounted: Vec<String> = [agent.layout.store(), agent.layout.store_migration_target()]
        .iter()
        .filter_map(|mp| disks.mounted_device(mp))
        .collect();
    all_disks(agent)
        .into_iter()
        .filter(|(_, hint)| device_path(hint).is_some_and(|d| mounted.contains(&d)))
        .map(|(cid, _)| cid)
        .collect()
}

pub(crate) fn io(what: &str) -> impl FnOnce(std::io::Error) -> ActionError + '_ {
    move |e| ActionError::msg(format!("{what}: {e}"))
}
