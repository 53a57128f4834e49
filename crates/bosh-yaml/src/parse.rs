use crate::path::{Path, PathSeg};
use crate::value::{Mapping, Value};
use base64::Engine;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML syntax error, with the 1-based line and column where the parser stopped.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("yaml: line {line}: {message}")]
pub struct Error {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The 1-based line of every node of a parsed document, by path, and the source text of
/// scalars that resolved to numbers or booleans.
#[derive(Debug, Default, Clone)]
pub struct Marks {
    lines: HashMap<Path, usize>,
    /// yaml.v2 (and Ruby) store a scalar's text, not its resolved value, into a string
    /// field: `commit_hash: 50e58513` is `"50e58513"`, not a float.
    texts: HashMap<Path, String>,
}

impl Marks {
    /// The line of the node at `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &Path) -> Option<usize> {
        let mut p = path.clone();
        loop {
            if let Some(l) = self.lines.get(&p) {
                return Some(*l);
            }
            p.0.pop()?;
        }
    }

    /// The source text of the scalar at `path`, if it resolved to a number or boolean.
    pub fn text_of(&self, path: &Path) -> Option<&str> {
        self.texts.get(path).map(String::as_str)
    }

    /// Replaces number and boolean scalars at the paths `is_string` accepts with their source
    /// text, as yaml.v2 decodes them into string fields.
    pub fn strings_restore(&self, v: &mut Value, is_string: &dyn Fn(&[PathSeg]) -> bool) {
        fn walk(
            marks: &Marks,
            v: &mut Value,
            path: &mut Vec<PathSeg>,
            is_string: &dyn Fn(&[PathSeg]) -> bool,
        ) {
            match v {
                Value::Map(m) => {
                    for (k, child) in m.iter_mut() {
                        path.push(PathSeg::Key(key_text(k)));
                        walk(marks, child, path, is_string);
                        path.pop();
                    }
                }
                Value::Seq(items) => {
                    for (i, child) in items.iter_mut().enumerate() {
                        path.push(PathSeg::Index(i));
                        walk(marks, child, path, is_string);
                        path.pop();
                    }
                }
                Value::Int(_) | Value::Float(_) | Value::Bool(_) if is_string(path) => {
                    if let Some(text) = marks.texts.get(&Path(path.clone())) {
                        *v = Value::String(text.clone());
                    }
                }
                _ => {}
            }
        }
        walk(self, v, &mut Vec::new(), is_string);
    }
}

/// Parses one YAML document (the first, when there are several) with yaml.v2's rules.
/// An empty document is `Null`.
pub fn parse(src: &str) -> Result<Value, Error> {
    parse_marked(src).map(|(v, _)| v)
}

/// Like [`parse`], also returning the line of each node.
pub fn parse_marked(src: &str) -> Result<(Value, Marks), Error> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut builder, false).map_err(|e| Error {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    let root = builder.root.unwrap_or(Value::Null);
    Ok((
        root,
        Marks {
            lines: builder.lines,
            texts: builder.texts,
        },
    ))
}

enum Frame {
    Seq {
        anchor: usize,
        items: Vec<Value>,
    },
    Map {
        anchor: usize,
        map: Mapping,
        pending_key: Option<Value>,
        /// Keys set explicitly; a `<<` merge never overrides them.
        merges: Vec<Value>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    path: Vec<PathSeg>,
    anchors: HashMap<usize, Value>,
    root: Option<Value>,
    lines: HashMap<Path, usize>,
    texts: HashMap<Path, String>,
    error: Option<Error>,
    done: bool,
}

impl Builder {
    /// The path segment a new node at the current position would get.
    fn next_seg(&self) -> Option<PathSeg> {
        match self.stack.last()? {
            Frame::Seq { items, .. } => Some(PathSeg::Index(items.len())),
            Frame::Map {
                pending_key: Some(k),
                ..
            } => Some(PathSeg::Key(key_text(k))),
            Frame::Map { .. } => None,
        }
    }

    fn mark(&mut self, line: usize) {
        let mut p = self.path.clone();
        if let Some(seg) = self.next_seg() {
            p.push(seg);
        }
        self.lines.entry(Path(p)).or_insert(line);
    }

    fn push_value(&mut self, v: Value, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, v.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(v);
                }
                self.done = true;
            }
            Some(Frame::Seq { items, .. }) => items.push(v),
            Some(Frame::Map {
                map,
                pending_key,
                merges,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(v),
                Some(k) if k == Value::String("<<".into()) => merges.push(v),
                Some(k) => {
                    map.insert(k, v);
                }
            },
        }
    }

    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(Error {
                line: mark.line(),
                column: mark.col() + 1,
                message,
            });
        }
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => "null".into(),
        _ => "?".into(),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done || self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let in_key_position = matches!(
                    self.stack.last(),
                    Some(Frame::Map {
                        pending_key: None,
                        ..
                    })
                );
                if !in_key_position {
                    self.mark(mark.line());
                }
                // Quoted scalars stay strings; only plain or tagged ones can resolve to other types.
                let source = (!in_key_position && (style == TScalarStyle::Plain || tag.is_some()))
                    .then(|| text.clone());
                match resolve_scalar(text, style, tag.as_ref()) {
                    Ok(v) => {
                        if let Some(source) = source
                            && matches!(v, Value::Int(_) | Value::Float(_) | Value::Bool(_))
                        {
                            let mut p = self.path.clone();
                            p.extend(self.next_seg());
                            self.texts.insert(Path(p), source);
                        }
                        self.push_value(v, anchor)
                    }
                    Err(msg) => self.fail(mark, msg),
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(v) => {
                    self.mark(mark.line());
                    self.push_value(v, 0)
                }
                None => self.fail(mark, "unknown anchor referenced".into()),
            },
            Event::SequenceStart(anchor, _) => {
                self.mark(mark.line());
                if let Some(seg) = self.next_seg() {
                    self.path.push(seg);
                }
                self.stack.push(Frame::Seq {
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                if matches!(
                    self.stack.last(),
                    Some(Frame::Map {
                        pending_key: None,
                        ..
                    })
                ) {
                    self.fail(mark, "mapping keys must be scalars".into());
                    return;
                }
                self.mark(mark.line());
                if let Some(seg) = self.next_seg() {
                    self.path.push(seg);
                }
                self.stack.push(Frame::Map {
                    anchor,
                    map: Mapping::new(),
                    pending_key: None,
                    merges: Vec::new(),
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { anchor, items }) = self.stack.pop() {
                    if !self.stack.is_empty() {
                        self.path.pop();
                    }
                    self.push_value(Value::Seq(items), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    anchor,
                    mut map,
                    merges,
                    ..
                }) = self.stack.pop()
                {
                    if !self.stack.is_empty() {
                        self.path.pop();
                    }
                    for m in merges {
                        let sources = match m {
                            Value::Seq(items) => items,
                            other => vec![other],
                        };
                        for src in sources {
                            match src {
                                Value::Map(src) => {
                                    for (k, v) in src {
                                        map.entry(k).or_insert(v);
                                    }
                                }
                                _ => {
                                    self.fail(
                                        mark,
                                        "map merge requires map or sequence of maps as the value"
                                            .into(),
                                    );
                                    return;
                                }
                            }
                        }
                    }
                    self.push_value(Value::Map(map), anchor);
                }
            }
            Event::DocumentEnd if self.root.is_some() => self.done = true,
            _ => {}
        }
    }
}

fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        let name = format!("{}{}", tag.handle, tag.suffix);
        match name.as_str() {
            "tag:yaml.org,2002:str" | "!!str" => return Ok(Value::String(text)),
            // The Ruby CLI wrote `!binary` for base64 strings; go-yaml reads `!!binary`.
            "tag:yaml.org,2002:binary" | "!!binary" | "!binary" => {
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| format!("!!binary value contains invalid base64 data: {e}"))?;
                return Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            }
            "tag:yaml.org,2002:int"
            | "!!int"
            | "tag:yaml.org,2002:float"
            | "!!float"
            | "tag:yaml.org,2002:bool"
            | "!!bool"
            | "tag:yaml.org,2002:null"
            | "!!null" => {
                return Ok(resolve_plain(&text));
            }
            _ => {}
        }
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    Ok(resolve_plain(&text))
}

/// yaml.v2 `resolve()` for an untagged plain scalar.
pub(crate) fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Value::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.' {
        let plain = s.replace('_', "");
        if let Some(i) = parse_go_int(&plain) {
            return Value::Int(i);
        }
        if let Some(f) = parse_go_float(&plain) {
            return Value::Float(f);
        }
    }
    Value::String(s.to_owned())
}

/// Go's `strconv.ParseInt(s, 0, 64)` (base prefixes 0x, 0o, 0b and a bare leading 0 = octal),
/// plus yaml.v2's `0b` handling.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d)
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    let v = if neg { -magnitude } else { magnitude };
    i64::try_from(v).ok()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms YAML uses.
fn parse_go_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let ok = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && body.chars().any(|c| c.is_ascii_digit());
    if !ok {
        return None;
    }
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_yaml_v2() {
        assert_eq!(resolve_plain("yes"), Value::Bool(true));
        assert_eq!(resolve_plain("Off"), Value::Bool(false));
        assert_eq!(resolve_plain("0777"), Value::Int(0o777));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("-12"), Value::Int(-12));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(
            resolve_plain("1000-30000"),
            Value::String("1000-30000".into())
        );
        assert_eq!(resolve_plain("1.0.0"), Value::String("1.0.0".into()));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("z1"), Value::String("z1".into()));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let v = parse("a: 'yes'\nb: \"1\"\nc: yes\n").unwrap();
        assert_eq!(v.get("a"), Some(&Value::String("yes".into())));
        assert_eq!(v.get("b"), Some(&Value::String("1".into())));
        assert_eq!(v.get("c"), Some(&Value::Bool(true)));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let v = parse("base: &b {a: 1, b: 2}\nd:\n  <<: *b\n  b: 3\nl: *b\n").unwrap();
        let d = v.get("d").unwrap();
        assert_eq!(d.get("a"), Some(&Value::Int(1)));
        assert_eq!(d.get("b"), Some(&Value::Int(3)));
        assert_eq!(v.get("l").unwrap().get("b"), Some(&Value::Int(2)));
        // yaml.v2 reads a bare `y` key as the bool true.
        let y = parse("y: 1\n").unwrap();
        assert_eq!(
            y.as_map().unwrap().get(&Value::Bool(true)),
            Some(&Value::Int(1))
        );
    }

    #[test]
    fn marks_name_lines() {
        let src = "name: x\ninstance_groups:\n- name: a\n  networks:\n  - name: n1\n";
        let (_, marks) = parse_marked(src).unwrap();
        let p = Path::root()
            .key("instance_groups")
            .index(0)
            .key("networks")
            .index(0)
            .key("name");
        assert_eq!(marks.line_of(&p), Some(5));
        assert_eq!(marks.line_of(&Path::root().key("name")), Some(1));
    }

    #[test]
    fn syntax_errors_name_a_line() {
        let err = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn ruby_binary_tag_decodes() {
        let v = parse("sha1: !binary |-\n  YWJj\n").unwrap();
        assert_eq!(v.get("sha1"), Some(&Value::String("abc".into())));
    }
}
