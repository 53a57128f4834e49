//! `stemcell.MF`, the manifest at the root of a stemcell tarball (formats.md §8).

use bosh_yaml::{Mapping, Value};
use serde::{Deserialize, Deserializer, Serialize};

/// Errors from reading `stemcell.MF`.
#[derive(Debug, thiserror::Error)]
pub enum StemcellManifestError {
    #[error("parsing stemcell.MF")]
    Yaml {
        #[source]
        source: bosh_yaml::ParseError,
    },
    #[error("stemcell.MF: expected a YAML map at the top level, got {kind}")]
    NotAMap { kind: &'static str },
    #[error("stemcell.MF: {error}")]
    Decode { error: bosh_yaml::DecodeError },
    #[error("stemcell.MF: missing required field '{field}'")]
    Missing { field: &'static str },
}

/// `stemcell.MF`. Versions are kept as strings even when YAML gives a number.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StemcellManifest {
    #[serde(default, deserialize_with = "opt_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// Missing in very old stemcells; the director then uses `name`.
    #[serde(
        default,
        deserialize_with = "opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub operating_system: Option<String>,
    /// SHA-1 of `image` (of empty input for light stemcells).
    #[serde(default, deserialize_with = "opt_string")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bosh_protocol: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<i64>,
    #[serde(
        default,
        deserialize_with = "string_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub stemcell_formats: Vec<String>,
    #[serde(default, deserialize_with = "null_map")]
    pub cloud_properties: Mapping,
}

/// A validated manifest: the required fields are present.
#[derive(Debug, Clone, PartialEq)]
pub struct StemcellInfo {
    pub name: String,
    pub version: String,
    pub operating_system: String,
    pub sha1: String,
    pub api_version: Option<i64>,
    pub stemcell_formats: Vec<String>,
    pub cloud_properties: Mapping,
}

impl StemcellManifest {
    /// Parses `stemcell.MF` text without requiring fields (see [`Self::validate`]).
    pub fn parse(src: &str) -> Result<Self, StemcellManifestError> {
        let v = bosh_yaml::parse(src).map_err(|source| StemcellManifestError::Yaml { source })?;
        let v = match v {
            Value::Null => Value::Map(Mapping::new()),
            Value::Map(_) => v,
            other => return Err(StemcellManifestError::NotAMap { kind: other.kind() }),
        };
        bosh_yaml::from_value(&v).map_err(|error| StemcellManifestError::Decode { error })
    }

    /// Requires `name`, `version` and `sha1`; `operating_system` defaults to `name`.
    pub fn validate(&self) -> Result<StemcellInfo, StemcellManifestError> {
        let need = |v: &Option<String>, field| match v {
            Some(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(StemcellManifestError::Missing { field }),
        };
        let name = need(&self.name, "name")?;
        let version = need(&self.version, "version")?;
        let sha1 = need(&self.sha1, "sha1")?;
        Ok(StemcellInfo {
            operating_system: self
                .operating_system
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| name.clone()),
            name,
            version,
            sha1,
            api_version: self.api_version,
            stemcell_formats: self.stemcell_formats.clone(),
            cloud_properties: self.cloud_properties.clone(),
        })
    }
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde_json::Value as J;
    match J::deserialize(d)? {
        J::Null => Ok(None),
        J::String(s) => Ok(Some(s)),
        J::Number(n) => Ok(Some(n.to_string())),
        J::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(serde::de::Error::custom("expected a string")),
    }
}

fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde_json::Value as J;
    match J::deserialize(d)? {
        J::Null => Ok(Vec::new()),
        J::Array(items) => items
            .into_iter()
            .map(|i| match i {
                J::String(s) => Ok(s),
                J::Number(n) => Ok(n.to_string()),
                _ => Err(serde::de::Error::custom("expected a list of strings")),
            })
            .collect(),
        _ => Err(serde::de::Error::custom("expected a list of strings")),
    }
}

fn null_map<'de, D: Deserializer<'de>>(d: D) -> Result<Mapping, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Mapping::new()),
        Value::Map(m) => Ok(m),
        other => Err(serde::de::Error::custom(format!(
            "expected a map, got {}",
            other.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_light_stemcell_manifest() {
        let m = StemcellManifest::parse(
            "---\nname: bosh-aws-xen-centos-7-go_agent\nversion: 3001\nbosh_protocol: 1\nsha1: abc\noperating_system: centos-7\nstemcell_formats: [\"aws-raw\",\"dummy\"]\napi_version: 3\ncloud_properties:\n  ami:\n    us-east-1: ami-1\n",
        )
        .unwrap();
        let info = m.validate().unwrap();
        assert_eq!(info.version, "3001");
        assert_eq!(info.operating_system, "centos-7");
        assert_eq!(info.stemcell_formats, ["aws-raw", "dummy"]);
        assert_eq!(info.api_version, Some(3));
        assert!(info.cloud_properties.contains_key(&Value::from("ami")));
    }

    #[test]
    fn missing_fields_are_named_and_os_defaults_to_name() {
        let m = StemcellManifest::parse("name: s\ncloud_properties: {a: 1}\n").unwrap();
        assert!(matches!(
            m.validate(),
            Err(StemcellManifestError::Missing { field: "version" })
        ));
        let m = StemcellManifest::parse("name: s\nversion: '1'\n").unwrap();
        assert!(matches!(
            m.validate(),
            Err(StemcellManifestError::Missing { field: "sha1" })
        ));
        let info = StemcellManifest::parse("name: s\nversion: '1'\nsha1: x\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(info.operating_system, "s");
        assert!(StemcellManifest::parse("- a\n").is_err());
    }
}
