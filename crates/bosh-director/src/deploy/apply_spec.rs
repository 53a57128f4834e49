//! The apply spec an instance's agent gets (agent-protocol.md §4.1), the network settings of
//! its `create_vm`, and the state recorded for the next plan.

use bosh_cpi_protocol::methods::{Network as CpiNetwork, NetworkType, Networks};
use bosh_planner::{
    AppliedState, ExistingInstance, ExistingVm, InstanceGroupPlan, InstancePlan, NetworkSettings,
    StemcellVersion,
};
use bosh_types::ids::VmCid;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

use super::render::{DNS_DOMAIN, InstanceRendered, JobSource};
use crate::compile::CompiledPackageRef;

/// The archive of an instance's rendered templates, once uploaded.
#[derive(Debug, Clone)]
pub struct ArchiveRef {
    pub blobstore_id: String,
    pub sha1: String,
}

/// Compiled packages by (stemcell name, stemcell version, release, package).
pub type CompiledPackages = HashMap<(String, String, String, String), CompiledPackageRef>;

fn network_json(n: &NetworkSettings) -> Value {
    serde_json::to_value(n).unwrap_or_else(|_| json!({}))
}

/// The full apply spec. `properties` carries only `logging` (all the agent keeps): the other
/// properties are in the rendered templates, and may hold secrets.
pub fn apply_spec_build(
    deployment: &str,
    g: &InstanceGroupPlan,
    i: &InstancePlan,
    sources: &HashMap<(String, String), JobSource>,
    compiled: &CompiledPackages,
    rendered: &InstanceRendered,
    archive: &ArchiveRef,
) -> Value {
    let templates: Vec<Value> = g
        .jobs
        .iter()
        .map(|j| {
            let src = sources.get(&(j.release.clone(), j.name.clone()));
            json!({
                "name": j.name,
                "version": j.version,
                "sha1": j.sha1.clone().or_else(|| src.map(|s| s.sha1.clone())).unwrap_or_default(),
                "blobstore_id": src.map(|s| s.blobstore_id.clone()).unwrap_or_default(),
                "logs": [],
            })
        })
        .collect();
    let first = g.jobs.first();
    let mut packages = Map::new();
    for p in &g.packages {
        let key = (
            g.stemcell.name.clone(),
            g.stemcell.version.clone(),
            p.release.clone(),
            p.name.clone(),
        );
        if let Some(c) = compiled.get(&key) {
            packages.insert(
                p.name.clone(),
                json!({
                    "name": p.name,
                    "version": c.agent_version(),
                    "sha1": c.sha1,
                    "blobstore_id": c.blobstore_id,
                }),
            );
        }
    }
    let networks: Map<String, Value> = i
        .networks
        .iter()
        .map(|(name, n)| (name.clone(), network_json(n)))
        .collect();
    let logging = g
        .jobs
        .iter()
        .find_map(|j| match serde_json::to_value(&j.properties) {
            Ok(Value::Object(m)) => m.get("logging").cloned(),
            _ => None,
        });
    let mut properties = Map::new();
    if let Some(l) = logging {
        properties.insert("logging".into(), l);
    }
    json!({
        "deployment": deployment,
        "job": {
            "name": g.name,
            "templates": templates,
            "template": first.map(|j| j.name.clone()),
            "version": first.map(|j| j.version.clone()),
        },
        "index": i.index,
        "bootstrap": i.bootstrap,
        "name": g.name,
        "id": i.id.to_string(),
        "az": i.az,
        "networks": networks,
        "vm_type": g.vm_type,
        "packages": packages,
        "properties": properties,
        "dns_domain_name": DNS_DOMAIN,
        "configuration_hash": rendered.configuration_hash,
        "template_hashes": rendered.template_hashes,
        "rendered_templates_archive": {
            "blobstore_id": archive.blobstore_id,
            "sha1": archive.sha1,
        },
        "persistent_disk": g.persistent_disk.as_ref().map_or(0, |d| d.size),
    })
}

/// The `create_vm` networks of an instance.
pub fn cpi_networks(i: &InstancePlan) -> Networks {
    let mut out = BTreeMap::new();
    for (name, n) in &i.networks {
        let kind = match n.kind.as_str() {
            "dynamic" => NetworkType::Dynamic,
            "vip" => NetworkType::Vip,
            _ => NetworkType::Manual,
        };
        let cloud_properties = match serde_json::to_value(&n.cloud_properties) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        out.insert(
            name.clone(),
            CpiNetwork {
                network_type: Some(kind),
                ip: n.ip.map(|ip| ip.to_string()),
                netmask: n.netmask.map(|m| m.to_string()),
                gateway: n.gateway.map(|g| g.to_string()),
                prefix: n.prefix.map(|p| json!(p.to_string())),
                dns: Some(n.dns.iter().map(|d| d.to_string()).collect()),
                default: Some(n.default.clone()),
                cloud_properties,
                mac: None,
                preconfigured: None,
                extra: Map::new(),
            },
        );
    }
    out
}

/// What the next plan compares with, once `i` runs on `vm` with `configuration_hash`.
pub fn existing_after_apply(
    g: &InstanceGroupPlan,
    i: &InstancePlan,
    vm: Option<&VmCid>,
    configuration_hash: Option<&str>,
) -> ExistingInstance {
    ExistingInstance {
        group: g.name.clone(),
        id: i.id,
        index: i.index,
        az: i.az.clone(),
        bootstrap: i.bootstrap,
        state: i.state,
        dirty: false,
        vm: vm.map(|cid| ExistingVm {
            cid: cid.clone(),
            stemcell: StemcellVersion {
                name: g.stemcell.name.clone(),
                version: g.stemcell.version.clone(),
            },
            cloud_properties: i.cloud_properties.clone(),
            env: g.env.clone(),
        }),
        networks: i.networks.clone(),
        persistent_disk: None,
        applied: configuration_hash.map(|h| AppliedState {
            configuration_hash: Some(h.to_owned()),
            ..g.applied_state()
        }),
    }
}
