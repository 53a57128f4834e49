//! The error tree the reference CLI builds (plain messages, "context: cause" wraps and lists
//! of errors) and its two renderings: the one-line form Go's `Error()` gives, used when an
//! error is embedded in another message, and the indented form the CLI prints at exit.

use crate::patch::{OpDefinitionError, PatchError};
use crate::pointer::PointerError;

/// An error from interpolation, ops files or variable generation.
///
/// `Display` renders the whole tree the way the reference CLI prints a failing command's
/// error: a wrapped error as `context:` with its cause indented two spaces below, a list of
/// errors as `- ` bullets. [`Error::flat`] gives the single-line form.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.multiline())]
pub enum Error {
    /// A message without a cause.
    Message(String),
    /// A go-patch operation failed.
    Patch(PatchError),
    /// An ops file entry could not be turned into an operation.
    OpDefinition(OpDefinitionError),
    /// A go-patch path could not be parsed.
    Pointer(PointerError),
    /// A YAML document could not be parsed.
    Yaml(bosh_yaml::ParseError),
    /// A message wrapping the error that caused it; both are part of what is printed.
    Context { context: String, cause: Box<Error> },
    /// Several independent errors, printed as a bulleted list.
    Multi(Vec<Error>),
}

impl Error {
    pub fn msg(text: impl Into<String>) -> Self {
        Error::Message(text.into())
    }

    /// Wraps `self` in a context message.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context {
            context: context.into(),
            cause: Box::new(self),
        }
    }

    /// The one-line form (`context: cause`, list entries joined by newlines).
    pub fn flat(&self) -> String {
        match self {
            Error::Message(m) => m.clone(),
            Error::Patch(e) => e.to_string(),
            Error::OpDefinition(e) => e.to_string(),
            Error::Pointer(e) => e.to_string(),
            Error::Yaml(e) => e.to_string(),
            Error::Context { context, cause } => format!("{context}: {}", cause.flat()),
            Error::Multi(errs) => errs.iter().map(Error::flat).collect::<Vec<_>>().join("\n"),
        }
    }

    /// The indented form the reference CLI prints when a command fails.
    pub fn multiline(&self) -> String {
        self.prefixed("", "")
    }

    fn prefixed(&self, prefix: &str, bullet: &str) -> String {
        let head = format!("{prefix}{bullet}");
        let prefix = format!("{prefix}{}", " ".repeat(bullet.len()));
        match self {
            Error::Context { context, cause } => {
                format!(
                    "{head}{context}:\n{}",
                    cause.prefixed(&format!("{prefix}  "), "")
                )
            }
            Error::Multi(errs) => errs
                .iter()
                .map(|e| e.prefixed(&prefix, "- "))
                .collect::<Vec<_>>()
                .join("\n"),
            other => format!("{head}{}", other.flat()),
        }
    }
}

impl From<PatchError> for Error {
    fn from(e: PatchError) -> Self {
        Error::Patch(e)
    }
}
impl From<PointerError> for Error {
    fn from(e: PointerError) -> Self {
        Error::Pointer(e)
    }
}
impl From<OpDefinitionError> for Error {
    fn from(e: OpDefinitionError) -> Self {
        Error::OpDefinition(e)
    }
}
impl From<bosh_yaml::ParseError> for Error {
    fn from(e: bosh_yaml::ParseError) -> Self {
        Error::Yaml(e)
    }
}

/// The message Go's `os` package gives for a failed file operation (`open <path>: no such
/// file or directory`), which the reference embeds in its errors.
pub(crate) fn io_message(op: &str, path: &str, err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let reason = match err.kind() {
        ErrorKind::NotFound => "no such file or directory".to_owned(),
        ErrorKind::PermissionDenied => "permission denied".to_owned(),
        ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => {
            // Strip Rust's " (os error N)" suffix to read like Go's syscall messages.
            let text = err.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    };
    format!("{op} {path}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_indents_causes_and_bullets_lists() {
        let err = Error::Multi(vec![
            Error::Multi(vec![Error::msg("a"), Error::msg("b")])
                .context("Expected to find variables"),
        ]);
        assert_eq!(
            err.to_string(),
            "- Expected to find variables:\n    - a\n    - b"
        );
        assert_eq!(err.flat(), "Expected to find variables: a\nb");
    }

    #[test]
    fn nested_context_indents_each_level() {
        let err = Error::msg("inner").context("middle").context("outer");
        assert_eq!(err.to_string(), "outer:\n  middle:\n    inner");
        assert_eq!(err.flat(), "outer: middle: inner");
    }
}
