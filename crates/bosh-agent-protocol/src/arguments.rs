//! Agent-side decoding of positional `arguments` (§2.6).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("Not enough arguments, expected {expected}, got {got}")]
    NotEnough { expected: usize, got: usize },
    #[error("Decoding argument {index}: {message}")]
    Decode { index: usize, message: String },
}

/// A request's positional arguments, decoded with the Go agent's rules: missing required
/// arguments are an error, extra trailing ones are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arguments(Vec<Value>);

impl Arguments {
    pub fn new(values: Vec<Value>) -> Self {
        Arguments(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Fails unless at least `n` arguments were sent.
    pub fn require(&self, n: usize) -> Result<(), ArgumentError> {
        if self.0.len() < n {
            return Err(ArgumentError::NotEnough {
                expected: n,
                got: self.0.len(),
            });
        }
        Ok(())
    }

    /// Argument `index`, required; `expected` is the action's count of required arguments,
    /// used in the error message.
    pub fn get<T: DeserializeOwned>(
        &self,
        index: usize,
        expected: usize,
    ) -> Result<T, ArgumentError> {
        self.require(expected.max(index + 1))?;
        decode(index, self.0[index].clone())
    }

    /// Optional argument `index` (absent or JSON null is `None`).
    pub fn optional<T: DeserializeOwned>(&self, index: usize) -> Result<Option<T>, ArgumentError> {
        match self.0.get(index) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode(index, v.clone()).map(Some),
        }
    }

    /// Like [`Arguments::get`], but object keys match `fields` case-insensitively, as Go's JSON
    /// decoder does for struct fields without an explicit tag.
    pub fn get_folded<T: DeserializeOwned>(
        &self,
        index: usize,
        expected: usize,
        fields: &[&str],
    ) -> Result<T, ArgumentError> {
        self.require(expected.max(index + 1))?;
        decode(index, fold_keys(self.0[index].clone(), fields))
    }
}

fn decode<T: DeserializeOwned>(index: usize, v: Value) -> Result<T, ArgumentError> {
    serde_json::from_value(v).map_err(|e| ArgumentError::Decode {
        index,
        message: e.to_string(),
    })
}

/// Renames top-level keys that equal one of `fields` ignoring ASCII case to that field. An
/// exact match wins over a folded one, as in Go.
pub fn fold_keys(value: Value, fields: &[&str]) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let mut out = Map::new();
    for (k, v) in map {
        let target = fields
            .iter()
            .find(|f| f.eq_ignore_ascii_case(&k))
            .map(|f| f.to_string());
        match target {
            Some(t) if t != k => {
                out.entry(t).or_insert(v);
            }
            Some(t) => {
                out.insert(t, v);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[test]
    fn missing_arguments_are_errors_and_extras_are_ignored() {
        let args = Arguments::new(vec![json!("a"), json!("extra")]);
        assert_eq!(args.get::<String>(0, 1).unwrap(), "a");
        let none = Arguments::new(vec![]);
        assert_eq!(
            none.get::<String>(0, 1).unwrap_err().to_string(),
            "Not enough arguments, expected 1, got 0"
        );
        assert_eq!(args.optional::<String>(5).unwrap(), None);
        assert!(args.get::<u32>(0, 1).is_err());
    }

    #[test]
    fn untagged_fields_match_case_insensitively() {
        #[derive(Deserialize)]
        struct P {
            user: String,
            public_key: String,
        }
        let args = Arguments::new(vec![json!({"User": "u", "PUBLIC_KEY": "k", "junk": 1})]);
        let p: P = args.get_folded(0, 1, &["user", "public_key"]).unwrap();
        assert_eq!((p.user.as_str(), p.public_key.as_str()), ("u", "k"));
    }
}
