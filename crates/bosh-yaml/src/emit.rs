//! Emission byte-compatible with Go's yaml.v2 `Marshal` (a port of libyaml's emitter with
//! best_indent 2 and best_width 80): the style of each scalar is chosen exactly as yaml.v2 and
//! libyaml choose it, and long scalars are folded at spaces past column 80 as libyaml does.

use crate::parse::resolve_plain;
use crate::value::Value;

const BEST_WIDTH: usize = 80;
const INDENT: usize = 2;

/// Emits a document with mapping keys in stored order.
pub fn to_string(v: &Value) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        sort: false,
    };
    e.document(v);
    e.out
}

/// Emits a document with mapping keys sorted as yaml.v2 sorts Go map keys; this is what the
/// reference CLI prints for documents it read into generic maps (`interpolate`).
pub fn to_string_sorted(v: &Value) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        sort: true,
    };
    e.document(v);
    e.out
}

struct Emitter {
    out: String,
    column: usize,
    sort: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

impl Emitter {
    fn write(&mut self, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                self.column = 0;
            } else {
                self.column += 1;
            }
        }
        self.out.push_str(s);
    }

    /// libyaml `write_indent`: a line break unless already at the start of a line, then
    /// spaces up to `indent`.
    fn newline_indent(&mut self, indent: usize) {
        if self.column > 0 {
            self.write("\n");
        }
        let pad = indent.saturating_sub(self.column);
        self.write(&" ".repeat(pad));
    }

    fn document(&mut self, v: &Value) {
        match v {
            Value::Map(m) if !m.is_empty() => self.map(v, 0),
            Value::Seq(s) if !s.is_empty() => self.seq(s, 0),
            // libyaml starts a top-level scalar at indent best_indent, not 0.
            other => self.scalar_or_empty(other, INDENT, false),
        }
        if !self.out.ends_with('\n') {
            self.write("\n");
        }
    }

    fn entries<'a>(&self, v: &'a Value) -> Vec<(&'a Value, &'a Value)> {
        let m = v.as_map().expect("map");
        let mut items: Vec<(&Value, &Value)> = m.iter().collect();
        if self.sort {
            items.sort_by(|a, b| a.0.key_cmp(b.0));
        }
        items
    }

    /// A block mapping whose keys sit at column `indent`; the cursor is already there.
    fn map(&mut self, v: &Value, indent: usize) {
        for (n, (k, val)) in self.entries(v).into_iter().enumerate() {
            if n > 0 {
                self.newline_indent(indent);
            }
            self.scalar_or_empty(k, indent + INDENT, true);
            self.write(":");
            match val {
                Value::Map(m) if !m.is_empty() => {
                    self.newline_indent(indent + INDENT);
                    self.map(val, indent + INDENT);
                }
                // Sequences under a key are not indented (libyaml's "indentless" sequence).
                Value::Seq(s) if !s.is_empty() => {
                    self.newline_indent(indent);
                    self.seq(s, indent);
                }
                other => {
                    self.write(" ");
                    self.scalar_or_empty(other, indent + INDENT, false);
                }
            }
        }
    }

    /// A block sequence whose dashes sit at column `indent`; the cursor is already there.
    fn seq(&mut self, items: &[Value], indent: usize) {
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                self.newline_indent(indent);
            }
            self.write("- ");
            match item {
                Value::Map(m) if !m.is_empty() => self.map(item, indent + INDENT),
                Value::Seq(s) if !s.is_empty() => self.seq(s, indent + INDENT),
                other => self.scalar_or_empty(other, indent + INDENT, false),
            }
        }
    }

    /// A scalar, or `{}`/`[]` for an empty collection. `indent` is libyaml's indent for the
    /// scalar: where continuation lines of a folded or literal scalar start.
    fn scalar_or_empty(&mut self, v: &Value, indent: usize, simple_key: bool) {
        match v {
            Value::Null => self.write("null"),
            Value::Bool(b) => self.write(if *b { "true" } else { "false" }),
            Value::Int(i) => self.write(&i.to_string()),
            Value::Float(f) => self.write(&go_float(*f)),
            Value::String(s) => self.string(s, indent, simple_key),
            Value::Map(_) => self.write("{}"),
            Value::Seq(_) => self.write("[]"),
        }
    }

    fn string(&mut self, s: &str, indent: usize, simple_key: bool) {
        // yaml.v2 `stringv`: plain unless the text would read back as another type.
        let can_use_plain = matches!(resolve_plain_tag(s), ResolvedTag::Str) && !is_base60_float(s);
        let wanted = if s.contains('\n') {
            Style::Literal
        } else if can_use_plain {
            Style::Plain
        } else {
            Style::Double
        };
        let a = analyze(s);
        // libyaml `select_scalar_style`.
        let mut style = wanted;
        if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
            style = Style::Single;
        }
        if style == Style::Single && !a.single_allowed {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block_allowed || simple_key) {
            style = Style::Double;
        }
        let allow_breaks = !simple_key;
        match style {
            Style::Plain => self.write_plain(s, indent, allow_breaks),
            Style::Single => self.write_single(s, indent, allow_breaks),
            Style::Double => self.write_double(s, indent, allow_breaks),
            Style::Literal => self.write_literal(s, indent),
        }
    }

    fn write_plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks && !spaces && self.column > BEST_WIDTH && !next_is_space {
                    self.newline_indent(indent);
                } else {
                    self.write(" ");
                }
                spaces = true;
            } else {
                self.write(c.encode_utf8(&mut [0; 4]));
                spaces = false;
            }
        }
    }

    fn write_single(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write("'");
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                let next_is_space = chars.get(i + 1) == Some(&' ');
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i + 1 != chars.len()
                    && !next_is_space
                {
                    self.newline_indent(indent);
                } else {
                    self.write(" ");
                }
                spaces = true;
            } else {
                if c == '\'' {
                    self.write("'");
                }
                self.write(c.encode_utf8(&mut [0; 4]));
                spaces = false;
            }
        }
        self.write("'");
    }

    fn write_double(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write("\"");
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            let printable = is_printable(c) && c != '\u{FEFF}';
            if !printable || c == '"' || c == '\\' || is_break(c) {
                let esc = match c {
                    '\0' => "\\0".to_owned(),
                    '\u{7}' => "\\a".to_owned(),
                    '\u{8}' => "\\b".to_owned(),
                    '\t' => "\\t".to_owned(),
                    '\n' => "\\n".to_owned(),
                    '\u{B}' => "\\v".to_owned(),
                    '\u{C}' => "\\f".to_owned(),
                    '\r' => "\\r".to_owned(),
                    '\u{1B}' => "\\e".to_owned(),
                    '"' => "\\\"".to_owned(),
                    '\\' => "\\\\".to_owned(),
                    '\u{85}' => "\\N".to_owned(),
                    '\u{A0}' => "\\_".to_owned(),
                    '\u{2028}' => "\\L".to_owned(),
                    '\u{2029}' => "\\P".to_owned(),
                    c if (c as u32) <= 0xFF => format!("\\x{:02X}", c as u32),
                    c if (c as u32) <= 0xFFFF => format!("\\u{:04X}", c as u32),
                    c => format!("\\U{:08X}", c as u32),
                };
                self.write(&esc);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i + 1 != chars.len()
                {
                    self.newline_indent(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.write("\\");
                    }
                } else {
                    self.write(" ");
                }
                spaces = true;
            } else {
                self.write(c.encode_utf8(&mut [0; 4]));
                spaces = false;
            }
        }
        self.write("\"");
    }

    fn write_literal(&mut self, s: &str, indent: usize) {
        self.write("|");
        if s.starts_with(' ') || s.starts_with('\n') {
            self.write(&INDENT.to_string());
        }
        let chomp = if !s.ends_with('\n') {
            "-"
        } else if s == "\n" || s.ends_with("\n\n") {
            "+"
        } else {
            ""
        };
        self.write(chomp);
        // libyaml: a break after the header, then a break per newline of the text, and the
        // indent written only before text.
        self.write("\n");
        let mut at_line_start = true;
        for c in s.chars() {
            if c == '\n' {
                self.write("\n");
                at_line_start = true;
            } else {
                if at_line_start {
                    self.write(&" ".repeat(indent));
                    at_line_start = false;
                }
                self.write(c.encode_utf8(&mut [0; 4]));
            }
        }
    }
}

enum ResolvedTag {
    Str,
    Other,
}

/// yaml.v2 `resolve("", s)`: would this text, written plain, read back as a non-string?
fn resolve_plain_tag(s: &str) -> ResolvedTag {
    if s.is_empty() {
        return ResolvedTag::Other;
    }
    if !matches!(resolve_plain(s), Value::String(_)) || is_go_special_float(s) || is_timestamp(s) {
        ResolvedTag::Other
    } else {
        ResolvedTag::Str
    }
}

/// `strconv.ParseFloat` also accepts signed `inf`/`infinity`/`nan` spellings; yaml.v2 tries it
/// on scalars starting with a sign.
fn is_go_special_float(s: &str) -> bool {
    let Some(body) = s.strip_prefix(['+', '-']) else {
        return false;
    };
    matches!(
        body.to_ascii_lowercase().as_str(),
        "inf" | "infinity" | "nan"
    )
}

/// yaml.v2 reads plain `2006-1-2`, `2006-1-2T15:4:5Z…` and `2006-1-2 15:4:5` as timestamps.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[0].is_ascii_digit() {
        return false;
    }
    let (date, rest) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let date_ok = parts.len() == 3
        && parts[0].len() == 4
        && parts[1..].iter().all(|p| (1..=2).contains(&p.len()))
        && parts.iter().all(|p| p.bytes().all(|c| c.is_ascii_digit()));
    if !date_ok {
        return false;
    }
    match rest {
        None => true,
        Some(t) => {
            let hms: String = t
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ':')
                .collect();
            let fields: Vec<&str> = hms.split(':').collect();
            fields.len() == 3 && fields.iter().all(|f| (1..=2).contains(&f.len()))
        }
    }
}

/// yaml.v2 quotes sexagesimal-looking numbers such as `1:20` (YAML 1.1 base 60).
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let c = b[0];
    if !(c == b'+' || c == b'-' || c.is_ascii_digit()) || !s.contains(':') {
        return false;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (head, frac) = match body.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (body, None),
    };
    if let Some(f) = frac
        && !f.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return false;
    }
    let mut parts = head.split(':');
    let first = parts.next().unwrap_or("");
    if first.is_empty()
        || !first.as_bytes()[0].is_ascii_digit()
        || !first.bytes().all(|c| c.is_ascii_digit() || c == b'_')
    {
        return false;
    }
    let mut any = false;
    for p in parts {
        any = true;
        let ok = match p.len() {
            1 => p.as_bytes()[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&p.as_bytes()[0]) && p.as_bytes()[1].is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    any
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// libyaml `IS_PRINTABLE` (with unicode output enabled, as yaml.v2 sets it).
fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || u == 0x85
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
        || (0x10000..=0x10FFFF).contains(&u)
}

struct Analysis {
    block_plain_allowed: bool,
    single_allowed: bool,
    block_allowed: bool,
}

/// libyaml `yaml_emitter_analyze_scalar`, for block context.
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            block_plain_allowed: false,
            single_allowed: true,
            block_allowed: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = false;
    let mut line_breaks = false;
    let mut special = false;
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_ws = next.is_none_or(|n| n == ' ' || n == '\t' || is_break(n));
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_ws => block_indicators = true,
                '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) || c == '\u{FEFF}' {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == chars.len() {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == chars.len() {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = c == ' ' || c == '\t' || is_break(c);
    }
    let mut a = Analysis {
        block_plain_allowed: true,
        single_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.block_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` with yaml.v2's spellings of the specials.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            ".inf".into()
        } else {
            "-.inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    if !(-4..21).contains(&exp) || exp >= 21 {
        return format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn emit(src: &str) -> String {
        to_string(&parse(src).unwrap())
    }

    #[test]
    fn block_layout_like_yaml_v2() {
        let src =
            "name: kv\nlist:\n- a\n- b: 1\n  c: [x]\n- - x\nempty: {}\nnone: []\nnested:\n  k: v\n";
        assert_eq!(
            emit(src),
            "name: kv\nlist:\n- a\n- b: 1\n  c:\n  - x\n- - x\nempty: {}\nnone: []\nnested:\n  k: v\n"
        );
    }

    #[test]
    fn quoting_like_yaml_v2() {
        let v = Value::Seq(
            [
                "true",
                "1",
                "",
                "a: b",
                "- x",
                "#c",
                "x #y",
                "1.0.0",
                "yes",
                "1:20",
                "2019-01-02",
                "it's",
                " lead",
            ]
            .iter()
            .map(|s| Value::String(s.to_string()))
            .collect(),
        );
        assert_eq!(
            to_string(&v),
            "- \"true\"\n- \"1\"\n- \"\"\n- 'a: b'\n- '- x'\n- '#c'\n- 'x #y'\n- 1.0.0\n- \"yes\"\n- \"1:20\"\n- \"2019-01-02\"\n- it's\n- ' lead'\n"
        );
    }

    #[test]
    fn multi_line_strings_are_literal() {
        let mut m = crate::Mapping::new();
        m.insert("a".into(), "x\ny".into());
        m.insert("b".into(), "x\ny\n".into());
        m.insert("c".into(), "tab\there\n".into());
        assert_eq!(
            to_string(&Value::Map(m)),
            "a: |-\n  x\n  y\nb: |\n  x\n  y\nc: \"tab\\there\\n\"\n"
        );
    }

    #[test]
    fn long_plain_strings_fold_at_80_columns() {
        let words = vec!["word"; 30].join(" ");
        let out = to_string(&Value::Map(
            [("k".into(), words.clone().into())].into_iter().collect(),
        ));
        assert!(out.lines().count() > 1, "{out}");
        assert!(out.lines().nth(1).unwrap().starts_with("  word"));
        assert_eq!(
            parse(&out).unwrap().get("k").unwrap().as_str(),
            Some(words.as_str())
        );
    }

    #[test]
    fn floats_like_go() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(100.0), "100");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
    }

    #[test]
    fn sorted_keys_like_go_maps() {
        let v = parse("b: 1\na: 2\n_x: 3\nk10: 1\nk9: 1\n").unwrap();
        assert_eq!(to_string_sorted(&v), "_x: 3\na: 2\nb: 1\nk9: 1\nk10: 1\n");
    }
}
