//! go-patch operations (`replace`, `remove`, `test`, and the find used by `--path`) with the
//! reference library's semantics and messages, and ops files (lists of op definitions).

use crate::error::Error;
use crate::gofmt;
use crate::pointer::{Modifier, Pointer, PointerError, Token};
use bosh_yaml::{Mapping, Value};

/// Why an operation could not be applied. Messages are the reference's, word for word.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("Expected to find {expected} at path '{path}' but found '{found}'")]
    MismatchType {
        expected: &'static str,
        path: Pointer,
        found: &'static str,
    },
    #[error("Expected to find a map key '{key}' for path '{path}' ({siblings})")]
    MissingMapKey {
        key: String,
        path: Pointer,
        siblings: String,
    },
    #[error(
        "Expected to find array index '{index}' but found array of length '{len}' for path '{path}'"
    )]
    MissingIndex {
        index: i128,
        len: usize,
        path: Pointer,
    },
    #[error("Expected to find exactly one matching array item for path '{path}' but found {count}")]
    MatchCount { path: Pointer, count: usize },
    #[error("Expected to not find token '{token}' at path '{path}'")]
    UnexpectedToken { token: &'static str, path: Pointer },
    #[error("Expected after last index token to be last in path '{path}'")]
    AfterLastIndexNotLast { path: Pointer },
    #[error(
        "Expected not to find after last index token in path '{path}' (not supported in find operations)"
    )]
    AfterLastIndexInFind { path: Pointer },
    #[error("Expected to find key, matching index or after last index token at path '{path}'")]
    NoContainerForReplace { path: Pointer },
    #[error("Expected to find key or matching index token at path '{path}'")]
    NoContainerForFind { path: Pointer },
    #[error(
        "Expected to find one of the following modifiers: 'prev', 'next', but found modifier '{modifier}'"
    )]
    IndexModifier { modifier: &'static str },
    #[error(
        "Expected to not find any modifiers after '{after}' modifier, but found modifier '{modifier}'"
    )]
    ModifierAfterInsertion {
        after: &'static str,
        modifier: &'static str,
    },
    #[error("Cannot remove entire document")]
    RemoveDocument,
    #[error("Expected to not find '{path}'")]
    Present { path: Pointer },
    #[error("Found value does not match expected value")]
    ValueMismatch,
    /// An operation with a description (ops files describe each operation by file and
    /// position); the reference prints the inner message after the description.
    #[error("Error '{description}': {inner}")]
    Described {
        description: String,
        inner: Box<PatchError>,
    },
}

/// An operation on a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Sets the value at `path`, creating optional (`?`) parents as needed.
    Replace { path: Pointer, value: Value },
    /// Deletes the value at `path`; a missing optional path is a no-op.
    Remove { path: Pointer },
    /// Checks that `path` holds `value`, or with `absent` that it does not exist.
    Test {
        path: Pointer,
        value: Value,
        absent: bool,
    },
    /// Replaces the document by the value at `path` (what `--path` prints).
    Find { path: Pointer },
    /// Runs `op`, prefixing its error with `Error '<description>': `.
    Described { op: Box<Op>, description: String },
    /// Runs each operation in turn.
    Many(Vec<Op>),
}

impl Op {
    /// Applies the operation, returning the new document.
    pub fn apply(&self, doc: Value) -> Result<Value, PatchError> {
        match self {
            Op::Replace { path, value } => replace(doc, path, value),
            Op::Remove { path } => remove(doc, path),
            Op::Test {
                path,
                value,
                absent,
            } => test(doc, path, value, *absent),
            Op::Find { path } => find(&doc, path),
            Op::Described { op, description } => op.apply(doc).map_err(|e| PatchError::Described {
                description: description.clone(),
                inner: Box::new(e),
            }),
            Op::Many(ops) => ops.iter().try_fold(doc, |doc, op| op.apply(doc)),
        }
    }
}

/// The value at `path` in `doc` (go-patch's find: optional segments that are missing yield
/// what a replace would have created).
pub fn find(doc: &Value, path: &Pointer) -> Result<Value, PatchError> {
    find_in(doc, path, 1)
}

fn mismatch_array(path: Pointer, obj: &Value) -> PatchError {
    PatchError::MismatchType {
        expected: "an array",
        path,
        found: gofmt::type_name(obj),
    }
}

fn mismatch_map(path: Pointer, obj: &Value) -> PatchError {
    PatchError::MismatchType {
        expected: "a map",
        path,
        found: gofmt::type_name(obj),
    }
}

fn missing_key(key: &str, path: Pointer, map: &Mapping) -> PatchError {
    let siblings = if map.is_empty() {
        "found no other map keys".to_owned()
    } else {
        let mut keys: Vec<&str> = map.keys().filter_map(Value::as_str).collect();
        keys.sort_unstable();
        format!("found map keys: '{}'", keys.join("', '"))
    };
    PatchError::MissingMapKey {
        key: key.to_owned(),
        path,
        siblings,
    }
}

/// Positions of the array items that are maps whose `key` is the string `value`.
fn matching_items(items: &[Value], key: &str, value: &str) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| {
            matches!(item.get(key), Some(Value::String(s)) if s == value)
                && matches!(item, Value::Map(_))
        })
        .map(|(i, _)| i)
        .collect()
}

/// An existing array position from an index (negative counts from the end) and modifiers.
fn array_index(
    index: i64,
    modifiers: &[Modifier],
    len: usize,
    path: &Pointer,
) -> Result<usize, PatchError> {
    let mut result = i128::from(index);
    for m in modifiers {
        match m {
            Modifier::Prev => result -= 1,
            Modifier::Next => result += 1,
            other => {
                return Err(PatchError::IndexModifier {
                    modifier: other.go_type(),
                });
            }
        }
    }
    let len_i = len as i128;
    if result >= len_i || -result > len_i {
        return Err(PatchError::MissingIndex {
            index: result,
            len,
            path: path.clone(),
        });
    }
    Ok(if result < 0 {
        (len_i + result) as usize
    } else {
        result as usize
    })
}

/// Where a replace puts its value in an array: `(position, insert?)`; `:before`/`:after`
/// insert next to the item instead of overwriting it.
fn array_insertion(
    index: i64,
    modifiers: &[Modifier],
    len: usize,
    path: &Pointer,
) -> Result<(usize, bool), PatchError> {
    let mut rest = Vec::new();
    let (mut before, mut after) = (false, false);
    for m in modifiers {
        if before {
            return Err(PatchError::ModifierAfterInsertion {
                after: "before",
                modifier: m.go_type(),
            });
        }
        if after {
            return Err(PatchError::ModifierAfterInsertion {
                after: "after",
                modifier: m.go_type(),
            });
        }
        match m {
            Modifier::Before => before = true,
            Modifier::After => after = true,
            other => rest.push(*other),
        }
    }
    let mut num = array_index(index, &rest, len, path)?;
    if after && num != len {
        num += 1;
    }
    Ok((num, before || after))
}

fn put_in_array(items: &mut Vec<Value>, (num, insert): (usize, bool), value: Value) {
    if insert {
        items.insert(num, value);
    } else {
        items[num] = value;
    }
}

fn replace(mut doc: Value, path: &Pointer, value: &Value) -> Result<Value, PatchError> {
    if path.tokens().len() == 1 {
        return Ok(value.clone());
    }
    replace_in(&mut doc, path, 1, value)?;
    Ok(doc)
}

fn replace_in(node: &mut Value, path: &Pointer, i: usize, value: &Value) -> Result<(), PatchError> {
    let tokens = path.tokens();
    let is_last = i == tokens.len() - 1;
    let curr = path.prefix(i + 1);
    match &tokens[i] {
        Token::Index { index, modifiers } => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            if is_last {
                let at = array_insertion(*index, modifiers, items.len(), &curr)?;
                put_in_array(items, at, value.clone());
                Ok(())
            } else {
                let idx = array_index(*index, modifiers, items.len(), &curr)?;
                replace_in(&mut items[idx], path, i + 1, value)
            }
        }
        Token::AfterLastIndex => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            if !is_last {
                return Err(PatchError::AfterLastIndexNotLast { path: path.clone() });
            }
            items.push(value.clone());
            Ok(())
        }
        Token::MatchingIndex {
            key,
            value: wanted,
            optional,
            modifiers,
        } => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            let idxs = matching_items(items, key, wanted);
            if *optional && idxs.is_empty() {
                if is_last {
                    items.push(value.clone());
                    return Ok(());
                }
                let mut created = Mapping::new();
                created.insert(Value::from(key.as_str()), Value::from(wanted.as_str()));
                items.push(Value::Map(created));
                let last = items.len() - 1;
                return replace_in(&mut items[last], path, i + 1, value);
            }
            if idxs.len() != 1 {
                return Err(PatchError::MatchCount {
                    path: curr,
                    count: idxs.len(),
                });
            }
            if is_last {
                let at = array_insertion(idxs[0] as i64, modifiers, items.len(), &curr)?;
                put_in_array(items, at, value.clone());
                Ok(())
            } else {
                let idx = array_index(idxs[0] as i64, modifiers, items.len(), &curr)?;
                replace_in(&mut items[idx], path, i + 1, value)
            }
        }
        Token::Key { key, optional } => {
            let Value::Map(map) = node else {
                return Err(mismatch_map(curr, node));
            };
            let map_key = Value::from(key.as_str());
            let found = map.contains_key(&map_key);
            if !found && !optional {
                return Err(missing_key(key, curr, map));
            }
            if is_last {
                map.insert(map_key, value.clone());
                return Ok(());
            }
            if !found {
                let created = match &tokens[i + 1] {
                    Token::AfterLastIndex | Token::MatchingIndex { .. } => Value::Seq(Vec::new()),
                    Token::Key { .. } => Value::Map(Mapping::new()),
                    _ => {
                        return Err(PatchError::NoContainerForReplace {
                            path: path.prefix(i + 2),
                        });
                    }
                };
                map.insert(map_key.clone(), created);
            }
            match map.get_mut(&map_key) {
                Some(child) => replace_in(child, path, i + 1, value),
                None => Err(missing_key(key, curr, map)),
            }
        }
        Token::Root => Err(PatchError::UnexpectedToken {
            token: tokens[i].go_type(),
            path: curr,
        }),
    }
}

fn remove(mut doc: Value, path: &Pointer) -> Result<Value, PatchError> {
    if path.tokens().len() == 1 {
        return Err(PatchError::RemoveDocument);
    }
    remove_in(&mut doc, path, 1)?;
    Ok(doc)
}

fn remove_in(node: &mut Value, path: &Pointer, i: usize) -> Result<(), PatchError> {
    let tokens = path.tokens();
    let is_last = i == tokens.len() - 1;
    let curr = path.prefix(i + 1);
    match &tokens[i] {
        Token::Index { index, modifiers } => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            let idx = array_index(*index, modifiers, items.len(), &curr)?;
            if is_last {
                items.remove(idx);
                Ok(())
            } else {
                remove_in(&mut items[idx], path, i + 1)
            }
        }
        Token::MatchingIndex {
            key,
            value,
            optional,
            modifiers,
        } => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            let idxs = matching_items(items, key, value);
            if *optional && idxs.is_empty() {
                return Ok(());
            }
            if idxs.len() != 1 {
                return Err(PatchError::MatchCount {
                    path: curr,
                    count: idxs.len(),
                });
            }
            let idx = array_index(idxs[0] as i64, modifiers, items.len(), &curr)?;
            if is_last {
                items.remove(idx);
                Ok(())
            } else {
                remove_in(&mut items[idx], path, i + 1)
            }
        }
        Token::Key { key, optional } => {
            let Value::Map(map) = node else {
                return Err(mismatch_map(curr, node));
            };
            let map_key = Value::from(key.as_str());
            if !map.contains_key(&map_key) {
                return if *optional {
                    Ok(())
                } else {
                    Err(missing_key(key, curr, map))
                };
            }
            if is_last {
                map.shift_remove(&map_key);
                return Ok(());
            }
            match map.get_mut(&map_key) {
                Some(child) => remove_in(child, path, i + 1),
                None => Ok(()),
            }
        }
        Token::AfterLastIndex | Token::Root => Err(PatchError::UnexpectedToken {
            token: tokens[i].go_type(),
            path: curr,
        }),
    }
}

fn find_in(node: &Value, path: &Pointer, i: usize) -> Result<Value, PatchError> {
    let tokens = path.tokens();
    if i >= tokens.len() {
        return Ok(node.clone());
    }
    let is_last = i == tokens.len() - 1;
    let curr = path.prefix(i + 1);
    match &tokens[i] {
        Token::Index { index, modifiers } => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            let idx = array_index(*index, modifiers, items.len(), &curr)?;
            find_in(&items[idx], path, i + 1)
        }
        Token::AfterLastIndex => Err(PatchError::AfterLastIndexInFind { path: path.clone() }),
        Token::MatchingIndex {
            key,
            value,
            optional,
            modifiers,
        } => {
            let Value::Seq(items) = node else {
                return Err(mismatch_array(curr, node));
            };
            let idxs = matching_items(items, key, value);
            if *optional && idxs.is_empty() {
                let mut created = Mapping::new();
                created.insert(Value::from(key.as_str()), Value::from(value.as_str()));
                return find_in(&Value::Map(created), path, i + 1);
            }
            if idxs.len() != 1 {
                return Err(PatchError::MatchCount {
                    path: curr,
                    count: idxs.len(),
                });
            }
            let idx = array_index(idxs[0] as i64, modifiers, items.len(), &curr)?;
            find_in(&items[idx], path, i + 1)
        }
        Token::Key { key, optional } => {
            let Value::Map(map) = node else {
                return Err(mismatch_map(curr, node));
            };
            let child = map.get(&Value::from(key.as_str()));
            if child.is_none() && !optional {
                return Err(missing_key(key, curr, map));
            }
            if is_last {
                return Ok(child.cloned().unwrap_or(Value::Null));
            }
            match child {
                Some(child) => find_in(child, path, i + 1),
                None => {
                    let created = match &tokens[i + 1] {
                        Token::MatchingIndex { .. } => Value::Seq(Vec::new()),
                        Token::Key { .. } => Value::Map(Mapping::new()),
                        _ => {
                            return Err(PatchError::NoContainerForFind {
                                path: path.prefix(i + 2),
                            });
                        }
                    };
                    find_in(&created, path, i + 1)
                }
            }
        }
        Token::Root => Err(PatchError::UnexpectedToken {
            token: tokens[i].go_type(),
            path: curr,
        }),
    }
}

fn test(doc: Value, path: &Pointer, value: &Value, absent: bool) -> Result<Value, PatchError> {
    if absent {
        return match find(&doc, path) {
            Ok(_) => Err(PatchError::Present { path: path.clone() }),
            Err(
                PatchError::MissingIndex { path: at, .. }
                | PatchError::MissingMapKey { path: at, .. },
            ) if at.to_string() == path.to_string() => Ok(doc),
            Err(e) => Err(e),
        };
    }
    if find(&doc, path)? != *value {
        return Err(PatchError::ValueMismatch);
    }
    Ok(doc)
}

/// One entry of an ops file, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpDefinition {
    pub op_type: String,
    pub path: Option<String>,
    /// `None` when absent or null (the reference treats `value: null` as missing).
    pub value: Option<Value>,
    pub absent: Option<bool>,
    /// Description used in the error when the operation fails.
    pub error: Option<String>,
}

/// Why an op definition does not make an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpDefinitionError {
    #[error("{kind} operation [{index}]: {reason} within\n{definition}")]
    Invalid {
        kind: &'static str,
        index: usize,
        reason: String,
        definition: String,
    },
    #[error("Unknown operation [{index}] with type '{op_type}' within\n{definition}")]
    UnknownType {
        index: usize,
        op_type: String,
        definition: String,
    },
}

impl OpDefinition {
    /// The definition as the reference shows it in errors: indented JSON with the value
    /// redacted.
    pub fn describe(&self) -> String {
        let mut fields = Vec::new();
        if !self.op_type.is_empty() {
            fields.push(format!("  \"Type\": {}", gofmt::json_string(&self.op_type)));
        }
        if let Some(p) = &self.path {
            fields.push(format!("  \"Path\": {}", gofmt::json_string(p)));
        }
        if self.value.is_some() {
            fields.push("  \"Value\": \"<redacted>\"".to_owned());
        }
        if let Some(a) = self.absent {
            fields.push(format!("  \"Absent\": {a}"));
        }
        if let Some(e) = &self.error {
            fields.push(format!("  \"Error\": {}", gofmt::json_string(e)));
        }
        if fields.is_empty() {
            return "{}".to_owned();
        }
        // The reference un-escapes `<` and `>` after JSON encoding (but not `&`).
        format!("{{\n{}\n}}", fields.join(",\n"))
            .replace("\\u003c", "<")
            .replace("\\u003e", ">")
    }
}

/// Builds the operations of a list of definitions.
pub fn ops_from_definitions(defs: &[OpDefinition]) -> Result<Op, OpDefinitionError> {
    let mut ops = Vec::with_capacity(defs.len());
    for (index, def) in defs.iter().enumerate() {
        let invalid = |kind: &'static str, reason: String| OpDefinitionError::Invalid {
            kind,
            index,
            reason,
            definition: def.describe(),
        };
        let parse_path = |kind: &'static str, text: &str| {
            Pointer::parse(text)
                .map_err(|e: PointerError| invalid(kind, format!("Invalid path: {e}")))
        };
        let op = match def.op_type.as_str() {
            "replace" => {
                let Some(path) = &def.path else {
                    return Err(invalid("Replace", "Missing path".into()));
                };
                let Some(value) = &def.value else {
                    return Err(invalid("Replace", "Missing value".into()));
                };
                Op::Replace {
                    path: parse_path("Replace", path)?,
                    value: value.clone(),
                }
            }
            "remove" => {
                let Some(path) = &def.path else {
                    return Err(invalid("Remove", "Missing path".into()));
                };
                if def.value.is_some() {
                    return Err(invalid("Remove", "Cannot specify value".into()));
                }
                Op::Remove {
                    path: parse_path("Remove", path)?,
                }
            }
            "test" => {
                let Some(path) = &def.path else {
                    return Err(invalid("Test", "Missing path".into()));
                };
                if def.value.is_none() && def.absent.is_none() {
                    return Err(invalid("Test", "Missing value or absent".into()));
                }
                Op::Test {
                    path: parse_path("Test", path)?,
                    value: def.value.clone().unwrap_or(Value::Null),
                    absent: def.absent.unwrap_or(false),
                }
            }
            other => {
                return Err(OpDefinitionError::UnknownType {
                    index,
                    op_type: other.to_owned(),
                    definition: def.describe(),
                });
            }
        };
        ops.push(match &def.error {
            Some(description) => Op::Described {
                op: Box::new(op),
                description: description.clone(),
            },
            None => op,
        });
    }
    Ok(Op::Many(ops))
}

/// Reads the op definitions of an ops file (a YAML list of maps).
pub fn op_definitions_from_yaml(text: &str) -> Result<Vec<OpDefinition>, Error> {
    let (doc, marks) = bosh_yaml::parse_marked(text)?;
    let line = |path: &bosh_yaml::Path| marks.line_of(path).unwrap_or(1);
    let root = bosh_yaml::Path::root();
    let items = match doc {
        Value::Null => return Ok(Vec::new()),
        Value::Seq(items) => items,
        other => return Err(unmarshal_error(line(&root), &other, "[]patch.OpDefinition")),
    };
    let mut defs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = root.index(i);
        let map = match item {
            Value::Null => {
                defs.push(OpDefinition::default());
                continue;
            }
            Value::Map(m) => m,
            other => return Err(unmarshal_error(line(&at), other, "patch.OpDefinition")),
        };
        let field = |name: &str| map.get(&Value::from(name)).filter(|v| !v.is_null());
        let string_field = |name: &str| -> Result<Option<String>, Error> {
            match field(name) {
                None => Ok(None),
                Some(v) => scalar_text(v)
                    .map(Some)
                    .ok_or_else(|| unmarshal_error(line(&at.key(name)), v, "string")),
            }
        };
        let absent = match field("absent") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => return Err(unmarshal_error(line(&at.key("absent")), v, "bool")),
        };
        defs.push(OpDefinition {
            op_type: string_field("type")?.unwrap_or_default(),
            path: string_field("path")?,
            value: field("value").cloned(),
            absent,
            error: string_field("error")?,
        });
    }
    Ok(defs)
}

/// The text a Go string field receives from a YAML scalar; `None` for collections.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(gofmt::float_text(*f)),
        Value::String(s) => Some(s.clone()),
        Value::Seq(_) | Value::Map(_) => None,
    }
}

/// yaml.v2's message for a node that does not fit the Go type it is decoded into.
pub(crate) fn unmarshal_error(line: usize, v: &Value, go_type: &str) -> Error {
    let node = match v {
        Value::Seq(_) => "!!seq".to_owned(),
        Value::Map(_) => "!!map".to_owned(),
        Value::Bool(b) => format!("!!bool `{b}`"),
        Value::Int(i) => format!("!!int `{i}`"),
        Value::Float(f) => format!("!!float `{}`", gofmt::float_text(*f)),
        Value::String(s) => format!("!!str `{s}`"),
        Value::Null => "!!null".to_owned(),
    };
    Error::msg(format!(
        "yaml: unmarshal errors:\n  line {line}: cannot unmarshal {node} into {go_type}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn doc(text: &str) -> Value {
        bosh_yaml::parse(text).expect("valid yaml")
    }

    fn apply(text: &str, ops: &str) -> Result<Value, String> {
        let defs = op_definitions_from_yaml(ops).map_err(|e| e.flat())?;
        let op = ops_from_definitions(&defs).map_err(|e| e.to_string())?;
        op.apply(doc(text)).map_err(|e| e.to_string())
    }

    const BASE: &str = "\
name: dep
groups:
- name: a
  jobs: [{name: j1}, {name: j2}]
- name: b
list: [1, 2, 3]
";

    #[test]
    fn replace_by_key_index_and_selector() {
        let out = apply(
            BASE,
            "- {type: replace, path: /name, value: other}\n\
             - {type: replace, path: /list/1, value: 20}\n\
             - {type: replace, path: /groups/name=b/size?, value: 3}\n\
             - {type: replace, path: /groups/name=a/jobs/name=j2/name, value: j3}\n",
        )
        .expect("ops apply");
        assert_eq!(out.get("name"), Some(&Value::from("other")));
        assert_eq!(out.get("list"), Some(&doc("[1, 20, 3]")));
        assert_eq!(
            out.get("groups")
                .and_then(|g| g.as_seq())
                .map(|g| g[1].clone()),
            Some(doc("{name: b, size: 3}"))
        );
        let j = find(
            &out,
            &Pointer::parse("/groups/0/jobs/1/name").expect("valid path"),
        );
        assert_eq!(j, Ok(Value::from("j3")));
    }

    #[test]
    fn replace_missing_key_without_optional_fails() {
        let err = apply(BASE, "- {type: replace, path: /nope/x, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find a map key 'nope' for path '/nope' (found map keys: 'groups', 'list', 'name')"
        );
    }

    #[test]
    fn optional_path_creates_maps_and_items() {
        let out = apply(
            BASE,
            "- {type: replace, path: /a?/b/c, value: 1}\n\
             - {type: replace, path: /groups/name=new?/size, value: 2}\n\
             - {type: replace, path: /arr?/-, value: x}\n",
        )
        .expect("ops apply");
        assert_eq!(out.get("a"), Some(&doc("{b: {c: 1}}")));
        let groups = out.get("groups").and_then(|g| g.as_seq()).expect("groups");
        assert_eq!(groups.last(), Some(&doc("{name: new, size: 2}")));
        assert_eq!(out.get("arr"), Some(&doc("[x]")));
    }

    #[test]
    fn append_negative_index_and_modifiers() {
        let out = apply(
            BASE,
            "- {type: replace, path: /list/-, value: 4}\n\
             - {type: replace, path: /list/-1, value: 40}\n\
             - {type: replace, path: /list/0:before, value: 0}\n\
             - {type: replace, path: /list/0:next:after, value: 15}\n",
        )
        .expect("ops apply");
        assert_eq!(out.get("list"), Some(&doc("[0, 1, 15, 2, 3, 40]")));
    }

    #[test]
    fn index_out_of_range_reports_length() {
        let err = apply(BASE, "- {type: replace, path: /list/5, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find array index '5' but found array of length '3' for path '/list/5'"
        );
        let err =
            apply(BASE, "- {type: replace, path: /list/-4, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find array index '-4' but found array of length '3' for path '/list/-4'"
        );
    }

    #[test]
    fn remove_by_selector_index_and_key() {
        let out = apply(
            BASE,
            "- {type: remove, path: /groups/name=a/jobs/name=j1}\n\
             - {type: remove, path: /list/0}\n\
             - {type: remove, path: /name}\n\
             - {type: remove, path: /missing?/x}\n\
             - {type: remove, path: /groups/name=zzz?}\n",
        )
        .expect("ops apply");
        assert_eq!(
            out,
            doc("groups:\n- {name: a, jobs: [{name: j2}]}\n- {name: b}\nlist: [2, 3]\n")
        );
    }

    #[test]
    fn remove_whole_document_fails() {
        assert_eq!(
            apply(BASE, "- {type: remove, path: ''}"),
            Err("Cannot remove entire document".into())
        );
    }

    #[test]
    fn selector_must_match_exactly_one() {
        let err =
            apply("l: [{k: a}, {k: a}]", "- {type: remove, path: /l/k=a}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find exactly one matching array item for path '/l/k=a' but found 2"
        );
        // Selectors compare strings only: an int 1 is not "1".
        let err = apply("l: [{k: 1}]", "- {type: remove, path: /l/k=1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find exactly one matching array item for path '/l/k=1' but found 0"
        );
    }

    #[test]
    fn type_mismatch_names_go_types() {
        let err = apply(BASE, "- {type: replace, path: /name/x, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find a map at path '/name/x' but found 'string'"
        );
        let err =
            apply(BASE, "- {type: replace, path: /groups/x, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find a map at path '/groups/x' but found '[]interface {}'"
        );
        let err = apply(BASE, "- {type: replace, path: /name/0, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Expected to find an array at path '/name/0' but found 'string'"
        );
    }

    #[test]
    fn test_op_checks_values_and_absence() {
        assert!(apply(BASE, "- {type: test, path: /list/0, value: 1}").is_ok());
        assert_eq!(
            apply(BASE, "- {type: test, path: /list/0, value: 2}"),
            Err("Found value does not match expected value".into())
        );
        assert!(apply(BASE, "- {type: test, path: /nope, absent: true}").is_ok());
        assert!(apply(BASE, "- {type: test, path: /list/9, absent: true}").is_ok());
        assert_eq!(
            apply(BASE, "- {type: test, path: /name, absent: true}"),
            Err("Expected to not find '/name'".into())
        );
        // Absence only counts for the last segment.
        assert!(apply(BASE, "- {type: test, path: /nope/x, absent: true}").is_err());
    }

    #[test]
    fn error_field_describes_failures() {
        let err =
            apply(BASE, "- {type: remove, path: /nope, error: custom}").expect_err("must fail");
        assert_eq!(
            err,
            "Error 'custom': Expected to find a map key 'nope' for path '/nope' (found map keys: 'groups', 'list', 'name')"
        );
    }

    #[test]
    fn invalid_definitions_are_reported_with_json() {
        let err = apply(BASE, "- {type: bogus, path: /a, value: 1}").expect_err("must fail");
        assert_eq!(
            err,
            "Unknown operation [0] with type 'bogus' within\n{\n  \"Type\": \"bogus\",\n  \"Path\": \"/a\",\n  \"Value\": \"<redacted>\"\n}"
        );
        let err = apply(BASE, "- {type: replace, path: /a}").expect_err("must fail");
        assert!(
            err.starts_with("Replace operation [0]: Missing value within\n"),
            "{err}"
        );
        let err = apply(BASE, "- {type: replace, path: a, value: 1}").expect_err("must fail");
        assert!(
            err.starts_with(
                "Replace operation [0]: Invalid path: Expected to start with '/' within"
            ),
            "{err}"
        );
        let err = apply(BASE, "- {type: remove, path: /a, value: 1}").expect_err("must fail");
        assert!(
            err.starts_with("Remove operation [0]: Cannot specify value within"),
            "{err}"
        );
        let err = apply(BASE, "- {type: test, path: /a}").expect_err("must fail");
        assert!(
            err.starts_with("Test operation [0]: Missing value or absent within"),
            "{err}"
        );
    }

    #[test]
    fn find_follows_optional_segments() {
        let d = doc(BASE);
        let p = |s: &str| Pointer::parse(s).expect("valid path");
        assert_eq!(
            find(&d, &p("/groups/name=a/jobs/1/name")),
            Ok(Value::from("j2"))
        );
        assert_eq!(find(&d, &p("/nope?/x")), Ok(Value::Null));
        assert_eq!(find(&d, &p("/groups/name=zz?")), Ok(doc("{name: zz}")));
        assert_eq!(
            find(&d, &p("/list/-")),
            Err(PatchError::AfterLastIndexInFind { path: p("/list/-") })
        );
    }

    #[test]
    fn replace_root_replaces_document() {
        assert_eq!(
            apply(BASE, "- {type: replace, path: '', value: [1]}"),
            Ok(doc("[1]"))
        );
    }
}
