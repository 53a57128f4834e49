//! Property binding (formats.md §7.3), cloud-property merging and digests.

use bosh_types::release::JobSpec;
use bosh_yaml::{Mapping, Value};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `over` deep-merged onto `base`: maps merge key by key, anything else in `over` wins.
pub fn deep_merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Map(b), Value::Map(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match out.get(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Map(out)
        }
        (b, Value::Null) => b.clone(),
        (_, o) => o.clone(),
    }
}

/// Later maps overwrite whole top-level keys of earlier ones, as the director merges AZ,
/// vm_type and vm_extension cloud properties (a Ruby `Hash#merge`, not a deep merge).
pub fn shallow_merge<'a>(layers: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut out = Mapping::new();
    for layer in layers {
        if let Value::Map(m) = layer {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Map(out)
}

/// Maps with keys sorted (strings as Ruby sorts them), recursively.
pub fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Map(m) => {
            let mut entries: Vec<(Value, Value)> =
                m.iter().map(|(k, v)| (k.clone(), sort_keys(v))).collect();
            entries.sort_by(|(a, _), (b, _)| match (a, b) {
                (Value::String(x), Value::String(y)) => x.cmp(y),
                _ => a.key_cmp(b),
            });
            Value::Map(entries.into_iter().collect())
        }
        Value::Seq(items) => Value::Seq(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// The value at a dotted name, walking maps; `None` when absent or null.
pub fn lookup<'a>(raw: &'a Value, dotted: &str) -> Option<&'a Value> {
    let mut cur = raw;
    for part in dotted.split('.') {
        cur = cur.as_map()?.get(&Value::from(part))?;
    }
    (!cur.is_null()).then_some(cur)
}

/// Sets `value` at a dotted name, creating maps on the way.
fn set_dotted(out: &mut Value, dotted: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let mut cur = out;
    for (n, part) in parts.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Map(Mapping::new());
        }
        let Value::Map(m) = cur else {
            return Err(format!(
                "property '{dotted}' expects '{}' to be a hash",
                parts[..n].join(".")
            ));
        };
        let key = Value::from(*part);
        if n + 1 == parts.len() {
            m.insert(key, value);
            return Ok(());
        }
        cur = m.entry(key).or_insert(Value::Null);
    }
    Ok(())
}

/// Binds a job's properties: every property the spec declares, from `raw` if set (not
/// null), else the spec default (possibly null); undeclared properties are dropped.
pub fn bind_properties(spec: &JobSpec, raw: &Value) -> Result<Value, String> {
    let mut out = Value::Map(Mapping::new());
    for (name, def) in &spec.properties {
        let v = lookup(raw, name)
            .cloned()
            .or_else(|| def.default.clone())
            .unwrap_or(Value::Null);
        set_dotted(&mut out, name, sort_keys(&v))?;
    }
    Ok(out)
}

/// `sha256:<hex>` over the JSON encoding of `v` (maps in their stored order).
pub fn digest<T: Serialize + ?Sized>(v: &T) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        bosh_yaml::parse(s).unwrap()
    }

    #[test]
    fn deep_merge_keeps_sibling_keys_and_lets_the_override_win() {
        let m = deep_merge(&y("a: {b: 1, c: 2}\nd: 1"), &y("a: {b: 3}\ne: 5"));
        assert_eq!(m, y("a: {b: 3, c: 2}\nd: 1\ne: 5"));
    }

    #[test]
    fn shallow_merge_replaces_whole_top_level_keys() {
        let m = shallow_merge([&y("a: {b: 1, c: 2}"), &y("a: {b: 3}"), &Value::Null]);
        assert_eq!(m, y("a: {b: 3}"));
    }

    #[test]
    fn binding_takes_manifest_values_then_defaults_and_drops_the_rest() {
        let spec = JobSpec::parse(
            "name: j\nproperties:\n  a.b: {default: 1}\n  a.c: {}\n  port: {default: 80}\n",
        )
        .unwrap();
        let bound = bind_properties(&spec, &y("a: {b: 2}\nport: ~\nextra: 1")).unwrap();
        assert_eq!(bound, y("a: {b: 2, c: ~}\nport: 80"));
    }

    #[test]
    fn binding_refuses_a_scalar_where_a_hash_is_needed() {
        let spec = JobSpec::parse("name: j\nproperties:\n  a: {default: 1}\n  a.b: {default: 2}\n")
            .unwrap();
        let err = bind_properties(&spec, &Value::Null).unwrap_err();
        assert!(err.contains("'a.b' expects 'a' to be a hash"), "{err}");
    }
}
