//! Validation errors, and the reader the config parsers share: it walks a parsed YAML tree,
//! collects every problem (not just the first) with a BOSH-style selector path such as
//! `instance_groups[name=kv].networks[0].name`, and looks up the line of the offending node.

use bosh_yaml::{Mapping, Marks, Path, Value};
use std::fmt;

/// One problem in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Selector path of the offending node (`instance_groups[name=kv].instances`); empty for
    /// the document itself.
    pub path: String,
    /// 1-based line of the node, or of its nearest ancestor, when the YAML gave one.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Every problem found in a document, in document order; displayed one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, ValidationError> {
        self.0.iter()
    }
    /// The first error at exactly `path`, handy in tests and for callers that match on one.
    pub fn at(&self, path: &str) -> Option<&ValidationError> {
        self.0.iter().find(|e| e.path == path)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.0.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The line marks of the document a model was parsed from, kept so that checks made later
/// (against another document) can still name lines. Not part of the model's value: two
/// models are equal whatever their source lines.
#[derive(Debug, Clone, Default)]
pub struct SourceLines(Option<Marks>);

impl SourceLines {
    pub(crate) fn new(marks: Marks) -> Self {
        Self(Some(marks))
    }
    pub(crate) fn line_of(&self, loc: &Loc) -> Option<usize> {
        self.0.as_ref()?.line_of(&loc.yaml())
    }
    /// The 1-based line of the node at `path`, when the source gave marks.
    pub fn line_of_path(&self, path: &Path) -> Option<usize> {
        self.0.as_ref()?.line_of(path)
    }
}

impl PartialEq for SourceLines {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    /// A list item picked by a unique identifying field, shown as `[name=kv]`.
    Named {
        index: usize,
        field: &'static str,
        value: String,
    },
}

/// A node location: displays as a selector, converts to the index path marks are keyed by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Loc(Vec<Seg>);

impl Loc {
    pub(crate) fn root() -> Self {
        Loc(Vec::new())
    }
    pub(crate) fn key(&self, k: &str) -> Loc {
        let mut l = self.clone();
        l.0.push(Seg::Key(k.to_owned()));
        l
    }
    pub(crate) fn index(&self, i: usize) -> Loc {
        let mut l = self.clone();
        l.0.push(Seg::Index(i));
        l
    }
    pub(crate) fn named(&self, index: usize, field: &'static str, value: &str) -> Loc {
        let mut l = self.clone();
        l.0.push(Seg::Named {
            index,
            field,
            value: value.to_owned(),
        });
        l
    }
    pub(crate) fn yaml(&self) -> Path {
        let mut p = Path::root();
        for seg in &self.0 {
            p = match seg {
                Seg::Key(k) => p.key(k.clone()),
                Seg::Index(i) | Seg::Named { index: i, .. } => p.index(*i),
            };
        }
        p
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if n == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Named { field, value, .. } => write!(f, "[{field}={value}]")?,
            }
        }
        Ok(())
    }
}

/// A whole-value `((placeholder))`: the director interpolates it later, so its type is not
/// known yet and must not be reported as wrong.
pub(crate) fn is_placeholder(v: &Value) -> bool {
    match v {
        Value::String(s) => {
            let t = s.trim();
            t.len() > 4
                && t.starts_with("((")
                && t.ends_with("))")
                && !t[2..t.len() - 2].contains("((")
        }
        _ => false,
    }
}

/// What a typed read found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field<T> {
    Absent,
    Present(T),
    /// A `((placeholder))` (or a value already reported as wrong): present, but unknown.
    Unknown,
}

impl<T> Field<T> {
    pub(crate) fn ok(self) -> Option<T> {
        match self {
            Field::Present(t) => Some(t),
            _ => None,
        }
    }
    pub(crate) fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }
}

/// Short rendering of a scalar for messages.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Seq(_) => "an array".into(),
        Value::Map(_) => "a map".into(),
    }
}

/// Collects errors for one document.
pub(crate) struct Doc {
    lines: SourceLines,
    pub(crate) errors: Vec<ValidationError>,
}

impl Doc {
    pub(crate) fn new(marks: Marks) -> Self {
        Doc {
            lines: SourceLines::new(marks),
            errors: Vec::new(),
        }
    }
    /// A checker for a model that was parsed earlier (cross-document checks).
    pub(crate) fn with_lines(lines: SourceLines) -> Self {
        Doc {
            lines,
            errors: Vec::new(),
        }
    }
    pub(crate) fn lines(&self) -> SourceLines {
        self.lines.clone()
    }

    pub(crate) fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        let line = self.lines.line_of(loc);
        self.errors.push(ValidationError {
            path: loc.to_string(),
            line,
            message: message.into(),
        });
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(self.errors))
        }
    }

    /// Parses YAML text, turning a syntax error into a one-item error list.
    pub(crate) fn parse(src: &str) -> Result<(Value, Doc), ValidationErrors> {
        match bosh_yaml::parse_marked(src) {
            Ok((v, marks)) => Ok((v, Doc::new(marks))),
            Err(e) => Err(ValidationErrors(vec![ValidationError {
                path: String::new(),
                line: Some(e.line),
                message: format!("invalid YAML: {}", e.message),
            }])),
        }
    }

    fn type_error(&mut self, loc: &Loc, expected: &str, v: &Value) {
        self.error(
            loc,
            format!("expected {expected}, got {} {}", v.kind(), show(v)),
        );
    }

    /// The node as a map; reports it otherwise (placeholders pass silently).
    pub(crate) fn map<'v>(&mut self, v: &'v Value, loc: &Loc) -> Option<&'v Mapping> {
        match v {
            Value::Map(m) => Some(m),
            v if is_placeholder(v) => None,
            v => {
                self.type_error(loc, "a map", v);
                None
            }
        }
    }

    /// A key's value; YAML null counts as absent, as for an empty `key:` line.
    pub(crate) fn get<'v>(m: Option<&'v Mapping>, key: &str) -> Option<&'v Value> {
        m?.get(&Value::String(key.to_owned()))
            .filter(|v| !v.is_null())
    }

    pub(crate) fn has(m: Option<&Mapping>, key: &str) -> bool {
        Self::get(m, key).is_some()
    }

    fn missing(&mut self, loc: &Loc, key: &str) {
        self.error(&loc.key(key), "is required");
    }

    /// A string; numbers are accepted and converted, as the director does.
    pub(crate) fn string(&mut self, m: Option<&Mapping>, loc: &Loc, key: &str) -> Field<String> {
        match Self::get(m, key) {
            None => Field::Absent,
            Some(Value::String(s)) => Field::Present(s.clone()),
            Some(Value::Int(i)) => Field::Present(i.to_string()),
            Some(Value::Float(f)) => Field::Present(f.to_string()),
            Some(v) => {
                self.type_error(&loc.key(key), "a string", v);
                Field::Unknown
            }
        }
    }

    pub(crate) fn req_string(&mut self, m: Option<&Mapping>, loc: &Loc, key: &str) -> String {
        match self.string(m, loc, key) {
            Field::Present(s) => s,
            Field::Absent => {
                if m.is_some() {
                    self.missing(loc, key);
                }
                String::new()
            }
            Field::Unknown => String::new(),
        }
    }

    pub(crate) fn opt_string(
        &mut self,
        m: Option<&Mapping>,
        loc: &Loc,
        key: &str,
    ) -> Option<String> {
        self.string(m, loc, key).ok()
    }

    /// An integer within `min..=max`.
    pub(crate) fn int(
        &mut self,
        m: Option<&Mapping>,
        loc: &Loc,
        key: &str,
        min: i64,
        max: i64,
    ) -> Field<i64> {
        match Self::get(m, key) {
            None => Field::Absent,
            Some(v) if is_placeholder(v) => Field::Unknown,
            Some(Value::Int(i)) if (min..=max).contains(i) => Field::Present(*i),
            Some(Value::Int(i)) => {
                let msg = if *i < min {
                    format!("must be at least {min}, got {i}")
                } else {
                    format!("must be at most {max}, got {i}")
                };
                self.error(&loc.key(key), msg);
                Field::Unknown
            }
            Some(v) => {
                self.type_error(&loc.key(key), "an integer", v);
                Field::Unknown
            }
        }
    }

    pub(crate) fn req_int(
        &mut self,
        m: Option<&Mapping>,
        loc: &Loc,
        key: &str,
        min: i64,
        max: i64,
    ) -> Field<i64> {
        let f = self.int(m, loc, key, min, max);
        if f.is_absent() && m.is_some() {
            self.missing(loc, key);
        }
        f
    }

    pub(crate) fn bool(&mut self, m: Option<&Mapping>, loc: &Loc, key: &str) -> Option<bool> {
        match Self::get(m, key) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) if is_placeholder(v) => None,
            Some(v) => {
                self.type_error(&loc.key(key), "a boolean", v);
                None
            }
        }
    }

    /// A list; `Absent` when missing, `Unknown` for a placeholder or a wrong type.
    pub(crate) fn seq<'v>(
        &mut self,
        m: Option<&'v Mapping>,
        loc: &Loc,
        key: &str,
    ) -> Field<&'v Vec<Value>> {
        match Self::get(m, key) {
            None => Field::Absent,
            Some(Value::Seq(s)) => Field::Present(s),
            Some(v) if is_placeholder(v) => Field::Unknown,
            Some(v) => {
                self.type_error(&loc.key(key), "an array", v);
                Field::Unknown
            }
        }
    }

    pub(crate) fn req_seq<'v>(
        &mut self,
        m: Option<&'v Mapping>,
        loc: &Loc,
        key: &str,
    ) -> Field<&'v Vec<Value>> {
        let f = self.seq(m, loc, key);
        if f.is_absent() && m.is_some() {
            self.missing(loc, key);
        }
        f
    }

    /// A list of strings (numbers converted).
    pub(crate) fn strings(&mut self, m: Option<&Mapping>, loc: &Loc, key: &str) -> Vec<String> {
        let items = match self.seq(m, loc, key) {
            Field::Present(items) => items,
            _ => return Vec::new(),
        };
        let mut out = Vec::new();
        for (i, v) in items.iter().enumerate() {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Int(n) => out.push(n.to_string()),
                v => self.type_error(&loc.key(key).index(i), "a string", v),
            }
        }
        out
    }

    /// A subtree kept as YAML (`cloud_properties`, `properties`, `env`): must be a map, or a
    /// placeholder the director fills in later. `Null` when absent.
    pub(crate) fn raw_map(&mut self, m: Option<&Mapping>, loc: &Loc, key: &str) -> Value {
        match Self::get(m, key) {
            None => Value::Null,
            Some(v @ Value::Map(_)) => v.clone(),
            Some(v) if is_placeholder(v) => v.clone(),
            Some(v) => {
                self.type_error(&loc.key(key), "a map", v);
                Value::Null
            }
        }
    }

    /// A map of string to string (`tags`): scalar values are converted to strings.
    pub(crate) fn string_map(
        &mut self,
        m: Option<&Mapping>,
        loc: &Loc,
        key: &str,
    ) -> indexmap::IndexMap<String, String> {
        let mut out = indexmap::IndexMap::new();
        let Some(v) = Self::get(m, key) else {
            return out;
        };
        let Some(map) = self.map(v, &loc.key(key)) else {
            return out;
        };
        for (k, v) in map {
            let k = scalar_text(k);
            match v {
                Value::Seq(_) | Value::Map(_) => {
                    self.type_error(&loc.key(key).key(&k), "a string", v);
                }
                v => {
                    out.insert(k, scalar_text(v));
                }
            }
        }
        out
    }

    /// Locations for the items of a list of named things: `[field=value]` when the item's
    /// identifying field is a string unique in the list, else `[index]`.
    pub(crate) fn items<'v>(
        items: &'v [Value],
        loc: &Loc,
        field: &'static str,
    ) -> Vec<(Loc, &'v Value)> {
        let names: Vec<Option<&str>> = items
            .iter()
            .map(|v| v.get(field).and_then(Value::as_str))
            .collect();
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = match names[i] {
                    Some(n) if names.iter().filter(|o| **o == Some(n)).count() == 1 => {
                        loc.named(i, field, n)
                    }
                    _ => loc.index(i),
                };
                (at, v)
            })
            .collect()
    }

    /// Reports each name seen before, at the repeated item's `field`.
    pub(crate) fn unique<'a>(
        &mut self,
        names: impl IntoIterator<Item = (&'a str, Loc)>,
        what: &str,
        field: &str,
    ) {
        let mut seen = std::collections::HashSet::new();
        for (name, loc) in names {
            if name.is_empty() {
                continue;
            }
            if !seen.insert(name) {
                self.error(&loc.key(field), format!("duplicate {what} '{name}'"));
            }
        }
    }

    /// Reports a key that only older (v1) manifests or other documents may use.
    pub(crate) fn reject(&mut self, m: Option<&Mapping>, loc: &Loc, key: &str, message: &str) {
        if m.is_some_and(|m| m.contains_key(&Value::String(key.to_owned()))) {
            self.error(&loc.key(key), message);
        }
    }
}

pub(crate) fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => bosh_yaml::to_string(other).trim_end().to_owned(),
    }
}

/// Serde through `Display`/`FromStr`, for small value types written as strings in YAML.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_paths_display_and_map_to_index_paths() {
        let loc = Loc::root()
            .key("instance_groups")
            .named(2, "name", "kv")
            .key("networks")
            .index(0);
        assert_eq!(loc.to_string(), "instance_groups[name=kv].networks[0]");
        assert_eq!(loc.yaml().to_string(), "instance_groups[2].networks[0]");
    }

    #[test]
    fn error_list_prints_one_per_line() {
        let errs = ValidationErrors(vec![
            ValidationError {
                path: "a".into(),
                line: Some(3),
                message: "bad".into(),
            },
            ValidationError {
                path: String::new(),
                line: None,
                message: "worse".into(),
            },
        ]);
        assert_eq!(errs.to_string(), "a: bad (line 3)\nworse");
    }

    #[test]
    fn placeholders_are_whole_values_only() {
        assert!(is_placeholder(&Value::from("((count))")));
        assert!(is_placeholder(&Value::from(" ((a.b)) ")));
        assert!(!is_placeholder(&Value::from("x((a))")));
        assert!(!is_placeholder(&Value::from("((a)) and ((b))")));
        assert!(!is_placeholder(&Value::Int(3)));
    }
}
