//! Finding and replacing `((…))` placeholders in JSON values, as the Ruby director's deep hash
//! replacement does: a string that is exactly one placeholder takes the value with its type;
//! placeholders inside a longer string take string or integer values only; a map key that is
//! exactly one placeholder is replaced by its (string) value. Pure functions: the config
//! server resolves the names in between.

use serde_json::Value;
use std::collections::HashMap;

/// Every placeholder in `s`, as written (`((name))`), left to right. Like the director's
/// non-greedy `\(\(.*?\)\)`, a placeholder does not span lines.
pub(crate) fn placeholders_in(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = s[from..].find("((").map(|i| from + i) {
        let Some(end) = s[start + 2..].find("))").map(|i| start + 2 + i) else {
            break;
        };
        if s[start..end].contains('\n') {
            from = start + 1;
            continue;
        }
        out.push(&s[start..end + 2]);
        from = end + 2;
    }
    out
}

/// Whether the whole string is one placeholder (`^\(\([^(]*\)\)$`).
pub(crate) fn is_whole(s: &str) -> bool {
    s.len() >= 4 && s.starts_with("((") && s.ends_with("))") && !s[2..s.len() - 2].contains('(')
}

/// The variable name inside a placeholder: spaces trimmed, the spiff-era leading `!` dropped,
/// and the director's syntax rules applied (the messages name only the placeholder).
pub(crate) fn placeholder_name(placeholder: &str) -> Result<String, String> {
    let inner = placeholder
        .strip_prefix("((")
        .and_then(|s| s.strip_suffix("))"))
        .unwrap_or(placeholder)
        .trim();
    let valid_chars = !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'!' | b'/'));
    if !valid_chars {
        return Err(format!(
            "Variable name '{inner}' must only contain alphanumeric, underscores, dashes, or forward slash characters"
        ));
    }
    if inner.ends_with('/') {
        return Err(format!(
            "Variable name '{inner}' must not end with a forward slash"
        ));
    }
    if inner.contains("//") {
        return Err(format!(
            "Variable name '{inner}' must not contain two consecutive forward slashes"
        ));
    }
    let (before_last_slash, last) = match inner.rfind('/') {
        Some(i) => (&inner[..=i], &inner[i + 1..]),
        None => ("", inner),
    };
    let dot_error = |what: &str| Err(format!("Variable name '{inner}' syntax error: {what}"));
    if before_last_slash.contains('.') {
        return dot_error("Must not contain dots before the last slash");
    }
    if last.starts_with('.') {
        return dot_error("Must not have segment starting with a dot");
    }
    if last.ends_with('.') {
        return dot_error("Must not end name with a dot");
    }
    if last.contains("..") {
        return dot_error("Must not contain consecutive dots");
    }
    let bangs = inner.matches('!').count();
    if bangs > 1 || (bangs == 1 && (!inner.starts_with('!') || inner.len() == 1)) {
        return Err(format!(
            "Variable name '{inner}' contains invalid character '!'. If it is included for spiff, it should only be at the beginning of the name. Note: it will not be considered a part of the name"
        ));
    }
    Ok(inner.trim_start_matches('!').to_owned())
}

/// Each placeholder of `value` with the paths (`/a/0/b`) where it is used, in first-use order.
pub(crate) fn uses_collect(value: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut add =
        |placeholder: &str, path: &str| match out.iter_mut().find(|(p, _)| p == placeholder) {
            Some((_, paths)) => paths.push(path.to_owned()),
            None => out.push((placeholder.to_owned(), vec![path.to_owned()])),
        };
    walk(value, &mut String::new(), &mut add);
    out
}

fn walk(value: &Value, path: &mut String, add: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::String(s) => {
            for p in placeholders_in(s) {
                add(p, if path.is_empty() { "/" } else { path });
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                walk(item, path, add);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                path.push('/');
                path.push_str(k);
                if is_whole(k) {
                    add(k, path);
                }
                walk(v, path, add);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn placement_error(placeholder: &str, target: &str) -> String {
    format!(
        "Failed to substitute variable: Can not replace '{placeholder}' in '{target}'. The value should be a String or an Integer."
    )
}

/// `value` with every placeholder replaced from `resolved` (keyed by the placeholder as
/// written). Errors list misplaced values; they quote templates, never values.
pub(crate) fn substitute(
    value: &Value,
    resolved: &HashMap<String, Value>,
) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let out = substitute_into(value, resolved, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn substitute_into(
    value: &Value,
    resolved: &HashMap<String, Value>,
    errors: &mut Vec<String>,
) -> Value {
    match value {
        Value::String(s) => {
            if is_whole(s)
                && let Some(v) = resolved.get(s.as_str())
            {
                return v.clone();
            }
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            for p in placeholders_in(s) {
                let Some(at) = rest.find(p) else { continue };
                out.push_str(&rest[..at]);
                match resolved.get(p).and_then(as_text) {
                    Some(text) => out.push_str(&text),
                    None => {
                        if resolved.contains_key(p) {
                            errors.push(placement_error(p, s));
                        }
                        out.push_str(p);
                    }
                }
                rest = &rest[at + p.len()..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute_into(v, resolved, errors))
                .collect(),
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                let key = match resolved.get(k.as_str()) {
                    Some(r) if is_whole(k) => match as_text(r) {
                        Some(text) => text,
                        None => {
                            errors.push(placement_error(k, k));
                            k.clone()
                        }
                    },
                    _ => k.clone(),
                };
                out.insert(key, substitute_into(v, resolved, errors));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_placeholders_like_the_director() {
        assert_eq!(placeholders_in("a ((x)) b ((y.z))"), ["((x))", "((y.z))"]);
        assert_eq!(placeholders_in("((a\nb)) ((c))"), ["((c))"]);
        assert!(placeholders_in("no ((placeholder").is_empty());
        assert!(is_whole("((x))") && is_whole("(( x ))"));
        assert!(!is_whole("((x)) ((y))") && !is_whole("a((x))"));
    }

    #[test]
    fn names_follow_the_director_syntax_rules() {
        assert_eq!(placeholder_name("((x))").unwrap(), "x");
        assert_eq!(placeholder_name("(( !x.y ))").unwrap(), "x.y");
        assert_eq!(placeholder_name("((/d/dep/x.ca))").unwrap(), "/d/dep/x.ca");
        for (bad, why) in [
            ("((1+2))", "must only contain"),
            ("((a/))", "must not end with a forward slash"),
            ("((a//b))", "two consecutive forward slashes"),
            ("((a.b/c))", "dots before the last slash"),
            ("((.a))", "segment starting with a dot"),
            ("((a.))", "end name with a dot"),
            ("((a..b))", "consecutive dots"),
            ("((a!))", "invalid character '!'"),
        ] {
            let e = placeholder_name(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn substitutes_whole_embedded_and_key_placeholders() {
        let doc = json!({
            "whole": "((m))",
            "text": "user:((p))@((n))",
            "list": [{"((k))": "((n))"}],
        });
        let uses = uses_collect(&doc);
        let names: Vec<&str> = uses.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["((m))", "((p))", "((n))", "((k))"]);
        assert_eq!(uses[2].1, ["/text", "/list/0/((k))"]);
        let resolved: HashMap<String, Value> = [
            ("((m))", json!({"a": [1, 2]})),
            ("((p))", json!("pw")),
            ("((n))", json!(42)),
            ("((k))", json!("key")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(
            substitute(&doc, &resolved).unwrap(),
            json!({"whole": {"a": [1, 2]}, "text": "user:pw@42", "list": [{"key": 42}]})
        );
    }

    #[test]
    fn maps_cannot_be_embedded_in_strings() {
        let resolved: HashMap<String, Value> =
            [("((c))".to_owned(), json!({"private_key": "SECRET"}))].into();
        let errors = substitute(&json!({"a": "x ((c))"}), &resolved).unwrap_err();
        assert_eq!(
            errors,
            [
                "Failed to substitute variable: Can not replace '((c))' in 'x ((c))'. The value should be a String or an Integer."
            ]
        );
        assert!(!errors[0].contains("SECRET"));
    }
}
