//! What a template sees: the per-instance template spec (formats.md §7.1), the resolved links
//! of each job (§13) and the numbers the DNS query encoder needs for `link(..).address`.
//!
//! Field order matters: `spec` is built from these structs in declaration order, which is the
//! director's key order, so templates iterating `spec.to_h` see the same sequence.

use indexmap::IndexMap;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// The instance part of the template spec, shared by every job on the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceContext {
    pub deployment: String,
    /// The instance group seen as the old "job" (`spec.job`); `None` for jobless instances.
    pub job: Option<GroupJobSpec>,
    pub index: u32,
    pub bootstrap: bool,
    /// Instance group name (`spec.name`, also the context's `name`).
    pub name: String,
    /// Instance UUID (`spec.id`).
    pub id: String,
    pub az: Option<String>,
    /// `{<net>: {type, ip, netmask, gateway, dns, default, cloud_properties, dns_record_name}}`
    /// as the planner built it (dynamic networks already defaulted to 127.0.0.1).
    pub networks: IndexMap<String, serde_json::Value>,
    /// Always true in the director's spec; templates can read it.
    #[serde(default = "yes")]
    pub properties_need_filtering: bool,
    pub dns_domain_name: String,
    /// Size in MB of the managed persistent disk, 0 without one.
    pub persistent_disk: u64,
    pub address: Option<String>,
    pub ip: Option<String>,
}

fn yes() -> bool {
    true
}

/// The instance group's jobs as the director puts them in `spec.job`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupJobSpec {
    pub name: String,
    pub templates: Vec<GroupJobTemplate>,
}

/// One entry of `spec.job.templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupJobTemplate {
    pub name: String,
    pub version: String,
    pub sha1: String,
    pub blobstore_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<serde_json::Value>,
}

impl Serialize for GroupJobSpec {
    /// Adds the legacy `template`/`version` keys (the first job's), as the director does.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let first = self.templates.first();
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("name", &self.name)?;
        m.serialize_entry("templates", &self.templates)?;
        m.serialize_entry("template", &first.map(|t| &t.name))?;
        m.serialize_entry("version", &first.map(|t| &t.version))?;
        m.end()
    }
}

/// `spec.release`: the release the job comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub name: String,
    pub version: String,
}

/// A resolved consumed link, restricted to the keys the director passes to templates.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkSpec {
    /// Manual links only: the literal answer of `link(..).address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_group: Option<String>,
    pub instances: Vec<LinkInstance>,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_link_dns_names: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_short_dns_addresses: Option<bool>,
}

/// One provider instance in a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkInstance {
    /// Provider instance group name.
    pub name: String,
    pub id: String,
    pub index: u32,
    pub bootstrap: bool,
    pub az: Option<String>,
    /// IP or DNS name, already chosen by link resolution.
    pub address: String,
}

/// A link this job provides on this instance group; listed in `.bosh/links.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidedLink {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    /// The DNS encoder's id for the (link, group, deployment) tuple, as a string.
    pub group: String,
}

/// Numeric ids the director keeps in its database and encodes into DNS queries
/// (`link(..).address(azs: [..])`, short DNS addresses). Missing ids make `address` fail
/// with the director's "Unknown AZ: 'z9'" style message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DnsEncoding {
    #[serde(default)]
    pub az_ids: BTreeMap<String, u64>,
    #[serde(default)]
    pub network_ids: BTreeMap<String, u64>,
    /// Instance UUID → instance number.
    #[serde(default)]
    pub instance_nums: BTreeMap<String, u64>,
    #[serde(default)]
    pub group_ids: Vec<DnsGroup>,
}

/// A `(type, name, deployment) → id` row of the director's encoded groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsGroup {
    /// `instance-group` or `link`.
    #[serde(rename = "type")]
    pub type_: String,
    pub name: String,
    pub deployment: String,
    pub id: u64,
}
