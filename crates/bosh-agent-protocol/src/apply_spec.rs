//! The apply spec as the agent keeps it (§4.1–4.2). Keys the agent does not know are dropped
//! on decode, so they never come back from `get_state`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplySpec {
    /// Only `logging.max_log_file_size` is kept by the real agent; kept opaque here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSpec>,
    /// Always an object on the wire (never null).
    #[serde(default, deserialize_with = "null_as_default")]
    pub packages: BTreeMap<String, PackageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_hash: Option<String>,
    /// Network hashes kept verbatim (plus DHCP-filled `ip`/`netmask`/`gateway`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub networks: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_pool: Map<String, Value>,
    #[serde(default)]
    pub deployment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_disk: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered_templates_archive: Option<BlobRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default)]
    pub version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub templates: Vec<JobTemplateSpec>,
}

/// One release job of the instance; `sha1`/`blobstore_id` are dropped (jobs come only from
/// the rendered templates archive, §10.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JobTemplateSpec {
    pub name: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PackageSpec {
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// A multi-digest string (§2.6).
    #[serde(default)]
    pub sha1: String,
    #[serde(default)]
    pub blobstore_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstore_headers: Option<BTreeMap<String, String>>,
}

/// A blob in the director's blobstore with its (multi-)digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlobRef {
    pub blobstore_id: String,
    pub sha1: String,
}

impl ApplySpec {
    /// Names of the release jobs on this instance, in spec order.
    pub fn job_names(&self) -> Vec<String> {
        self.job
            .as_ref()
            .map(|j| j.templates.iter().map(|t| t.name.clone()).collect())
            .unwrap_or_default()
    }

    /// True when this apply must install jobs and packages (§10.5).
    pub fn has_configuration(&self) -> bool {
        self.configuration_hash
            .as_deref()
            .is_some_and(|h| !h.is_empty())
    }
}

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_are_dropped_and_maps_are_never_null() {
        let spec: ApplySpec = serde_json::from_value(json!({
            "deployment": "cf", "index": 0, "id": "u", "networks": null, "packages": null,
            "dns_domain_name": "bosh", "template_hashes": {"a": "b"},
            "job": {"name": "router", "templates": [{"name": "gorouter", "version": "1", "sha1": "x", "blobstore_id": "y"}]}
        }))
        .unwrap();
        let out = serde_json::to_value(&spec).unwrap();
        assert!(out.get("dns_domain_name").is_none());
        assert_eq!(out["networks"], json!({}));
        assert_eq!(out["packages"], json!({}));
        assert_eq!(
            out["job"]["templates"],
            json!([{"name": "gorouter", "version": "1"}])
        );
        assert_eq!(spec.job_names(), vec!["gorouter"]);
        assert!(!spec.has_configuration());
    }
}
