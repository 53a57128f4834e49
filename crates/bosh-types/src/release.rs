//! Release manifests (`release.MF`, formats.md §5.1), job specs (`job.MF` / `jobs/<job>/spec`,
//! §6) and package specs (`packages/<pkg>/spec`, §6.2).
//!
//! Reading is tolerant the way the Go CLI's yaml.v3 decoding is: numeric-looking versions
//! become strings, Ruby-era `!binary` values arrive already decoded by `bosh-yaml`, and
//! keys added later (`packages` on jobs, `no_compression`) may be missing. Writing keeps the
//! Go CLI's key order because `to_value` preserves struct declaration order.

use bosh_yaml::{Mapping, Value};
use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

/// Errors from reading or validating a release manifest, job spec or package spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("parsing {what}")]
    Yaml {
        what: &'static str,
        #[source]
        source: bosh_yaml::ParseError,
    },
    #[error("{what}: {error}")]
    Decode {
        what: &'static str,
        error: bosh_yaml::DecodeError,
    },
    #[error("{what}: expected a YAML map at the top level, got {kind}")]
    NotAMap {
        what: &'static str,
        kind: &'static str,
    },
    /// A field is missing or has the wrong shape; `field` is a path such as `provides[1].name`.
    #[error("{what}: {field}: {message}")]
    Invalid {
        what: &'static str,
        field: String,
        message: String,
    },
}

fn invalid(what: &'static str, field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        what,
        field: field.into(),
        message: message.into(),
    }
}

/// True for names and versions the director accepts: `^[-0-9A-Za-z_+.]+$`.
pub fn is_valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'.'))
}

// ---------------------------------------------------------------------------------------
// Tolerant field decoders

/// Renders a scalar as Go's yaml.v3 would store it into a `string` field.
fn scalar_text(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    match v {
        J::String(s) => Some(s.clone()),
        J::Number(n) => Some(n.to_string()),
        J::Bool(b) => Some(b.to_string()),
        J::Null => Some(String::new()),
        J::Array(_) | J::Object(_) => None,
    }
}

/// Whether `path` in `release.MF` is a string field (or an item of a string list).
fn release_mf_string_field(path: &[bosh_yaml::PathSeg]) -> bool {
    use bosh_yaml::PathSeg::{Index, Key};
    let lists = ["jobs", "packages", "compiled_packages"];
    match path {
        [Key(k)] => matches!(k.as_str(), "name" | "version" | "commit_hash"),
        [Key(l), Key(k)] => {
            l == "license" && matches!(k.as_str(), "version" | "fingerprint" | "sha1")
        }
        [Key(l), Index(_), Key(k)] => {
            lists.contains(&l.as_str())
                && matches!(
                    k.as_str(),
                    "name" | "version" | "fingerprint" | "sha1" | "stemcell"
                )
        }
        [Key(l), Index(_), Key(k), Index(_)] => {
            lists.contains(&l.as_str()) && matches!(k.as_str(), "packages" | "dependencies")
        }
        _ => false,
    }
}

/// A string field that also accepts numbers and booleans (`version: 1` → `"1"`) and null.
fn string_like<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    scalar_text(&v).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a string, got {}", json_kind(&v)))
    })
}

/// A list of strings where null means empty and scalar items are read as text.
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::Null => {
                    Err(serde::de::Error::custom("expected a string, got null"))
                }
                other => scalar_text(other).ok_or_else(|| {
                    serde::de::Error::custom(format!("expected a string, got {}", json_kind(other)))
                }),
            })
            .collect(),
        other => Err(serde::de::Error::custom(format!(
            "expected a list of strings, got {}",
            json_kind(&other)
        ))),
    }
}

/// Any `Default` type where an explicit null means the default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value as J;
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "a list",
        J::Object(_) => "a map",
    }
}

fn parse_top_map(src: &str, what: &'static str) -> Result<Value, SpecError> {
    let v = bosh_yaml::parse(src).map_err(|source| SpecError::Yaml { what, source })?;
    match v {
        Value::Map(_) => Ok(v),
        // An empty document decodes to an empty struct in Go; keep that so field checks report.
        Value::Null => Ok(Value::Map(Mapping::new())),
        other => Err(SpecError::NotAMap {
            what,
            kind: other.kind(),
        }),
    }
}

// ---------------------------------------------------------------------------------------
// release.MF

/// `release.MF`. Field order is the order the Go CLI writes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReleaseManifest {
    #[serde(default, deserialize_with = "string_like")]
    pub name: String,
    #[serde(default, deserialize_with = "string_like")]
    pub version: String,
    #[serde(default, deserialize_with = "string_like")]
    pub commit_hash: String,
    #[serde(default, deserialize_with = "null_default")]
    pub uncommitted_changes: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub jobs: Vec<JobRef>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub packages: Vec<PackageRef>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub compiled_packages: Vec<CompiledPackageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseRef>,
    #[serde(default, deserialize_with = "null_default")]
    pub no_compression: bool,
}

/// One `jobs[]` entry of `release.MF`; `sha1` is a digest string of `jobs/<name>.tgz`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobRef {
    #[serde(default, deserialize_with = "string_like")]
    pub name: String,
    #[serde(default, deserialize_with = "string_like")]
    pub version: String,
    #[serde(default, deserialize_with = "string_like")]
    pub fingerprint: String,
    #[serde(default, deserialize_with = "string_like")]
    pub sha1: String,
    /// Package names from the job spec (added in 2019; old manifests lack it).
    #[serde(default, deserialize_with = "string_list")]
    pub packages: Vec<String>,
}

/// One `packages[]` entry of `release.MF`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PackageRef {
    #[serde(default, deserialize_with = "string_like")]
    pub name: String,
    #[serde(default, deserialize_with = "string_like")]
    pub version: String,
    #[serde(default, deserialize_with = "string_like")]
    pub fingerprint: String,
    #[serde(default, deserialize_with = "string_like")]
    pub sha1: String,
    #[serde(default, deserialize_with = "string_list")]
    pub dependencies: Vec<String>,
}

/// One `compiled_packages[]` entry; `stemcell` is `<os>/<stemcell version>`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompiledPackageRef {
    #[serde(default, deserialize_with = "string_like")]
    pub name: String,
    #[serde(default, deserialize_with = "string_like")]
    pub version: String,
    #[serde(default, deserialize_with = "string_like")]
    pub fingerprint: String,
    #[serde(default, deserialize_with = "string_like")]
    pub sha1: String,
    #[serde(default, deserialize_with = "string_like")]
    pub stemcell: String,
    #[serde(default, deserialize_with = "string_list")]
    pub dependencies: Vec<String>,
}

impl CompiledPackageRef {
    /// The stemcell OS and version from `stemcell: os/version`, if well formed.
    pub fn stemcell_os_version(&self) -> Option<(&str, &str)> {
        self.stemcell
            .split_once('/')
            .filter(|(os, v)| !os.is_empty() && !v.is_empty())
    }
}

/// `license:` of `release.MF` (no name; the archive is `license.tgz`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LicenseRef {
    #[serde(default, deserialize_with = "string_like")]
    pub version: String,
    #[serde(default, deserialize_with = "string_like")]
    pub fingerprint: String,
    #[serde(default, deserialize_with = "string_like")]
    pub sha1: String,
}

impl ReleaseManifest {
    const WHAT: &'static str = "release.MF";

    /// Parses `release.MF` text without checking its content (see [`Self::validate`]).
    pub fn parse(src: &str) -> Result<Self, SpecError> {
        let (v, marks) = bosh_yaml::parse_marked(src).map_err(|source| SpecError::Yaml {
            what: Self::WHAT,
            source,
        })?;
        let v = match v {
            // An empty document decodes to an empty struct in Go.
            Value::Null => Value::Map(Mapping::new()),
            Value::Map(_) => v,
            other => {
                return Err(SpecError::NotAMap {
                    what: Self::WHAT,
                    kind: other.kind(),
                });
            }
        };
        Self::from_yaml_marked(&v, &marks)
    }

    /// Decodes a parsed `release.MF`, reading number-like scalars of string fields
    /// (`commit_hash: 50e58513`, `version: 1.10`) as their source text, as yaml.v2 does.
    pub fn from_yaml_marked(v: &Value, marks: &bosh_yaml::Marks) -> Result<Self, SpecError> {
        let mut v = v.clone();
        marks.strings_restore(&mut v, &release_mf_string_field);
        Self::from_yaml(&v)
    }

    /// Decodes an already parsed `release.MF`.
    pub fn from_yaml(v: &Value) -> Result<Self, SpecError> {
        bosh_yaml::from_value(v).map_err(|error| SpecError::Decode {
            what: Self::WHAT,
            error,
        })
    }

    /// The manifest as YAML, keys in the Go CLI's order.
    pub fn to_yaml(&self) -> String {
        bosh_yaml::to_string(&bosh_yaml::to_value(self))
    }

    /// A compiled release lists `compiled_packages`.
    pub fn is_compiled(&self) -> bool {
        !self.compiled_packages.is_empty()
    }

    /// Checks what the director checks before trusting a manifest: a name and version,
    /// identifier-safe names, no duplicate job/package names, and known dependencies without
    /// cycles (among `packages`, and among `compiled_packages`).
    pub fn validate(&self) -> Result<(), SpecError> {
        let what = Self::WHAT;
        if self.name.is_empty() {
            return Err(invalid(what, "name", "missing release name"));
        }
        if !is_valid_identifier(&self.name) {
            return Err(invalid(
                what,
                "name",
                format!("invalid release name '{}'", self.name),
            ));
        }
        if self.version.is_empty() {
            return Err(invalid(what, "version", "missing release version"));
        }
        if !is_valid_identifier(&self.version) {
            return Err(invalid(
                what,
                "version",
                format!("invalid release version '{}'", self.version),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, job) in self.jobs.iter().enumerate() {
            check_ref(
                what,
                &format!("jobs[{i}]"),
                &job.name,
                &job.version,
                &job.sha1,
            )?;
            if !seen.insert(job.name.as_str()) {
                return Err(invalid(
                    what,
                    format!("jobs[{i}].name"),
                    format!("duplicate job '{}'", job.name),
                ));
            }
        }
        let pkgs: Vec<(&str, &[String])> = self
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.dependencies.as_slice()))
            .collect();
        for (i, p) in self.packages.iter().enumerate() {
            check_ref(
                what,
                &format!("packages[{i}]"),
                &p.name,
                &p.version,
                &p.sha1,
            )?;
        }
        check_package_graph(what, "packages", &pkgs)?;
        let compiled: Vec<(&str, &[String])> = self
            .compiled_packages
            .iter()
            .map(|p| (p.name.as_str(), p.dependencies.as_slice()))
            .collect();
        for (i, p) in self.compiled_packages.iter().enumerate() {
            let field = format!("compiled_packages[{i}]");
            check_ref(what, &field, &p.name, &p.version, &p.sha1)?;
            if p.stemcell_os_version().is_none() {
                return Err(invalid(
                    what,
                    format!("{field}.stemcell"),
                    format!("expected '<os>/<version>', got '{}'", p.stemcell),
                ));
            }
        }
        check_package_graph(what, "compiled_packages", &compiled)?;
        if let Some(l) = &self.license
            && l.sha1.is_empty()
        {
            return Err(invalid(what, "license.sha1", "missing archive digest"));
        }
        Ok(())
    }
}

fn check_ref(
    what: &'static str,
    field: &str,
    name: &str,
    version: &str,
    sha1: &str,
) -> Result<(), SpecError> {
    if !is_valid_identifier(name) {
        return Err(invalid(
            what,
            format!("{field}.name"),
            format!("invalid name '{name}'"),
        ));
    }
    if !is_valid_identifier(version) {
        return Err(invalid(
            what,
            format!("{field}.version"),
            format!("invalid version '{version}' of '{name}'"),
        ));
    }
    if sha1.is_empty() {
        return Err(invalid(
            what,
            format!("{field}.sha1"),
            format!("missing archive digest of '{name}'"),
        ));
    }
    Ok(())
}

/// Duplicate names, unknown dependencies and dependency cycles among packages.
/// `list` names the manifest key (`packages` or `compiled_packages`) for error paths.
pub fn check_package_graph(
    what: &'static str,
    list: &str,
    pkgs: &[(&str, &[String])],
) -> Result<(), SpecError> {
    let mut index: IndexMap<&str, usize> = IndexMap::new();
    for (i, (name, _)) in pkgs.iter().enumerate() {
        if index.insert(name, i).is_some() {
            return Err(invalid(
                what,
                format!("{list}[{i}].name"),
                format!("duplicate package '{name}'"),
            ));
        }
    }
    for (i, (name, deps)) in pkgs.iter().enumerate() {
        for dep in deps.iter() {
            if !index.contains_key(dep.as_str()) {
                return Err(invalid(
                    what,
                    format!("{list}[{i}].dependencies"),
                    format!("package '{name}' depends on unknown package '{dep}'"),
                ));
            }
        }
    }
    // Depth-first search with colours; iterative so hostile inputs cannot overflow the stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; pkgs.len()];
    for start in 0..pkgs.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = pkgs[node].1;
            if *next < deps.len() {
                let dep = deps[*next].as_str();
                *next += 1;
                let Some(&d) = index.get(dep) else { continue };
                match marks[d] {
                    Mark::Active => {
                        let mut cycle: Vec<&str> = stack
                            .iter()
                            .skip_while(|(n, _)| *n != d)
                            .map(|(n, _)| pkgs[*n].0)
                            .collect();
                        cycle.push(pkgs[d].0);
                        return Err(invalid(
                            what,
                            list.to_string(),
                            format!("dependency cycle: {}", cycle.join(" -> ")),
                        ));
                    }
                    Mark::New => {
                        marks[d] = Mark::Active;
                        stack.push((d, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Job spec

/// A job spec (`jobs/<job>/spec`, stored verbatim as `job.MF` in the job archive).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobSpec {
    #[serde(default, deserialize_with = "string_like")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Source under `templates/` → destination under `/var/vcap/jobs/<job>/`.
    #[serde(default, deserialize_with = "null_default")]
    pub templates: IndexMap<String, String>,
    #[serde(default, deserialize_with = "string_list")]
    pub packages: Vec<String>,
    /// Keyed by dotted property name.
    #[serde(default, deserialize_with = "null_default")]
    pub properties: IndexMap<String, PropertyDefinition>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub consumes: Vec<LinkConsumes>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub provides: Vec<LinkProvides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Value>,
}

/// A job property definition; `default` is the only field the director uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PropertyDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Value>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Free-form extras (`env`, …), kept in order.
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

/// A `consumes[]` link.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkConsumes {
    #[serde(deserialize_with = "string_like")]
    pub name: String,
    #[serde(rename = "type", deserialize_with = "string_like")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_default")]
    pub optional: bool,
}

/// A `provides[]` link; `properties` are dotted names exported through it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LinkProvides {
    #[serde(deserialize_with = "string_like")]
    pub name: String,
    #[serde(rename = "type", deserialize_with = "string_like")]
    pub type_: String,
    #[serde(
        default,
        deserialize_with = "string_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub properties: Vec<String>,
}

impl JobSpec {
    const WHAT: &'static str = "job spec";

    /// Parses and validates a job spec (§5.6 shape rules: `packages` a list, `properties`
    /// and `logs` maps, links lists of maps with `name` and `type`, no duplicate link names,
    /// no `optional` on provides).
    pub fn parse(src: &str) -> Result<Self, SpecError> {
        let v = parse_top_map(src, Self::WHAT)?;
        Self::from_yaml(&v)
    }

    /// Validates the shape of an already parsed job spec and decodes it.
    pub fn from_yaml(v: &Value) -> Result<Self, SpecError> {
        let what = Self::WHAT;
        let Some(map) = v.as_map() else {
            return Err(SpecError::NotAMap {
                what,
                kind: v.kind(),
            });
        };
        let get = |k: &str| map.get(&Value::from(k)).filter(|v| !v.is_null());
        match get("name") {
            None => return Err(invalid(what, "name", "missing job name")),
            Some(Value::String(s)) if is_valid_identifier(s) => {}
            Some(other) => {
                return Err(invalid(
                    what,
                    "name",
                    format!("invalid job name {}", describe(other)),
                ));
            }
        }
        if let Some(t) = get("templates") {
            let Some(t) = t.as_map() else {
                return Err(invalid(
                    what,
                    "templates",
                    format!("expected a map, got {}", t.kind()),
                ));
            };
            for (k, v) in t {
                if k.as_str().is_none() || v.as_str().is_none() {
                    return Err(invalid(
                        what,
                        "templates",
                        "expected a map of source path to destination path",
                    ));
                }
            }
        }
        if let Some(p) = get("packages")
            && p.as_seq().is_none()
        {
            return Err(invalid(
                what,
                "packages",
                format!("expected a list, got {}", p.kind()),
            ));
        }
        for key in ["properties", "logs"] {
            if let Some(p) = get(key)
                && p.as_map().is_none()
            {
                return Err(invalid(
                    what,
                    key,
                    format!("expected a map, got {}", p.kind()),
                ));
            }
        }
        for key in ["consumes", "provides"] {
            let Some(list) = get(key) else { continue };
            let Some(items) = list.as_seq() else {
                return Err(invalid(
                    what,
                    key,
                    format!("expected a list, got {}", list.kind()),
                ));
            };
            let mut names = std::collections::HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let field = format!("{key}[{i}]");
                let Some(m) = item.as_map() else {
                    return Err(invalid(
                        what,
                        field,
                        format!("expected a map, got {}", item.kind()),
                    ));
                };
                for req in ["name", "type"] {
                    if m.get(&Value::from(req)).is_none_or(Value::is_null) {
                        return Err(invalid(
                            what,
                            format!("{field}.{req}"),
                            format!("missing link {req}"),
                        ));
                    }
                }
                if key == "provides" && m.contains_key(&Value::from("optional")) {
                    return Err(invalid(
                        what,
                        format!("{field}.optional"),
                        "'optional' is not allowed on provided links",
                    ));
                }
                let name = m
                    .get(&Value::from("name"))
                    .map(describe)
                    .unwrap_or_default();
                if !names.insert(name.clone()) {
                    return Err(invalid(
                        what,
                        format!("{field}.name"),
                        format!("duplicate link name {name}"),
                    ));
                }
            }
        }
        bosh_yaml::from_value(v).map_err(|error| SpecError::Decode { what, error })
    }

    /// A job is an errand when some template renders to `bin/run` or `bin/run.ps1`.
    pub fn is_errand(&self) -> bool {
        self.templates
            .values()
            .any(|dst| dst == "bin/run" || dst == "bin/run.ps1")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => bosh_yaml::to_string(other).trim_end().to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Package spec

/// A package spec (`packages/<pkg>/spec`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PackageSpec {
    #[serde(default, deserialize_with = "string_like")]
    pub name: String,
    #[serde(default, deserialize_with = "string_list")]
    pub dependencies: Vec<String>,
    /// Globs relative to `src/` (or `blobs/`).
    #[serde(default, deserialize_with = "string_list")]
    pub files: Vec<String>,
    #[serde(
        default,
        deserialize_with = "string_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_files: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub no_compression: bool,
}

impl PackageSpec {
    const WHAT: &'static str = "package spec";

    /// Parses a package spec and checks its name and dependency names.
    pub fn parse(src: &str) -> Result<Self, SpecError> {
        let v = parse_top_map(src, Self::WHAT)?;
        let spec: Self = bosh_yaml::from_value(&v).map_err(|error| SpecError::Decode {
            what: Self::WHAT,
            error,
        })?;
        if spec.name.is_empty() {
            return Err(invalid(Self::WHAT, "name", "missing package name"));
        }
        if !is_valid_identifier(&spec.name) {
            return Err(invalid(
                Self::WHAT,
                "name",
                format!("invalid package name '{}'", spec.name),
            ));
        }
        for (i, d) in spec.dependencies.iter().enumerate() {
            if !is_valid_identifier(d) {
                return Err(invalid(
                    Self::WHAT,
                    format!("dependencies[{i}]"),
                    format!("invalid package name '{d}'"),
                ));
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = format!(
            "{}/../../../shared/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {p}: {e}"))
    }

    #[test]
    fn number_like_string_fields_keep_their_source_text() {
        // `sha1_release.tgz` (upstream fixtures) has `commit_hash: 50e58513`: a float to
        // YAML 1.1, but yaml.v2 and Ruby keep the text for a string field.
        let src = "name: r\nversion: 1.10\ncommit_hash: 50e58513\nuncommitted_changes: false\n\
                   jobs:\n- name: j\n  version: 0x1F\n  fingerprint: 1e5\n  sha1: 123\n  \
                   packages: [2.50, p]\nlicense:\n  version: 007\n  fingerprint: f\n  sha1: \"9\"\n";
        let m = ReleaseManifest::parse(src).unwrap();
        assert_eq!(m.commit_hash, "50e58513");
        assert_eq!(m.version, "1.10");
        assert!(!m.uncommitted_changes);
        assert_eq!(m.jobs[0].version, "0x1F");
        assert_eq!(m.jobs[0].fingerprint, "1e5");
        assert_eq!(m.jobs[0].sha1, "123");
        assert_eq!(m.jobs[0].packages, ["2.50", "p"]);
        let license = m.license.unwrap();
        assert_eq!(
            (license.version.as_str(), license.sha1.as_str()),
            ("007", "9")
        );
    }

    #[test]
    fn release_manifest_round_trips_reference_output_byte_for_byte() {
        for f in [
            "kv-release-expected/release-1.0.0.MF",
            "kv-release-expected/release-0+dev.1.MF",
        ] {
            let src = fixture(f);
            let m = ReleaseManifest::parse(&src).expect(f);
            m.validate().expect(f);
            assert_eq!(m.to_yaml(), src, "{f}");
        }
    }

    #[test]
    fn release_manifest_reads_numeric_versions_and_old_layouts() {
        let m = ReleaseManifest::parse(
            "name: r\nversion: 12\njobs:\n- name: j\n  version: 3\n  fingerprint: 3\n  sha1: abc\n",
        )
        .unwrap();
        assert_eq!(m.version, "12");
        assert_eq!(m.jobs[0].version, "3");
        assert!(m.jobs[0].packages.is_empty());
        assert!(!m.no_compression);
        m.validate().unwrap();
    }

    #[test]
    fn release_manifest_decodes_ruby_binary_values() {
        // base64 of "abc123"
        let m = ReleaseManifest::parse(
            "name: r\nversion: '1'\npackages:\n- name: p\n  version: !binary |-\n    YWJjMTIz\n  fingerprint: x\n  sha1: !binary |-\n    YWJjMTIz\n  dependencies: []\n",
        )
        .unwrap();
        assert_eq!(m.packages[0].version, "abc123");
        assert_eq!(m.packages[0].sha1, "abc123");
    }

    #[test]
    fn release_manifest_validation_names_the_problem() {
        let base = "name: r\nversion: '1'\npackages:\n- {name: a, version: '1', fingerprint: f, sha1: s, dependencies: [b]}\n- {name: b, version: '1', fingerprint: f, sha1: s, dependencies: [a]}\n";
        let e = ReleaseManifest::parse(base)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("dependency cycle: a -> b -> a"), "{e}");
        let e = ReleaseManifest::parse(&base.replace("[a]", "[zz]"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("packages[1].dependencies") && e.contains("'zz'"),
            "{e}"
        );
        let e = ReleaseManifest::parse("version: '1'\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("name"), "{e}");
        let e = ReleaseManifest::parse("name: x\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("version"), "{e}");
    }

    #[test]
    fn job_spec_reads_fixture_specs() {
        let spec = JobSpec::parse(&fixture("kv-release-expected/job-kv-server.MF")).unwrap();
        assert_eq!(spec.name, "kv-server");
        assert_eq!(spec.packages, ["kvserver", "kvtools"]);
        assert_eq!(
            spec.templates.get("ctl.erb").map(String::as_str),
            Some("bin/ctl")
        );
        assert_eq!(
            spec.properties["port"]
                .default
                .as_ref()
                .and_then(Value::as_i64),
            Some(7000)
        );
        assert!(spec.properties["admin.password"].default.is_none());
        assert_eq!(spec.provides[0].properties, ["port"]);
        assert!(spec.consumes[0].optional);
        assert!(!spec.is_errand());
        let smoke = JobSpec::parse(&fixture("kv-release-expected/job-kv-smoke.MF")).unwrap();
        assert!(smoke.is_errand());
    }

    #[test]
    fn job_spec_shape_errors_name_the_field() {
        let cases = [
            ("templates: {}\n", "name"),
            ("name: j\npackages: x\n", "packages"),
            ("name: j\nproperties: [a]\n", "properties"),
            ("name: j\nlogs: [a]\n", "logs"),
            ("name: j\nprovides: [{name: a}]\n", "provides[0].type"),
            (
                "name: j\nprovides: [{name: a, type: t, optional: true}]\n",
                "provides[0].optional",
            ),
            (
                "name: j\nconsumes: [{name: a, type: t}, {name: a, type: u}]\n",
                "consumes[1].name",
            ),
            ("name: j\nconsumes: {name: a}\n", "consumes"),
        ];
        for (src, field) in cases {
            match JobSpec::parse(src) {
                Err(SpecError::Invalid { field: f, .. }) => assert_eq!(f, field, "{src}"),
                other => panic!("{src}: expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn package_spec_reads_fixture_specs() {
        let dir = format!(
            "{}/../../../shared/fixtures/kv-release/packages",
            env!("CARGO_MANIFEST_DIR")
        );
        let tools =
            PackageSpec::parse(&std::fs::read_to_string(format!("{dir}/kvtools/spec")).unwrap())
                .unwrap();
        assert_eq!(tools.name, "kvtools");
        assert_eq!(tools.dependencies, ["kvlib"]);
        assert_eq!(tools.files, ["tools/tool.txt"]);
        assert!(PackageSpec::parse("dependencies: []\n").is_err());
        assert!(PackageSpec::parse("name: 'a b'\n").is_err());
    }
}
