//! `((var))` interpolation of a document, as `bosh interpolate` does it: ops first, then
//! variables (generating typed `variables:` entries in declaration order), then removal of
//! the `variables:` entries whose values were found, then the optional `--path` find.

use crate::error::Error;
use crate::gofmt;
use crate::patch::{Op, find, scalar_text, unmarshal_error};
use crate::pointer::{Pointer, Token};
use crate::vars::{VariableDefinition, Variables};
use bosh_yaml::{Mapping, Value};
use std::collections::{BTreeSet, HashSet};

/// What `evaluate` checks and does after interpolation.
#[derive(Debug, Clone, Default)]
pub struct EvaluateOpts {
    /// Fail when a referenced or declared variable has no value (`--var-errs`).
    pub expect_all_keys: bool,
    /// Fail when a given variable is never used (`--var-errs-unused`).
    pub expect_all_vars_used: bool,
    /// Applied to the interpolated document (`--path` uses a find).
    pub post_var_substitution_op: Option<Op>,
    /// Print a resulting string as is rather than as YAML (useful for PEM blocks).
    pub unescaped_multiline: bool,
}

/// Interpolates a YAML document and returns its text as the reference prints it.
pub fn evaluate(
    template: &str,
    vars: &dyn Variables,
    op: Option<&Op>,
    opts: &EvaluateOpts,
) -> Result<String, Error> {
    let mut doc = bosh_yaml::parse(template)?;
    if let Some(op) = op {
        doc = op.apply(doc)?;
    }
    let doc = interpolate_document(doc, vars, opts.expect_all_keys, opts.expect_all_vars_used)?;
    let doc = match &opts.post_var_substitution_op {
        Some(op) => op.apply(doc)?,
        None => doc,
    };
    if let (true, Value::String(s)) = (opts.unescaped_multiline, &doc) {
        return Ok(format!("{s}\n"));
    }
    Ok(bosh_yaml::to_string_sorted(&doc))
}

/// Interpolates variables into a parsed document (no ops, no output formatting).
pub fn interpolate_document(
    doc: Value,
    vars: &dyn Variables,
    expect_all_found: bool,
    expect_all_used: bool,
) -> Result<Value, Error> {
    let defs = variable_definitions(&doc)?;
    let mut tracker = Tracker::new(vars, &defs, HashSet::new());
    tracker.expect_all_found = expect_all_found;
    tracker.expect_all_used = expect_all_used;
    // Typed variables are fetched (so generated) in declaration order, so that a CA
    // exists before the certificates it signs.
    for def in &defs {
        if !def.var_type.is_empty() {
            tracker.get(&def.name).map_err(|e| {
                e.context("Getting all variables from variable definitions sections")
            })?;
        }
    }
    let doc = interpolate(doc, &mut tracker)?;
    let doc = tracker.remove_found_definitions(doc)?;
    tracker.error().map_or(Ok(doc), Err)
}

/// The `variables:` section of a document (empty when the document is not a map).
pub fn variable_definitions(doc: &Value) -> Result<Vec<VariableDefinition>, Error> {
    let Value::Map(map) = doc else {
        return Ok(Vec::new());
    };
    let items = match map.get(&Value::from("variables")) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Seq(items)) => items,
        Some(other) => {
            let line = marshalled_line(doc, &bosh_yaml::Path::root().key("variables"));
            return Err(unmarshal_error(
                line,
                other,
                "[]template.VariableDefinition",
            ));
        }
    };
    let mut defs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = bosh_yaml::Path::root().key("variables").index(i);
        let entry = match item {
            Value::Null => {
                defs.push(VariableDefinition::default());
                continue;
            }
            Value::Map(m) => m,
            other => {
                return Err(unmarshal_error(
                    marshalled_line(doc, &at),
                    other,
                    "template.VariableDefinition",
                ));
            }
        };
        let text_field = |key: &str| -> Result<String, Error> {
            match entry.get(&Value::from(key)) {
                None => Ok(String::new()),
                Some(v) => scalar_text(v).ok_or_else(|| {
                    unmarshal_error(marshalled_line(doc, &at.key(key)), v, "string")
                }),
            }
        };
        defs.push(VariableDefinition {
            name: text_field("name")?,
            var_type: text_field("type")?,
            options: entry
                .get(&Value::from("options"))
                .cloned()
                .unwrap_or(Value::Null),
        });
    }
    Ok(defs)
}

/// The line of `path` in the document as the reference re-marshals it before decoding.
fn marshalled_line(doc: &Value, path: &bosh_yaml::Path) -> usize {
    bosh_yaml::parse_marked(&bosh_yaml::to_string_sorted(doc))
        .ok()
        .and_then(|(_, marks)| marks.line_of(path))
        .unwrap_or(1)
}

/// Tracks which variables were looked up and which were missing.
struct Tracker<'a> {
    vars: &'a dyn Variables,
    defs: &'a [VariableDefinition],
    /// Names whose definition options are being interpolated (recursion guard).
    visited: HashSet<String>,
    missing: BTreeSet<String>,
    visited_all: HashSet<String>,
    expect_all_found: bool,
    expect_all_used: bool,
}

impl<'a> Tracker<'a> {
    fn new(
        vars: &'a dyn Variables,
        defs: &'a [VariableDefinition],
        visited: HashSet<String>,
    ) -> Self {
        Tracker {
            vars,
            defs,
            visited,
            missing: BTreeSet::new(),
            visited_all: HashSet::new(),
            expect_all_found: false,
            expect_all_used: false,
        }
    }

    /// The value of the variable `name` (no sub-keys).
    fn get(&mut self, name: &str) -> Result<Option<Value>, Error> {
        self.visited_all.insert(name.to_owned());
        if self.visited.contains(name) {
            return Err(Error::msg("Detected recursion"));
        }
        let mut visited = self.visited.clone();
        visited.insert(name.to_owned());
        let mut scoped = Tracker::new(self.vars, self.defs, visited);

        let mut def = self
            .defs
            .iter()
            .find(|d| d.name == name)
            .cloned()
            .unwrap_or_else(|| VariableDefinition::named(name));
        def.options = interpolate(std::mem::take(&mut def.options), &mut scoped).map_err(|e| {
            e.context(format!(
                "Interpolating variable '{name}' definition options"
            ))
        })?;
        // A definition whose options need missing variables cannot be produced yet.
        if !scoped.missing.is_empty() {
            return Ok(None);
        }
        let value = self.vars.get(&def)?;
        if value.is_none() {
            self.missing.insert(name.to_owned());
        }
        Ok(value)
    }

    /// The value of `name` or `name.sub.key` (sub-keys are looked up as a go-patch path,
    /// retried with numeric segments as map keys).
    fn lookup(&mut self, full_name: &str) -> Result<Option<Value>, Error> {
        let mut pieces = full_name.split('.');
        let head = pieces.next().unwrap_or_default();
        let rest: Vec<&str> = pieces.collect();
        let Some(value) = self.get(head)? else {
            return Ok(None);
        };
        if rest.is_empty() {
            return Ok(Some(value));
        }
        let pointer = Pointer::parse(&format!("/{}", rest.join("/")))?;
        match find(&value, &pointer) {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                let keys: Vec<Token> = pointer
                    .tokens()
                    .iter()
                    .map(|t| match t {
                        Token::Index { index, .. } => Token::Key {
                            key: index.to_string(),
                            optional: false,
                        },
                        other => other.clone(),
                    })
                    .collect();
                Ok(Some(find(&value, &Pointer::from_tokens(keys))?))
            }
        }
    }

    /// Removes from `variables:` every definition that has a value.
    fn remove_found_definitions(&mut self, mut doc: Value) -> Result<Value, Error> {
        let mut found = Vec::new();
        for def in self.defs {
            let value = self.get(&def.name).map_err(|e| {
                e.context("Getting all variables from variable definitions sections")
            })?;
            if value.is_some() {
                found.push(def.name.clone());
            }
        }
        for name in found {
            let path = Pointer::from_tokens(vec![
                Token::Root,
                Token::Key {
                    key: "variables".into(),
                    optional: false,
                },
                Token::MatchingIndex {
                    key: "name".into(),
                    value: name,
                    optional: false,
                    modifiers: vec![],
                },
            ]);
            doc = Op::Remove { path }.apply(doc)?;
        }
        Ok(doc)
    }

    fn error(&self) -> Option<Error> {
        let mut errs = Vec::new();
        if self.expect_all_found && !self.missing.is_empty() {
            errs.push(
                names_error(self.missing.iter().cloned()).context("Expected to find variables"),
            );
        }
        if self.expect_all_used {
            match self.vars.list() {
                Err(e) => errs.push(e),
                Ok(names) => {
                    let unused: BTreeSet<String> = names
                        .into_iter()
                        .filter(|n| !self.visited_all.contains(n))
                        .collect();
                    if !unused.is_empty() {
                        errs.push(
                            names_error(unused.into_iter()).context("Expected to use variables"),
                        );
                    }
                }
            }
        }
        if errs.is_empty() {
            None
        } else {
            Some(Error::Multi(errs))
        }
    }
}

fn names_error(names: impl Iterator<Item = String>) -> Error {
    Error::Multi(names.map(Error::Message).collect())
}

/// The variable names in `text`, in order (a leading `!` dropped).
pub fn variable_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut at = 0;
    while at < text.len() {
        match match_placeholder(&text[at..]) {
            Some((len, name)) => {
                names.push(name.trim_start_matches('!').to_owned());
                at += len;
            }
            None => at += text[at..].chars().next().map_or(1, char::len_utf8),
        }
    }
    names
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/' || c == '.' || c.is_alphabetic()
}

/// Matches `((name))` (optional single spaces inside, optional `!`) at the start of `s`,
/// returning the match length and the name with its `!`.
fn match_placeholder(s: &str) -> Option<(usize, &str)> {
    let rest = s.strip_prefix("((")?;
    let mut pos = 2;
    let rest = match rest.strip_prefix(' ') {
        Some(r) => {
            pos += 1;
            r
        }
        None => rest,
    };
    let bang = usize::from(rest.starts_with('!'));
    let name_len = rest[bang..]
        .find(|c: char| !is_name_char(c))
        .unwrap_or(rest.len() - bang);
    if name_len == 0 {
        return None;
    }
    let name = &rest[..bang + name_len];
    let mut after = &rest[bang + name_len..];
    pos += bang + name_len;
    if let Some(r) = after.strip_prefix(' ') {
        after = r;
        pos += 1;
    }
    after.strip_prefix("))")?;
    Some((pos + 2, name))
}

/// Whether the whole string is one placeholder (then the value keeps its type).
fn is_whole_placeholder(s: &str) -> bool {
    matches!(match_placeholder(s), Some((len, _)) if len == s.len())
}

fn interpolate(node: Value, tracker: &mut Tracker<'_>) -> Result<Value, Error> {
    match node {
        Value::Map(map) => {
            let mut out = Mapping::with_capacity(map.len());
            for (k, v) in map {
                let v = interpolate(v, tracker)?;
                let k = interpolate(k, tracker)?;
                out.insert(k, v);
            }
            Ok(Value::Map(out))
        }
        Value::Seq(items) => Ok(Value::Seq(
            items
                .into_iter()
                .map(|v| interpolate(v, tracker))
                .collect::<Result<_, _>>()?,
        )),
        Value::String(mut text) => {
            for name in variable_names(&text) {
                let found = tracker
                    .lookup(&name)
                    .map_err(|e| e.context(format!("Finding variable '{name}'")))?;
                let Some(value) = found else { continue };
                if is_whole_placeholder(&text) {
                    return Ok(value);
                }
                let replacement = match &value {
                    Value::String(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => {
                        return Err(Error::msg(format!(
                            "Invalid type '{}' for value '{}' and variable '{name}'. Supported types for interpolation within a string are integers and strings.",
                            gofmt::type_name(other),
                            gofmt::value_text(other)
                        )));
                    }
                };
                text = text
                    .replace(&format!("(({name}))"), &replacement)
                    .replace(&format!("((!{name}))"), &replacement);
            }
            Ok(Value::String(text))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::{StaticVariables, VarSources, VarsStore};
    use pretty_assertions::assert_eq;

    fn statics(yaml: &str) -> StaticVariables {
        StaticVariables::from_yaml(yaml).expect("valid vars")
    }

    fn eval(template: &str, vars: &str) -> Result<String, String> {
        evaluate(template, &statics(vars), None, &EvaluateOpts::default())
            .map_err(|e| e.to_string())
    }

    fn eval_opts(template: &str, vars: &str, opts: EvaluateOpts) -> Result<String, String> {
        evaluate(template, &statics(vars), None, &opts).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_values_keep_their_type() {
        let out = eval(
            "a: ((m))\nb: ((i))\nc: ((!s))\n",
            "m: {x: 1}\ni: 5\ns: str\n",
        );
        assert_eq!(out, Ok("a:\n  x: 1\nb: 5\nc: str\n".to_owned()));
    }

    #[test]
    fn strings_and_ints_are_spliced_into_strings() {
        let out = eval("a: pre-((s))-((i))-((!s))\n", "s: x\ni: 7\n");
        assert_eq!(out, Ok("a: pre-x-7-x\n".to_owned()));
    }

    #[test]
    fn spaced_placeholders_only_replace_when_whole() {
        let out = eval("a: (( s ))\nb: x(( s ))\n", "s: v\n");
        assert_eq!(out, Ok("a: v\nb: x(( s ))\n".to_owned()));
    }

    #[test]
    fn other_types_cannot_be_spliced() {
        let out = eval("a: x((m))\n", "m: {k: v}\n");
        assert_eq!(
            out,
            Err("Invalid type 'map[interface {}]interface {}' for value 'map[k:v]' and variable 'm'. Supported types for interpolation within a string are integers and strings.".to_owned())
        );
        let out = eval("a: x((b))\n", "b: true\n");
        assert!(out.is_err_and(|e| e.starts_with("Invalid type 'bool' for value 'true'")));
    }

    #[test]
    fn map_keys_are_interpolated() {
        assert_eq!(eval("((k)): v\n", "k: key\n"), Ok("key: v\n".to_owned()));
    }

    #[test]
    fn sub_keys_select_inside_values() {
        let vars = "c: {certificate: CERT, list: [a, b]}\nnum: {'0': zero}\n";
        assert_eq!(
            eval(
                "a: ((c.certificate))\nb: ((c.list.1))\nz: ((num.0))\n",
                vars
            ),
            Ok("a: CERT\nb: b\nz: zero\n".to_owned())
        );
        let err = eval("a: ((c.nope))\n", vars).expect_err("must fail");
        assert_eq!(
            err,
            "Finding variable 'c.nope':\n  Expected to find a map key 'nope' for path '/nope' (found map keys: 'certificate', 'list')"
        );
    }

    #[test]
    fn missing_variables_stay_unless_var_errs() {
        assert_eq!(eval("a: ((x))\n", ""), Ok("a: ((x))\n".to_owned()));
        let opts = EvaluateOpts {
            expect_all_keys: true,
            ..Default::default()
        };
        assert_eq!(
            eval_opts("a: ((y))\nb: ((x))\n", "", opts),
            Err("- Expected to find variables:\n    - x\n    - y".to_owned())
        );
    }

    #[test]
    fn unused_variables_reported_with_var_errs_unused() {
        let opts = EvaluateOpts {
            expect_all_vars_used: true,
            ..Default::default()
        };
        assert_eq!(
            eval_opts("a: ((x))\n", "x: 1\nz: 2\n", opts),
            Err("- Expected to use variables:\n    - z".to_owned())
        );
    }

    #[test]
    fn provided_variables_leave_the_variables_section() {
        let doc =
            "a: ((p))\nvariables:\n- {name: p, type: password}\n- {name: q, type: password}\n";
        assert_eq!(
            eval(doc, "p: given\n"),
            Ok("a: given\nvariables:\n- name: q\n  type: password\n".to_owned())
        );
    }

    #[test]
    fn definition_options_are_interpolated_and_recursion_detected() {
        let doc = "variables:\n- {name: a, type: password, options: {length: ((a))}}\n";
        let err = eval(doc, "").expect_err("must fail");
        assert_eq!(
            err,
            "Getting all variables from variable definitions sections:\n  Interpolating variable 'a' definition options:\n    Finding variable 'a':\n      Detected recursion"
        );
    }

    #[test]
    fn path_option_finds_after_interpolation() {
        let opts = EvaluateOpts {
            post_var_substitution_op: Some(Op::Find {
                path: Pointer::parse("/a/b").expect("path"),
            }),
            unescaped_multiline: true,
            ..Default::default()
        };
        assert_eq!(
            eval_opts("a: {b: ((s))}\n", "s: \"l1\\nl2\"\n", opts),
            Ok("l1\nl2\n".to_owned())
        );
    }

    #[test]
    fn variable_names_follow_the_reference_pattern() {
        assert_eq!(
            variable_names("((a)) (( b )) ((!c)) ((d e)) (((f)) ((g.h/i-j_k))"),
            ["a", "b", "c", "f", "g.h/i-j_k"]
        );
        assert!(is_whole_placeholder("(( x ))"));
        assert!(!is_whole_placeholder("((x)) "));
    }

    /// A vars store run generates a CA, a certificate signed by it and a password, writes
    /// them, and a second run reuses them.
    #[test]
    fn vars_store_round_trip_with_signed_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store_path = dir.path().join("creds.yml");
        let doc = "\
pw: ((pw))
cert: ((leaf.certificate))
ca: ((leaf.ca))
variables:
- name: ca
  type: certificate
  options: {is_ca: true, common_name: ca, key_length: 2048}
- name: leaf
  type: certificate
  options: {ca: ca, common_name: leaf, key_length: 2048}
- name: pw
  type: password
";
        let sources = || VarSources {
            statics: StaticVariables::default(),
            store: Some(VarsStore::new(store_path.to_str().expect("utf-8")).expect("store")),
        };
        let first = evaluate(doc, &sources(), None, &EvaluateOpts::default()).expect("first run");
        let stored = std::fs::read_to_string(&store_path).expect("store written");
        let second = evaluate(doc, &sources(), None, &EvaluateOpts::default()).expect("second run");
        assert_eq!(first, second);
        assert_eq!(std::fs::read_to_string(&store_path).expect("store"), stored);

        let out = bosh_yaml::parse(&first).expect("output is yaml");
        assert_eq!(out.get("variables"), Some(&Value::Seq(vec![])));
        let store = bosh_yaml::parse(&stored).expect("store is yaml");
        assert_eq!(
            out.get("ca"),
            store.get("ca").and_then(|c| c.get("certificate"))
        );
        assert_eq!(out.get("pw"), store.get("pw"));
        // Top-level keys sorted; values read back are sorted, the last generated (pw) last.
        let keys: Vec<&str> = store
            .as_map()
            .expect("map")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, ["ca", "leaf", "pw"]);
        let leaf_keys: Vec<&str> = store
            .get("leaf")
            .and_then(Value::as_map)
            .expect("map")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(leaf_keys, ["ca", "certificate", "private_key"]);
    }

    #[test]
    fn leaf_before_its_ca_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = VarSources {
            statics: StaticVariables::default(),
            store: Some(
                VarsStore::new(dir.path().join("s.yml").to_str().expect("utf-8")).expect("store"),
            ),
        };
        let doc = "variables:\n- {name: leaf, type: certificate, options: {ca: ca, key_length: 2048}}\n- {name: ca, type: certificate, options: {is_ca: true}}\n";
        let err = evaluate(doc, &sources, None, &EvaluateOpts::default()).expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "Getting all variables from variable definitions sections:\n  Generating variable 'leaf':\n    Loading certificates:\n      Expected to find variable 'ca' with a certificate"
        );
    }
}
