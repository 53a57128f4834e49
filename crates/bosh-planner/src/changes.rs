//! What a redeploy does to an existing instance (formats.md §14), from the director's
//! change set: VM-level changes recreate, spec-level changes update in place.

use crate::input::{ExistingInstance, PlanOptions};
use crate::plan::{Change, InstanceGroupPlan, InstancePlan};
use bosh_yaml::Value;

/// Reasons in the director's order, and the change they add up to.
pub(crate) fn instance_change(
    existing: &ExistingInstance,
    group: &InstanceGroupPlan,
    desired: &InstancePlan,
    options: &PlanOptions,
) -> (Change, Vec<String>) {
    let mut recreate = Vec::new();
    let mut update = Vec::new();
    if existing.dirty {
        update.push("dirty");
    }
    if options.restart {
        update.push("restart requested");
    }
    if options.recreate {
        recreate.push("recreate requested");
    }
    if options.recreate_persistent_disks && group.persistent_disk.is_some() {
        update.push("recreate persistent disks requested");
    }
    match &existing.vm {
        None => recreate.push("vm missing"),
        Some(vm) => {
            if !same(&vm.cloud_properties, &desired.cloud_properties) {
                recreate.push("cloud_properties changed");
            }
            if vm.stemcell.name != group.stemcell.name
                || vm.stemcell.version != group.stemcell.version
            {
                recreate.push("stemcell changed");
            }
            if !same(&vm.env, &group.env) {
                recreate.push("env changed");
            }
        }
    }
    let networks_same = existing.networks.len() == desired.networks.len()
        && desired
            .networks
            .iter()
            .all(|(n, s)| existing.networks.get(n) == Some(s));
    if !networks_same {
        recreate.push("networks changed");
    }
    let disk_now = existing
        .persistent_disk
        .as_ref()
        .map(|d| (d.size, normal(&d.cloud_properties)));
    let disk_want = group
        .persistent_disk
        .as_ref()
        .map(|d| (d.size, normal(&d.cloud_properties)));
    match &existing.applied {
        None => update.push("never applied"),
        Some(a) => {
            let want = group.applied_state();
            if a.packages != want.packages {
                update.push("packages changed");
            }
            if disk_now != disk_want {
                update.push("persistent disk changed");
            }
            if a.jobs != want.jobs {
                update.push("jobs changed");
            }
            if a.properties_digest != want.properties_digest {
                update.push("properties changed");
            }
            if a.links_digest != want.links_digest {
                update.push("links changed");
            }
        }
    }
    if existing.applied.is_none() && disk_now != disk_want {
        update.push("persistent disk changed");
    }
    let change = if !recreate.is_empty() {
        Change::Recreate
    } else if update.iter().any(|r| *r != "restart requested") {
        Change::Update
    } else if !update.is_empty() {
        Change::Restart
    } else {
        Change::None
    };
    let reasons = recreate
        .into_iter()
        .chain(update)
        .map(str::to_owned)
        .collect();
    (change, reasons)
}

/// Null and `{}` are the same cloud properties / env.
fn normal(v: &Value) -> Value {
    match v {
        Value::Null => Value::Map(Default::default()),
        other => other.clone(),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    normal(a) == normal(b)
}

/// Folds the rendered-templates comparison into a planned change: the director renders
/// after planning and calls this with the instance's applied `configuration_hash` and the
/// fresh one. A differing hash turns None/Restart into Update ("configuration changed").
pub fn instance_change_with_config(
    change: Change,
    reasons: &mut Vec<String>,
    old_hash: Option<&str>,
    new_hash: &str,
) -> Change {
    if old_hash == Some(new_hash) || change == Change::Create {
        return change;
    }
    reasons.push("configuration changed".into());
    match change {
        Change::None | Change::Restart => Change::Update,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_configuration_hash_updates_an_untouched_instance() {
        let mut reasons = Vec::new();
        let c = instance_change_with_config(Change::None, &mut reasons, Some("a"), "b");
        assert_eq!(c, Change::Update);
        assert_eq!(reasons, ["configuration changed"]);
        let mut reasons = Vec::new();
        let c = instance_change_with_config(Change::None, &mut reasons, Some("b"), "b");
        assert_eq!(c, Change::None);
        assert!(reasons.is_empty());
        let c = instance_change_with_config(Change::Recreate, &mut reasons, None, "b");
        assert_eq!(c, Change::Recreate);
    }
}
