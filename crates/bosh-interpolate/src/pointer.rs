//! go-patch paths: `/key`, `/0`, `/-`, `/name=value`, `?` optional suffixes, `:prev`/`:next`
//! and `:before`/`:after` modifiers, and RFC 6901-style escapes (`~0` = `~`, `~1` = `/`,
//! `~7` = `:`).

use std::fmt;

/// Why a path string is not a valid go-patch path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("Expected to start with '/'")]
    NotRooted,
    /// The reference names the first modifier of the segment, whichever one was wrong.
    #[error(
        "Expected to find one of the following modifiers: 'prev', 'next', 'before', or 'after' but found '{found}'"
    )]
    UnknownModifier { found: String },
    #[error("Expected not to find any modifiers with after last index token")]
    ModifierOnAfterLast,
    #[error("Expected not to find any modifiers with key token")]
    ModifierOnKey,
}

/// A modifier on an index or matching-index segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    Prev,
    Next,
    Before,
    After,
}

impl Modifier {
    fn name(self) -> &'static str {
        match self {
            Modifier::Prev => "prev",
            Modifier::Next => "next",
            Modifier::Before => "before",
            Modifier::After => "after",
        }
    }

    /// The Go type name the reference prints in modifier errors.
    pub(crate) fn go_type(self) -> &'static str {
        match self {
            Modifier::Prev => "patch.PrevModifier",
            Modifier::Next => "patch.NextModifier",
            Modifier::Before => "patch.BeforeModifier",
            Modifier::After => "patch.AfterModifier",
        }
    }
}

/// One segment of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Root,
    Index {
        index: i64,
        modifiers: Vec<Modifier>,
    },
    AfterLastIndex,
    MatchingIndex {
        key: String,
        value: String,
        optional: bool,
        modifiers: Vec<Modifier>,
    },
    Key {
        key: String,
        optional: bool,
    },
}

impl Token {
    /// The Go type name the reference prints for unexpected tokens.
    pub(crate) fn go_type(&self) -> &'static str {
        match self {
            Token::Root => "patch.RootToken",
            Token::Index { .. } => "patch.IndexToken",
            Token::AfterLastIndex => "patch.AfterLastIndexToken",
            Token::MatchingIndex { .. } => "patch.MatchingIndexToken",
            Token::Key { .. } => "patch.KeyToken",
        }
    }
}

/// A parsed go-patch path; the first token is always [`Token::Root`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<Token>,
}

impl Pointer {
    /// Parses a path. The empty string is the whole document.
    pub fn parse(text: &str) -> Result<Pointer, PointerError> {
        let mut tokens = vec![Token::Root];
        if text.is_empty() {
            return Ok(Pointer { tokens });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NotRooted);
        };
        let pieces: Vec<&str> = rest.split('/').collect();
        // Once a segment is optional, every later key or matching segment is too.
        let mut optional = false;
        for (i, piece) in pieces.iter().enumerate() {
            let is_last = i == pieces.len() - 1;
            let mut parts = piece.split(':');
            let raw = parts.next().unwrap_or("");
            let mod_texts: Vec<&str> = parts.collect();
            let mut modifiers = Vec::new();
            for m in &mod_texts {
                modifiers.push(match *m {
                    "prev" => Modifier::Prev,
                    "next" => Modifier::Next,
                    "before" => Modifier::Before,
                    "after" => Modifier::After,
                    _ => {
                        return Err(PointerError::UnknownModifier {
                            found: mod_texts[0].to_owned(),
                        });
                    }
                });
            }
            let tok = unescape(raw);

            if is_last && tok == "-" {
                if !modifiers.is_empty() {
                    return Err(PointerError::ModifierOnAfterLast);
                }
                tokens.push(Token::AfterLastIndex);
                continue;
            }
            if let Some(index) = go_atoi(&tok) {
                tokens.push(Token::Index { index, modifiers });
                continue;
            }
            if tok.ends_with('?') {
                optional = true;
            }
            if let Some((key, value)) = tok.split_once('=') {
                tokens.push(Token::MatchingIndex {
                    key: key.to_owned(),
                    value: value.strip_suffix('?').unwrap_or(value).to_owned(),
                    optional,
                    modifiers,
                });
                continue;
            }
            if !modifiers.is_empty() {
                return Err(PointerError::ModifierOnKey);
            }
            tokens.push(Token::Key {
                key: tok.strip_suffix('?').unwrap_or(&tok).to_owned(),
                optional,
            });
        }
        Ok(Pointer { tokens })
    }

    /// A pointer from tokens; a leading [`Token::Root`] is added when missing.
    pub fn from_tokens(mut tokens: Vec<Token>) -> Pointer {
        if tokens.first() != Some(&Token::Root) {
            tokens.insert(0, Token::Root);
        }
        Pointer { tokens }
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The pointer made of the first `n` tokens (the path up to a point of failure).
    pub(crate) fn prefix(&self, n: usize) -> Pointer {
        Pointer {
            tokens: self.tokens[..n.min(self.tokens.len())].to_vec(),
        }
    }
}

/// `strconv.Atoi`: optional sign and decimal digits that fit in 64 bits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('0') => {
                    chars.next();
                    out.push('~');
                    continue;
                }
                Some('1') => {
                    chars.next();
                    out.push('/');
                    continue;
                }
                Some('7') => {
                    chars.next();
                    out.push(':');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1").replace(':', "~7")
}

fn modifiers_text(modifiers: &[Modifier]) -> String {
    modifiers.iter().map(|m| format!(":{}", m.name())).collect()
}

impl fmt::Display for Pointer {
    /// The reference's `Pointer.String()`: only the first optional segment carries the `?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::with_capacity(self.tokens.len());
        let mut optional_shown = false;
        for token in &self.tokens {
            parts.push(match token {
                Token::Root => String::new(),
                Token::Index { index, modifiers } => {
                    format!("{index}{}", modifiers_text(modifiers))
                }
                Token::AfterLastIndex => "-".to_owned(),
                Token::MatchingIndex {
                    key,
                    value,
                    optional,
                    modifiers,
                } => {
                    let mut value = escape(value);
                    if *optional && !optional_shown {
                        value.push('?');
                        optional_shown = true;
                    }
                    format!("{}={value}{}", escape(key), modifiers_text(modifiers))
                }
                Token::Key { key, optional } => {
                    let mut key = escape(key);
                    if *optional && !optional_shown {
                        key.push('?');
                        optional_shown = true;
                    }
                    key
                }
            });
        }
        f.write_str(&parts.join("/"))
    }
}

impl std::str::FromStr for Pointer {
    type Err = PointerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pointer::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_token_kind() {
        let p = Pointer::parse("/a/0/name=x/-").expect("valid path");
        assert_eq!(
            p.tokens(),
            &[
                Token::Root,
                Token::Key {
                    key: "a".into(),
                    optional: false
                },
                Token::Index {
                    index: 0,
                    modifiers: vec![]
                },
                Token::MatchingIndex {
                    key: "name".into(),
                    value: "x".into(),
                    optional: false,
                    modifiers: vec![]
                },
                Token::AfterLastIndex,
            ]
        );
    }

    #[test]
    fn optional_is_sticky_and_printed_once() {
        let p = Pointer::parse("/a?/b/name=c").expect("valid path");
        assert!(p.tokens()[1..].iter().all(|t| matches!(
            t,
            Token::Key { optional: true, .. } | Token::MatchingIndex { optional: true, .. }
        )));
        assert_eq!(p.to_string(), "/a?/b/name=c");
    }

    #[test]
    fn escapes_round_trip() {
        let p = Pointer::parse("/a~1b/c~0d/e~7f").expect("valid path");
        assert_eq!(
            p.tokens()[1],
            Token::Key {
                key: "a/b".into(),
                optional: false
            }
        );
        assert_eq!(
            p.tokens()[2],
            Token::Key {
                key: "c~d".into(),
                optional: false
            }
        );
        assert_eq!(
            p.tokens()[3],
            Token::Key {
                key: "e:f".into(),
                optional: false
            }
        );
        assert_eq!(p.to_string(), "/a~1b/c~0d/e~7f");
    }

    #[test]
    fn dash_is_a_key_unless_last() {
        let p = Pointer::parse("/-/x").expect("valid path");
        assert_eq!(
            p.tokens()[1],
            Token::Key {
                key: "-".into(),
                optional: false
            }
        );
    }

    #[test]
    fn modifiers_and_negative_indexes() {
        let p = Pointer::parse("/-1:prev/name=a:next:after").expect("valid path");
        assert_eq!(
            p.tokens()[1],
            Token::Index {
                index: -1,
                modifiers: vec![Modifier::Prev]
            }
        );
        assert_eq!(p.to_string(), "/-1:prev/name=a:next:after");
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(Pointer::parse("a"), Err(PointerError::NotRooted));
        assert_eq!(
            Pointer::parse("/-:prev"),
            Err(PointerError::ModifierOnAfterLast)
        );
        assert_eq!(Pointer::parse("/a:prev"), Err(PointerError::ModifierOnKey));
        assert_eq!(
            Pointer::parse("/0:prev:nope").map_err(|e| e.to_string()),
            Err("Expected to find one of the following modifiers: 'prev', 'next', 'before', or 'after' but found 'prev'".to_owned())
        );
    }

    #[test]
    fn empty_path_is_the_document() {
        let p = Pointer::parse("").expect("valid path");
        assert_eq!(p.tokens(), &[Token::Root]);
        assert_eq!(p.to_string(), "");
    }
}
