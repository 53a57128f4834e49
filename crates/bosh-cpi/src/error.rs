//! Errors of CPI calls. A CPI's own error keeps its `type`, `message` and `ok_to_retry`.

use bosh_cpi_protocol::{CpiErrorKind, Method};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CpiError {
    /// The CPI answered with one of the error types the director knows.
    #[error(
        "CPI error '{kind}' with message '{message}' in '{method}' CPI method{}",
        request_suffix(.request_id)
    )]
    Cloud {
        kind: CpiErrorKind,
        message: String,
        /// As sent by the CPI; see [`CpiError::ok_to_retry`] for what the director honours.
        ok_to_retry: bool,
        method: String,
        request_id: Option<String>,
    },
    /// The CPI answered with an error type the director does not know.
    #[error(
        "Unknown CPI error '{error_type}' with message '{message}' in '{method}' CPI method{}",
        request_suffix(.request_id)
    )]
    Unknown {
        error_type: String,
        message: String,
        ok_to_retry: bool,
        method: String,
        request_id: Option<String>,
    },
    /// Stdout was not a valid response, or the result did not fit the method.
    #[error("Invalid CPI response to '{method}': {reason}")]
    InvalidResponse {
        method: String,
        reason: String,
        stdout: String,
        stderr: String,
        /// `None` when the process was killed by a signal. Otherwise ignored, as BOSH does.
        exit_status: Option<i32>,
    },
    #[error("CPI method '{method}' did not finish within {timeout:?}")]
    Timeout {
        method: String,
        timeout: Duration,
        stderr: String,
    },
    #[error("Failed to run cpi '{}'", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Talking to the CPI process failed after it started.
    #[error("I/O with cpi '{}' failed in '{method}'", path.display())]
    Io {
        path: PathBuf,
        method: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", unsupported_message(*.version))]
    UnsupportedApiVersion { version: Option<u32> },
}

fn request_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(" (CPI request ID: '{id}')"),
        None => String::new(),
    }
}

fn unsupported_message(version: Option<u32>) -> String {
    match version {
        Some(v) => format!(
            "CPI API version {v} is not supported. Minimum required version is {}.",
            bosh_cpi_protocol::MINIMUM_API_VERSION
        ),
        None => {
            "CPI did not report an API version in 'info'; API version 1 is not supported".to_owned()
        }
    }
}

impl CpiError {
    /// An error of a known kind raised by a built-in CPI.
    pub fn cloud(kind: CpiErrorKind, method: Method, message: impl Into<String>) -> Self {
        Self::Cloud {
            kind,
            message: message.into(),
            ok_to_retry: false,
            method: method.as_str().to_owned(),
            request_id: None,
        }
    }

    /// The known kind, if the CPI reported one.
    pub fn kind(&self) -> Option<CpiErrorKind> {
        match self {
            Self::Cloud { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Ruby's `rescue Kind`: this error is `kind` or a subclass of it.
    pub fn is(&self, kind: CpiErrorKind) -> bool {
        self.kind().is_some_and(|k| k.is_a(kind))
    }

    /// Retry is allowed only for the retriable family with `ok_to_retry: true`.
    pub fn ok_to_retry(&self) -> bool {
        match self {
            Self::Cloud {
                kind, ok_to_retry, ..
            } => kind.carries_ok_to_retry() && *ok_to_retry,
            _ => false,
        }
    }

    /// The CPI's own message, for errors the CPI reported.
    pub fn cpi_message(&self) -> Option<&str> {
        match self {
            Self::Cloud { message, .. } | Self::Unknown { message, .. } => Some(message),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_the_director_wording() {
        let e = CpiError::Cloud {
            kind: CpiErrorKind::VmNotFound,
            message: "gone".into(),
            ok_to_retry: true,
            method: "delete_vm".into(),
            request_id: Some("cpi-123456".into()),
        };
        assert_eq!(
            e.to_string(),
            "CPI error 'Bosh::Clouds::VMNotFound' with message 'gone' in 'delete_vm' CPI \
             method (CPI request ID: 'cpi-123456')"
        );
        assert!(e.is(CpiErrorKind::CloudError));
        assert!(!e.ok_to_retry(), "VMNotFound does not carry ok_to_retry");
        let e = CpiError::UnsupportedApiVersion { version: Some(1) };
        assert_eq!(
            e.to_string(),
            "CPI API version 1 is not supported. Minimum required version is 2."
        );
    }

    #[test]
    fn retriable_family_keeps_ok_to_retry() {
        let e = CpiError::Cloud {
            kind: CpiErrorKind::VmCreationFailed,
            message: "quota".into(),
            ok_to_retry: true,
            method: "create_vm".into(),
            request_id: None,
        };
        assert!(e.ok_to_retry());
        assert!(e.is(CpiErrorKind::CloudError));
        assert!(!e.is(CpiErrorKind::CpiError));
    }
}
