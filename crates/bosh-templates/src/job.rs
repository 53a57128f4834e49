//! A job's template sources (read from a release job directory or an unpacked job archive)
//! and property binding (formats.md §7.3).
//!
//! Defaults: the *caller* applies job-spec defaults before rendering, with
//! [`properties_bind`], exactly as the director binds properties when it plans the
//! deployment. The renderer never looks at the job spec; `p('x', d)` falls back to `d` only
//! when the bound value is still nil (no spec default either), as in the director.

use crate::context::{LinkSpec, ProvidedLink, ReleaseRef};
use crate::render::{JobRender, TemplateSource};
use bosh_types::release::{JobSpec, SpecError};
use indexmap::IndexMap;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Errors reading a job's sources from disk.
#[derive(Debug, thiserror::Error)]
pub enum JobSourceError {
    #[error("reading {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("job spec {path}")]
    Spec {
        path: PathBuf,
        #[source]
        source: SpecError,
    },
}

/// A property that can't be bound: a non-hash value where the dotted name needs a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Property '{name}' expects a hash, but received '{received}'")]
pub struct PropertyBindError {
    /// The dotted property name from the job spec.
    pub name: String,
    /// The Ruby class name of what was found, as the director reports it.
    pub received: &'static str,
}

/// The spec, monit and template sources of one release job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplates {
    pub spec: JobSpec,
    pub monit: String,
    /// Source path under `templates/` → ERB text, in the spec's `templates` order.
    pub sources: IndexMap<String, String>,
}

impl JobTemplates {
    /// Reads `spec` (a release directory's job) or `job.MF` (an unpacked job archive), then
    /// `monit` (empty when absent) and every `templates/<src>` the spec names.
    pub fn from_dir(dir: &Path) -> Result<Self, JobSourceError> {
        let spec_path = ["job.MF", "spec"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .unwrap_or_else(|| dir.join("spec"));
        let spec = JobSpec::parse(&read(&spec_path)?).map_err(|source| JobSourceError::Spec {
            path: spec_path.clone(),
            source,
        })?;
        let monit_path = dir.join("monit");
        let monit = if monit_path.exists() {
            read(&monit_path)?
        } else {
            String::new()
        };
        let mut sources = IndexMap::new();
        for src in spec.templates.keys() {
            sources.insert(src.clone(), read(&dir.join("templates").join(src))?);
        }
        Ok(Self {
            spec,
            monit,
            sources,
        })
    }

    /// The render input for this job with already bound `properties` (see
    /// [`properties_bind`]) and resolved `links`.
    pub fn job_render(
        &self,
        release: ReleaseRef,
        properties: Map<String, Value>,
        links: IndexMap<String, LinkSpec>,
        provided_links: Vec<ProvidedLink>,
    ) -> JobRender {
        let templates = self
            .spec
            .templates
            .iter()
            .map(|(source, destination)| TemplateSource {
                source: source.clone(),
                destination: destination.clone(),
                text: self.sources.get(source).cloned().unwrap_or_default(),
            })
            .collect();
        JobRender {
            name: self.spec.name.clone(),
            release,
            monit: self.monit.clone(),
            templates,
            properties,
            links,
            provided_links,
        }
    }
}

fn read(path: &Path) -> Result<String, JobSourceError> {
    std::fs::read_to_string(path).map_err(|source| JobSourceError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Binds a job's properties as the director does: for every property the job spec declares
/// (dotted name, in spec order) take the raw value, else the spec default (possibly null);
/// hash values get their keys sorted recursively; the result is a nested hash. Undeclared
/// raw properties are dropped.
///
/// `raw` is the job's `properties:` from the manifest when present, else the deep merge of
/// global and instance-group properties (§7.3 step 1, the caller's job).
pub fn properties_bind(
    spec: &JobSpec,
    raw: &Value,
) -> Result<Map<String, Value>, PropertyBindError> {
    let mut bound = Map::new();
    for (name, definition) in &spec.properties {
        let provided = property_lookup_checked(raw, name)?;
        let value = match provided {
            Some(v) if !v.is_null() => v.clone(),
            _ => definition
                .default
                .as_ref()
                .map(|d| serde_json::to_value(d).unwrap_or(Value::Null))
                .unwrap_or(Value::Null),
        };
        property_set(&mut bound, name, keys_sorted(value))?;
    }
    Ok(bound)
}

/// Walks a dotted name, failing on a non-hash on the way like the director's
/// `validate_properties_format`.
fn property_lookup_checked<'a>(
    raw: &'a Value,
    name: &str,
) -> Result<Option<&'a Value>, PropertyBindError> {
    let mut node = raw;
    if node.is_null() {
        return Ok(None);
    }
    for key in name.split('.') {
        let Value::Object(map) = node else {
            return Err(PropertyBindError {
                name: name.to_owned(),
                received: ruby_class(node),
            });
        };
        match map.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(next) => node = next,
        }
    }
    Ok(Some(node))
}

fn property_set(
    dst: &mut Map<String, Value>,
    name: &str,
    value: Value,
) -> Result<(), PropertyBindError> {
    let keys: Vec<&str> = name.split('.').collect();
    let (last, parents) = keys.split_last().unwrap_or((&"", &[]));
    let mut node = dst;
    for key in parents {
        let entry = node
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        // Declaring both `a` (a scalar) and `a.b` can't be represented.
        let received = ruby_class(entry);
        node = entry.as_object_mut().ok_or_else(|| PropertyBindError {
            name: name.to_owned(),
            received,
        })?;
    }
    node.insert((*last).to_owned(), value);
    Ok(())
}

/// Hash keys sorted at every level of nested hashes; arrays are left alone, as the
/// director's `sort_property` does.
fn keys_sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, keys_sorted(v)))
                    .collect(),
            )
        }
        other => other,
    }
}

fn ruby_class(v: &Value) -> &'static str {
    match v {
        Value::Null => "NilClass",
        Value::Bool(true) => "TrueClass",
        Value::Bool(false) => "FalseClass",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Hash",
    }
}
