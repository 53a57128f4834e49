//! The response a CPI writes to stdout, and the director's strict validation of it.

use crate::error_kind::CpiErrorKind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `{result, error, log}`: all three keys are required; `log` is a string (possibly empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = require_every_property)]
pub struct CpiResponse {
    /// Any JSON; `null` on error and for methods without a result.
    pub result: Value,
    /// `null` on success.
    pub error: Option<ResponseError>,
    /// Free-form log text the director appends to the task's CPI log.
    pub log: String,
}

/// The director requires `error` even when null, which schemars would leave optional.
fn require_every_property(schema: &mut schemars::Schema) {
    let keys: Vec<Value> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().map(Value::String).collect())
        .unwrap_or_default();
    schema.insert("required".to_owned(), Value::Array(keys));
}

/// `{type, message, ok_to_retry}`, all three required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResponseError {
    /// A `Bosh::Clouds::*` class name; see [`CpiErrorKind`].
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
    pub ok_to_retry: bool,
}

/// Why a CPI's stdout is not a valid response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseInvalid {
    #[error("Invalid CPI response - ParserError - {0}")]
    Parse(String),
    #[error("Invalid CPI response - SchemaValidationError: {0}")]
    Schema(String),
}

impl CpiResponse {
    pub fn ok(result: Value) -> Self {
        Self {
            result,
            error: None,
            log: String::new(),
        }
    }

    pub fn error(kind: CpiErrorKind, message: impl Into<String>, ok_to_retry: bool) -> Self {
        Self {
            result: Value::Null,
            error: Some(ResponseError {
                error_type: kind.type_name().to_owned(),
                message: message.into(),
                ok_to_retry,
            }),
            log: String::new(),
        }
    }

    /// Parses stdout exactly as strictly as the director: JSON object with `result` (any),
    /// `error` (null or an object with string `type`, string `message`, bool `ok_to_retry`)
    /// and `log` (a string, not null). Extra keys are allowed, as the director allows them.
    pub fn from_slice_strict(stdout: &[u8]) -> Result<Self, ResponseInvalid> {
        let value: Value =
            serde_json::from_slice(stdout).map_err(|e| ResponseInvalid::Parse(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(ResponseInvalid::Schema("Expected instance of Hash".into()));
        };
        let Some(result) = obj.get("result") else {
            return Err(ResponseInvalid::Schema("{ result => Missing key }".into()));
        };
        let error = match obj.get("error") {
            None => return Err(ResponseInvalid::Schema("{ error => Missing key }".into())),
            Some(Value::Null) => None,
            Some(Value::Object(e)) => {
                let field = |name: &str| -> Result<&Value, ResponseInvalid> {
                    e.get(name).ok_or_else(|| {
                        ResponseInvalid::Schema(format!(
                            "{{ error => {{ {name} => Missing key }} }}"
                        ))
                    })
                };
                let error_type = field("type")?.as_str().ok_or_else(|| {
                    ResponseInvalid::Schema(
                        "{ error => { type => Expected instance of String } }".into(),
                    )
                })?;
                let message = field("message")?.as_str().ok_or_else(|| {
                    ResponseInvalid::Schema(
                        "{ error => { message => Expected instance of String } }".into(),
                    )
                })?;
                let ok_to_retry = field("ok_to_retry")?.as_bool().ok_or_else(|| {
                    ResponseInvalid::Schema(
                        "{ error => { ok_to_retry => Expected instance of true or false } }".into(),
                    )
                })?;
                Some(ResponseError {
                    error_type: error_type.to_owned(),
                    message: message.to_owned(),
                    ok_to_retry,
                })
            }
            Some(_) => {
                return Err(ResponseInvalid::Schema(
                    "{ error => Expected null or an error object }".into(),
                ));
            }
        };
        let log = match obj.get("log") {
            None => return Err(ResponseInvalid::Schema("{ log => Missing key }".into())),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ResponseInvalid::Schema(
                    "{ log => Expected instance of String }".into(),
                ));
            }
        };
        Ok(Self {
            result: result.clone(),
            error,
            log,
        })
    }
}

impl ResponseError {
    /// The kind the director raises, after the back-compat mappings; `None` = unknown type.
    pub fn kind(&self) -> Option<CpiErrorKind> {
        CpiErrorKind::classify(&self.error_type, &self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strict(v: Value) -> Result<CpiResponse, ResponseInvalid> {
        CpiResponse::from_slice_strict(v.to_string().as_bytes())
    }

    #[test]
    fn accepts_success_and_error_shapes() {
        let ok = strict(json!({"result": ["vm-1", {}], "error": null, "log": ""})).unwrap();
        assert_eq!(ok.result, json!(["vm-1", {}]));
        assert!(ok.error.is_none());
        let err = strict(json!({"result": null, "log": "x", "extra": 1, "error": {
            "type": "Bosh::Clouds::VMNotFound", "message": "gone", "ok_to_retry": false}}))
        .unwrap();
        let e = err.error.unwrap();
        assert_eq!(e.kind(), Some(CpiErrorKind::VmNotFound));
        assert_eq!(e.message, "gone");
        assert_eq!(err.log, "x");
    }

    #[test]
    fn rejects_what_the_director_rejects() {
        let cases = [
            json!({"result": null, "error": null}),
            json!({"result": null, "error": null, "log": null}),
            json!({"error": null, "log": ""}),
            json!({"result": null, "log": ""}),
            json!({"result": null, "log": "", "error": "boom"}),
            json!({"result": null, "log": "", "error": {"type": "X", "message": "m"}}),
            json!({"result": null, "log": "", "error": {"type": "X", "ok_to_retry": true}}),
            json!({"result": null, "log": "", "error": {"type": 1, "message": "m", "ok_to_retry": true}}),
            json!({"result": null, "log": "", "error": {"type": "X", "message": "m", "ok_to_retry": "no"}}),
            json!([1, 2]),
        ];
        for c in cases {
            assert!(
                matches!(strict(c.clone()), Err(ResponseInvalid::Schema(_))),
                "{c}"
            );
        }
        assert!(matches!(
            CpiResponse::from_slice_strict(b"not json"),
            Err(ResponseInvalid::Parse(_))
        ));
        assert!(matches!(
            CpiResponse::from_slice_strict(b""),
            Err(ResponseInvalid::Parse(_))
        ));
    }

    #[test]
    fn constructors_produce_strictly_valid_json() {
        let r = CpiResponse::error(CpiErrorKind::DiskNotAttached, "no", false);
        let bytes = serde_json::to_vec(&r).unwrap();
        assert_eq!(CpiResponse::from_slice_strict(&bytes).unwrap(), r);
        let bytes = serde_json::to_vec(&CpiResponse::ok(Value::Null)).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"result":null,"error":null,"log":""}"#
        );
    }
}
