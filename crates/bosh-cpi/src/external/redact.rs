//! Request redaction for logs, as the director does: cloud properties and `env` carry
//! credentials.

use serde_json::{Map, Value};

const REDACTED: &str = "<redacted>";

fn redact_all_but(keys: &[&str], value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if keys.contains(&k.as_str()) {
                        v.clone()
                    } else {
                        REDACTED.into()
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

/// The arguments with secrets replaced, for a log line.
pub fn redact_arguments(method: &str, arguments: &[Value]) -> Vec<Value> {
    let mut args = arguments.to_vec();
    match method {
        "create_vm" => {
            if let Some(cp) = args.get_mut(2) {
                *cp = redact_all_but(&[], cp);
            }
            if let Some(Value::Object(networks)) = args.get_mut(3) {
                for net in networks.values_mut() {
                    if let Some(cp) = net.get_mut("cloud_properties") {
                        *cp = redact_all_but(&[], cp);
                    }
                }
            }
            if let Some(env) = args.get_mut(5) {
                let mut redacted = redact_all_but(&["bosh"], env);
                if let Some(bosh) = redacted.get_mut("bosh") {
                    *bosh = redact_all_but(&["group", "groups", "tags"], bosh);
                }
                *env = redacted;
            }
        }
        "create_disk" => {
            if let Some(cp) = args.get_mut(1) {
                *cp = redact_all_but(&[], cp);
            }
        }
        _ => {}
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_vm_secrets_are_redacted() {
        let args = [
            json!("agent"),
            json!("sc"),
            json!({"key": "secret"}),
            json!({"n": {"ip": "10.0.0.2", "cloud_properties": {"subnet": "s"}}}),
            json!([]),
            json!({"bosh": {"password": "p", "group": "g"}, "other": 1}),
        ];
        let r = redact_arguments("create_vm", &args);
        assert_eq!(r[2], json!({"key": "<redacted>"}));
        assert_eq!(
            r[3],
            json!({"n": {"ip": "10.0.0.2", "cloud_properties": {"subnet": "<redacted>"}}})
        );
        assert_eq!(
            r[5],
            json!({"bosh": {"password": "<redacted>", "group": "g"}, "other": "<redacted>"})
        );
        assert_eq!(
            redact_arguments("delete_vm", &[json!("vm")]),
            vec![json!("vm")]
        );
    }
}
