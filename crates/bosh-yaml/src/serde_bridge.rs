//! Typed views of YAML values. Decoding goes through `serde_json::Value` so that
//! `serde_path_to_error` can name the failing field; callers map that path back to a line
//! with [`crate::Marks`].

use crate::value::{Mapping, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that did not fit the expected type; `path` is like `instance_groups[0].instances`.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct DecodeError {
    pub path: String,
    pub message: String,
}

/// Decodes a value into `T`, naming the field on failure.
pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, DecodeError> {
    let json = to_json(v);
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        DecodeError {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

/// Encodes `T` as a value; struct fields keep their declaration order.
pub fn to_value<T: Serialize>(t: &T) -> Value {
    let json = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
    from_json(json)
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::String(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| (scalar_key(k), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

fn scalar_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => "null".into(),
        other => crate::to_string(other).trim_end().to_owned(),
    }
}

fn from_json(j: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::String(s),
        J::Array(items) => Value::Seq(items.into_iter().map(from_json).collect()),
        J::Object(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (Value::String(k), from_json(v)))
                .collect::<Mapping>(),
        ),
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        to_json(self).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(from_json)
    }
}
