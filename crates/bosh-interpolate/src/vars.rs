//! Variable sources: values given on the command line (`-v`, `--var-file`, `-l`,
//! `--vars-env`) and the vars store file, which generates missing typed variables and
//! writes them back.

use crate::error::{Error, io_message};
use crate::generate::{self, CaPem};
use crate::patch::{scalar_text, unmarshal_error};
use bosh_yaml::{Mapping, Value};
use indexmap::IndexMap;
use std::path::{Path, PathBuf};

/// An entry of a manifest's `variables:` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariableDefinition {
    pub name: String,
    /// Empty when the variable has no type (then it is never generated).
    pub var_type: String,
    pub options: Value,
}

impl VariableDefinition {
    /// A definition with only a name (how plain lookups are made).
    pub fn named(name: impl Into<String>) -> Self {
        VariableDefinition {
            name: name.into(),
            ..Default::default()
        }
    }
}

/// Something that can provide variable values.
pub trait Variables {
    /// The value of the variable, `None` when this source does not have it.
    fn get(&self, def: &VariableDefinition) -> Result<Option<Value>, Error>;
    /// The names of every variable this source has.
    fn list(&self) -> Result<Vec<String>, Error>;
}

/// Variables given as name/value pairs; a dotted name `a.b` sets key `b` of variable `a`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StaticVariables(pub IndexMap<String, Value>);

impl StaticVariables {
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.0.insert(name.into(), value);
    }

    /// Later sources override earlier ones, name by name.
    pub fn extend(&mut self, other: StaticVariables) {
        self.0.extend(other.0);
    }

    /// Names with dots expanded into nested maps.
    fn processed(&self) -> IndexMap<String, Value> {
        let mut out: IndexMap<String, Value> = IndexMap::new();
        for (name, value) in &self.0 {
            let pieces: Vec<&str> = name.split('.').collect();
            let Some((last, parents)) = pieces.split_last() else {
                continue;
            };
            if parents.is_empty() {
                out.insert(name.clone(), value.clone());
                continue;
            }
            let top = out
                .entry(parents[0].to_owned())
                .or_insert_with(|| Value::Map(Mapping::new()));
            let mut node = top;
            for (i, p) in parents.iter().enumerate() {
                if i > 0 {
                    let Value::Map(m) = node else { break };
                    node = m
                        .entry(Value::from(*p))
                        .or_insert_with(|| Value::Map(Mapping::new()));
                }
                if !matches!(node, Value::Map(_)) {
                    *node = Value::Map(Mapping::new());
                }
            }
            if let Value::Map(m) = node {
                m.insert(Value::from(*last), value.clone());
            }
        }
        out
    }

    /// Variables from a YAML map document (a vars file, a vars store).
    pub fn from_yaml(text: &str) -> Result<StaticVariables, Error> {
        let doc = bosh_yaml::parse(text)?;
        let map = match doc {
            Value::Null => return Ok(StaticVariables::default()),
            Value::Map(m) => m,
            other => return Err(unmarshal_error(1, &other, "template.StaticVariables")),
        };
        let mut vars = StaticVariables::default();
        for (k, v) in map {
            let name = scalar_text(&k).ok_or_else(|| unmarshal_error(1, &k, "string"))?;
            vars.insert(name, v);
        }
        Ok(vars)
    }
}

impl Variables for StaticVariables {
    fn get(&self, def: &VariableDefinition) -> Result<Option<Value>, Error> {
        Ok(self.processed().get(&def.name).cloned())
    }
    fn list(&self) -> Result<Vec<String>, Error> {
        Ok(self.processed().keys().cloned().collect())
    }
}

/// `~` expansion and an absolute path, like the reference's `ExpandPath`.
pub fn expand_path(path: &str) -> PathBuf {
    let expanded = match path.strip_prefix('~') {
        Some(rest) => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(rest.trim_start_matches('/'))
        }
        None => PathBuf::from(path),
    };
    std::path::absolute(&expanded).unwrap_or(expanded)
}

/// Reads a file, failing as the reference's file system layer does.
pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    let shown = path.display().to_string();
    std::fs::read(path).map_err(|e| {
        Error::msg(io_message("open", &shown, &e)).context(format!("Opening file {shown}"))
    })
}

fn read_text(path: &Path) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(&read_file(path)?).into_owned())
}

/// Parses a `-v name=value` argument: the value is YAML, except that plain strings are
/// kept as written (with one pair of wrapping quotes removed).
pub fn parse_var_kv(arg: &str) -> Result<(String, Value), Error> {
    let Some((name, raw)) = arg.split_once('=') else {
        return Err(Error::msg(format!(
            "Expected var '{arg}' to be in format 'name=value'"
        )));
    };
    if name.is_empty() {
        return Err(Error::msg(format!(
            "Expected var '{arg}' to specify non-empty name"
        )));
    }
    if raw.is_empty() {
        return Err(Error::msg(format!(
            "Expected var '{arg}' to specify non-empty value"
        )));
    }
    let parsed = bosh_yaml::parse(raw)
        .map_err(|e| Error::from(e).context(format!("Deserializing variables '{arg}'")))?;
    let value = match parsed {
        Value::String(_) => Value::String(trim_wrapping_quotes(raw).to_owned()),
        other => other,
    };
    Ok((name.to_owned(), value))
}

fn trim_wrapping_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2
        && ((b[0] == b'"' && b[b.len() - 1] == b'"') || (b[0] == b'\'' && b[b.len() - 1] == b'\''))
    {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Parses a `--var-file name=path` argument: the variable is the file's contents.
pub fn read_var_file(arg: &str) -> Result<(String, Value), Error> {
    let Some((name, path)) = arg.split_once('=') else {
        return Err(Error::msg(format!(
            "Expected var '{arg}' to be in format 'name=path'"
        )));
    };
    if name.is_empty() {
        return Err(Error::msg(format!(
            "Expected var '{arg}' to specify non-empty name"
        )));
    }
    if path.is_empty() {
        return Err(Error::msg(format!(
            "Expected var '{arg}' to specify non-empty path"
        )));
    }
    let abs = expand_path(path);
    let text = read_text(&abs)
        .map_err(|e| e.context(format!("Reading variable from file '{}'", abs.display())))?;
    Ok((name.to_owned(), Value::String(text)))
}

/// Reads a `-l path` vars file (a YAML map of names to values).
pub fn read_vars_file(path: &str) -> Result<StaticVariables, Error> {
    if path.is_empty() {
        return Err(Error::msg("Expected file path to be non-empty"));
    }
    let text = read_text(Path::new(path))
        .map_err(|e| e.context(format!("Reading variables file '{path}'")))?;
    StaticVariables::from_yaml(&text)
        .map_err(|e| e.context(format!("Deserializing variables file '{path}'")))
}

/// Variables from environment entries `PREFIX_name=value` (values are YAML).
pub fn vars_from_env(
    prefix: &str,
    environ: impl IntoIterator<Item = (String, String)>,
) -> Result<StaticVariables, Error> {
    if prefix.is_empty() {
        return Err(Error::msg(
            "Expected environment variable prefix to be non-empty",
        ));
    }
    let full_prefix = format!("{prefix}_");
    let mut vars = StaticVariables::default();
    for (key, raw) in environ {
        let Some(name) = key.strip_prefix(&full_prefix) else {
            continue;
        };
        let value = bosh_yaml::parse(&raw).map_err(|e| {
            Error::from(e).context(format!(
                "Deserializing YAML from environment variable '{key}'"
            ))
        })?;
        vars.insert(name, value);
    }
    Ok(vars)
}

/// The `--vars-store` file: read on every lookup; typed variables it lacks are generated
/// and saved into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarsStore {
    path: PathBuf,
}

impl VarsStore {
    /// A store at `path` (expanded to an absolute path); the file need not exist.
    pub fn new(path: &str) -> Result<VarsStore, Error> {
        if path.is_empty() {
            return Err(Error::msg("Expected file path to be non-empty"));
        }
        Ok(VarsStore {
            path: expand_path(path),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<IndexMap<String, Value>, Error> {
        // A file that cannot be stat'ed for another reason than absence counts as present.
        let exists = match std::fs::metadata(&self.path) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        };
        if !exists {
            return Ok(IndexMap::new());
        }
        let text = read_text(&self.path)?;
        let vars = StaticVariables::from_yaml(&text).map_err(|e| {
            e.context(format!(
                "Deserializing variables file store '{}'",
                self.path.display()
            ))
        })?;
        Ok(vars.0)
    }

    /// Stores `value` under `name`. Values read back from the file are written with sorted
    /// keys, the new one in the order it was generated in, as the reference's store does.
    fn set(&self, name: &str, value: Value) -> Result<(), Error> {
        let mut vars = self.load()?;
        for v in vars.values_mut() {
            sort_keys(v);
        }
        vars.insert(name.to_owned(), value);
        let mut top: Vec<(String, Value)> = vars.into_iter().collect();
        top.sort_by(|a, b| Value::from(a.0.as_str()).key_cmp(&Value::from(b.0.as_str())));
        let doc: Mapping = top.into_iter().map(|(k, v)| (Value::from(k), v)).collect();
        let text = bosh_yaml::to_string(&Value::Map(doc));
        let shown = self.path.display().to_string();
        let write = || -> Result<(), Error> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    Error::msg(io_message("mkdir", &dir.display().to_string(), &e))
                        .context("Creating dir to write file")
                })?;
            }
            std::fs::write(&self.path, text).map_err(|e| {
                Error::msg(io_message("open", &shown, &e)).context(format!("Creating file {shown}"))
            })
        };
        write().map_err(|e| e.context(format!("Writing variables to file store '{shown}'")))
    }

    /// The stored value, or for a typed definition a newly generated (and saved) one.
    /// `load_ca` looks up the CA a certificate is signed by.
    pub fn get_or_generate(
        &self,
        def: &VariableDefinition,
        load_ca: &mut dyn FnMut(&str) -> Result<CaPem, Error>,
    ) -> Result<Option<Value>, Error> {
        let vars = self.load()?;
        if let Some(v) = vars.get(&def.name) {
            return Ok(Some(v.clone()));
        }
        if def.var_type.is_empty() {
            return Ok(None);
        }
        let generated = generate::generate(&def.var_type, &def.options, load_ca)
            .and_then(|v| self.set(&def.name, v.clone()).map(|()| v))
            .map_err(|e| e.context(format!("Generating variable '{}'", def.name)))?;
        Ok(Some(generated))
    }
}

fn sort_keys(v: &mut Value) {
    match v {
        Value::Map(m) => {
            m.sort_by(|k1, _, k2, _| k1.key_cmp(k2));
            m.values_mut().for_each(sort_keys);
        }
        Value::Seq(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// All sources of one command: given values first, then the vars store.
#[derive(Debug, Clone, Default)]
pub struct VarSources {
    pub statics: StaticVariables,
    pub store: Option<VarsStore>,
}

impl VarSources {
    /// Reads the certificate and key of the variable `name` for signing.
    fn load_ca(&self, name: &str) -> Result<CaPem, Error> {
        let Some(value) = self.get(&VariableDefinition::named(name))? else {
            return Err(Error::msg(format!(
                "Expected to find variable '{name}' with a certificate"
            )));
        };
        let field = |key: &str| -> Result<String, Error> {
            match &value {
                Value::Map(_) => match value.get(key) {
                    None => Ok(String::new()),
                    Some(v) => scalar_text(v).ok_or_else(|| {
                        unmarshal_error(1, v, "string")
                            .context(format!("Expected variable '{name}' to be deserializable"))
                    }),
                },
                other => Err(unmarshal_error(1, other, "opts.CertVal")
                    .context(format!("Expected variable '{name}' to be deserializable"))),
            }
        };
        Ok(CaPem {
            certificate: field("certificate")?,
            private_key: field("private_key")?,
        })
    }
}

impl Variables for VarSources {
    fn get(&self, def: &VariableDefinition) -> Result<Option<Value>, Error> {
        if let Some(v) = self.statics.get(def)? {
            return Ok(Some(v));
        }
        match &self.store {
            Some(store) => store.get_or_generate(def, &mut |name| self.load_ca(name)),
            None => Ok(None),
        }
    }

    fn list(&self) -> Result<Vec<String>, Error> {
        let mut names = self.statics.list()?;
        if let Some(store) = &self.store {
            let stored = StaticVariables(store.load()?);
            names.extend(stored.list()?);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_kv_keeps_plain_strings_as_written() {
        assert_eq!(parse_var_kv("a=1").ok(), Some(("a".into(), Value::Int(1))));
        assert_eq!(
            parse_var_kv("a='q'").ok(),
            Some(("a".into(), Value::from("q")))
        );
        assert_eq!(
            parse_var_kv("a=x=y").ok(),
            Some(("a".into(), Value::from("x=y")))
        );
        assert_eq!(
            parse_var_kv("a={b: c}")
                .ok()
                .map(|(_, v)| v.get("b").cloned()),
            Some(Some(Value::from("c")))
        );
        // A multi-line plain scalar would be folded by YAML; the raw text is kept.
        assert_eq!(
            parse_var_kv("a=l1\nl2").ok(),
            Some(("a".into(), Value::from("l1\nl2")))
        );
    }

    #[test]
    fn var_kv_errors() {
        assert_eq!(
            parse_var_kv("novalue").map_err(|e| e.flat()),
            Err("Expected var 'novalue' to be in format 'name=value'".into())
        );
        assert_eq!(
            parse_var_kv("=v").map_err(|e| e.flat()),
            Err("Expected var '=v' to specify non-empty name".into())
        );
        assert_eq!(
            parse_var_kv("a=").map_err(|e| e.flat()),
            Err("Expected var 'a=' to specify non-empty value".into())
        );
    }

    #[test]
    fn dotted_names_become_nested_maps() {
        let mut s = StaticVariables::default();
        s.insert("a.b", Value::Int(1));
        s.insert("a.c.d", Value::Int(2));
        let got = s.get(&VariableDefinition::named("a")).expect("no error");
        assert_eq!(
            got,
            Some(bosh_yaml::parse("{b: 1, c: {d: 2}}").expect("yaml"))
        );
        assert_eq!(s.list().ok(), Some(vec!["a".to_owned()]));
    }

    #[test]
    fn env_vars_with_prefix_are_yaml() {
        let env = vec![
            ("FOO_a".to_owned(), "1".to_owned()),
            ("FOO_b".to_owned(), "x: z".to_owned()),
            ("BAR_c".to_owned(), "z".to_owned()),
        ];
        let vars = vars_from_env("FOO", env).expect("parses");
        assert_eq!(vars.0.get("a"), Some(&Value::Int(1)));
        assert_eq!(
            vars.0.get("b").and_then(|v| v.get("x")),
            Some(&Value::from("z"))
        );
        assert!(!vars.0.contains_key("c"));
    }

    #[test]
    fn missing_files_are_reported_with_path() {
        let e = read_vars_file("/nonexistent/vars.yml").expect_err("must fail");
        assert_eq!(
            e.flat(),
            "Reading variables file '/nonexistent/vars.yml': Opening file /nonexistent/vars.yml: open /nonexistent/vars.yml: no such file or directory"
        );
    }

    #[test]
    fn store_generates_once_and_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/creds.yml");
        let store = VarsStore::new(path.to_str().expect("utf-8")).expect("valid");
        let def = VariableDefinition {
            name: "pw".into(),
            var_type: "password".into(),
            options: Value::Null,
        };
        let mut no_ca = |_: &str| -> Result<CaPem, Error> { Err(Error::msg("unused")) };
        let first = store
            .get_or_generate(&def, &mut no_ca)
            .expect("generates")
            .expect("some");
        let second = store
            .get_or_generate(&def, &mut no_ca)
            .expect("reads")
            .expect("some");
        assert_eq!(first, second);
        let text = std::fs::read_to_string(&path).expect("store written");
        assert_eq!(text, format!("pw: {}\n", first.as_str().expect("string")));
        assert_eq!(
            store
                .get_or_generate(&VariableDefinition::named("other"), &mut no_ca)
                .ok(),
            Some(None)
        );
    }
}
