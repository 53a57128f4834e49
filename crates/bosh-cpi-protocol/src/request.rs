//! The request a director writes to a CPI's stdin.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{method, arguments, context, api_version?}`. `arguments` is positional and always
/// present (`[]` for none); `api_version` is omitted on the first `info` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpiRequest {
    pub method: String,
    pub arguments: Vec<Value>,
    pub context: RequestContext,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<u32>,
}

/// The request context: the director's identity, a request id for log correlation, the
/// VM's stemcell API version when the call concerns a VM, and every key of the cpi-config
/// entry's `properties` merged at the top level.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RequestContext {
    /// Mandatory for Ruby CPIs; Go CPIs ignore it.
    #[serde(default)]
    pub director_uuid: String,
    /// `cpi-NNNNNN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmContext>,
    /// cpi-config properties (e.g. IaaS credentials); secrets, never logged.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VmContext {
    pub stemcell: StemcellContext,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StemcellContext {
    /// The stemcell's `stemcell.MF` `api_version`; >= 2 means "full settings in the VM".
    pub api_version: u32,
}

impl CpiRequest {
    /// The request with `context` values from cpi-config replaced by `<redacted>`, for logs.
    /// Argument redaction is method-specific and done by the caller.
    pub fn context_redacted(&self) -> RequestContext {
        let mut ctx = self.context.clone();
        for v in ctx.properties.values_mut() {
            *v = Value::String("<redacted>".to_owned());
        }
        ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_info_request_has_no_api_version_and_merges_properties_into_context() {
        let mut properties = Map::new();
        properties.insert("host".into(), json!("unix:///var/run/docker.sock"));
        let req = CpiRequest {
            method: "info".into(),
            arguments: vec![],
            context: RequestContext {
                director_uuid: "d-1".into(),
                request_id: Some("cpi-123456".into()),
                vm: None,
                properties,
            },
            api_version: None,
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"method": "info", "arguments": [], "context": {
                "director_uuid": "d-1", "request_id": "cpi-123456",
                "host": "unix:///var/run/docker.sock"}})
        );
        assert_eq!(
            req.context_redacted().properties["host"],
            json!("<redacted>")
        );
    }

    #[test]
    fn stemcell_api_version_rides_in_context_vm() {
        let req: CpiRequest = serde_json::from_value(json!({
            "method": "create_vm", "arguments": [1], "api_version": 2,
            "context": {"director_uuid": "x", "vm": {"stemcell": {"api_version": 3}}}
        }))
        .unwrap();
        assert_eq!(req.context.vm.unwrap().stemcell.api_version, 3);
        assert_eq!(req.api_version, Some(2));
        assert!(req.context.properties.is_empty());
    }

    #[test]
    fn arguments_are_mandatory() {
        let err = serde_json::from_value::<CpiRequest>(json!({"method": "info", "context": {}}));
        assert!(err.is_err());
    }
}
