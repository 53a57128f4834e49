//! The CPI error classes the director knows (`Bosh::Clouds::*`), their class families, and
//! the mappings old CPIs rely on to say "not implemented".

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the error `type`s the director accepts from a CPI; anything else is an
/// "Unknown CPI error".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CpiErrorKind {
    #[serde(rename = "Bosh::Clouds::CpiError")]
    CpiError,
    #[serde(rename = "Bosh::Clouds::NotSupported")]
    NotSupported,
    #[serde(rename = "Bosh::Clouds::NotImplemented")]
    NotImplemented,
    #[serde(rename = "Bosh::Clouds::CloudError")]
    CloudError,
    #[serde(rename = "Bosh::Clouds::VMNotFound")]
    VmNotFound,
    #[serde(rename = "Bosh::Clouds::NetworkNotFound")]
    NetworkNotFound,
    #[serde(rename = "Bosh::Clouds::NoDiskSpace")]
    NoDiskSpace,
    #[serde(rename = "Bosh::Clouds::DiskNotAttached")]
    DiskNotAttached,
    #[serde(rename = "Bosh::Clouds::DiskNotFound")]
    DiskNotFound,
    #[serde(rename = "Bosh::Clouds::VMCreationFailed")]
    VmCreationFailed,
}

/// The root classes under which the director groups CPI errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpiErrorFamily {
    /// `CpiError` and its children `NotImplemented`, `NotSupported`: the call itself failed.
    Cpi,
    /// `CloudError`, `VMNotFound`, `NetworkNotFound`: the IaaS said no.
    Cloud,
    /// `RetriableCloudError` children: the only ones whose `ok_to_retry` the director keeps.
    RetriableCloud,
}

impl CpiErrorKind {
    pub const ALL: [CpiErrorKind; 10] = [
        Self::CpiError,
        Self::NotSupported,
        Self::NotImplemented,
        Self::CloudError,
        Self::VmNotFound,
        Self::NetworkNotFound,
        Self::NoDiskSpace,
        Self::DiskNotAttached,
        Self::DiskNotFound,
        Self::VmCreationFailed,
    ];

    /// The wire `type` string, e.g. `Bosh::Clouds::VMNotFound`.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::CpiError => "Bosh::Clouds::CpiError",
            Self::NotSupported => "Bosh::Clouds::NotSupported",
            Self::NotImplemented => "Bosh::Clouds::NotImplemented",
            Self::CloudError => "Bosh::Clouds::CloudError",
            Self::VmNotFound => "Bosh::Clouds::VMNotFound",
            Self::NetworkNotFound => "Bosh::Clouds::NetworkNotFound",
            Self::NoDiskSpace => "Bosh::Clouds::NoDiskSpace",
            Self::DiskNotAttached => "Bosh::Clouds::DiskNotAttached",
            Self::DiskNotFound => "Bosh::Clouds::DiskNotFound",
            Self::VmCreationFailed => "Bosh::Clouds::VMCreationFailed",
        }
    }

    /// Exact match on a known wire `type`; no back-compat mapping (see [`Self::classify`]).
    pub fn from_type_name(type_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == type_name)
    }

    /// The kind the director raises for a CPI's `(type, message)`, applying the back-compat
    /// mappings to `NotImplemented` (Ruby CPIs' `InvalidCall` "Method is not known, got ...",
    /// older CPIs' `CloudError` "Invalid Method: ..."). `None` means an unknown error type.
    pub fn classify(type_name: &str, message: &str) -> Option<Self> {
        if type_name == "InvalidCall" && message.starts_with("Method is not known, got") {
            return Some(Self::NotImplemented);
        }
        if type_name == Self::CloudError.type_name() && message.starts_with("Invalid Method:") {
            return Some(Self::NotImplemented);
        }
        Self::from_type_name(type_name)
    }

    pub fn family(self) -> CpiErrorFamily {
        match self {
            Self::CpiError | Self::NotSupported | Self::NotImplemented => CpiErrorFamily::Cpi,
            Self::CloudError | Self::VmNotFound | Self::NetworkNotFound => CpiErrorFamily::Cloud,
            Self::NoDiskSpace
            | Self::DiskNotAttached
            | Self::DiskNotFound
            | Self::VmCreationFailed => CpiErrorFamily::RetriableCloud,
        }
    }

    /// The direct parent class, if it is itself one of the known kinds (`RetriableCloudError`
    /// is abstract and never sent, so its children report `CloudError`).
    pub fn parent(self) -> Option<Self> {
        match self {
            Self::CpiError | Self::CloudError => None,
            Self::NotSupported | Self::NotImplemented => Some(Self::CpiError),
            _ => Some(Self::CloudError),
        }
    }

    /// Ruby's `self <= other`: the same class or a subclass of it.
    pub fn is_a(self, other: Self) -> bool {
        let mut k = Some(self);
        while let Some(kind) = k {
            if kind == other {
                return true;
            }
            k = kind.parent();
        }
        false
    }

    /// Whether the director keeps the CPI's `ok_to_retry` for this kind (only the
    /// retriable family carries it into the exception).
    pub fn carries_ok_to_retry(self) -> bool {
        self.family() == CpiErrorFamily::RetriableCloud
    }
}

impl fmt::Display for CpiErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip_through_serde() {
        for kind in CpiErrorKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.type_name()));
            assert_eq!(serde_json::from_str::<CpiErrorKind>(&json).unwrap(), kind);
            assert_eq!(CpiErrorKind::from_type_name(kind.type_name()), Some(kind));
        }
        assert_eq!(CpiErrorKind::from_type_name("Bosh::Clouds::Nope"), None);
    }

    #[test]
    fn families_follow_the_director_class_tree() {
        use CpiErrorKind::*;
        assert!(NotImplemented.is_a(CpiError));
        assert!(NotSupported.is_a(CpiError));
        assert!(!NotImplemented.is_a(CloudError));
        assert!(VmNotFound.is_a(CloudError));
        assert!(DiskNotFound.is_a(CloudError));
        assert!(!CloudError.is_a(VmNotFound));
        assert!(VmCreationFailed.carries_ok_to_retry());
        assert!(!VmNotFound.carries_ok_to_retry());
        assert!(!CpiError.carries_ok_to_retry());
    }

    #[test]
    fn classify_maps_legacy_not_implemented_errors() {
        use CpiErrorKind::*;
        assert_eq!(
            CpiErrorKind::classify("InvalidCall", "Method is not known, got 'foo'"),
            Some(NotImplemented)
        );
        assert_eq!(
            CpiErrorKind::classify("InvalidCall", "Arguments are not correct"),
            None
        );
        assert_eq!(
            CpiErrorKind::classify("Bosh::Clouds::CloudError", "Invalid Method: foo"),
            Some(NotImplemented)
        );
        assert_eq!(
            CpiErrorKind::classify("Bosh::Clouds::CloudError", "boom"),
            Some(CloudError)
        );
        assert_eq!(CpiErrorKind::classify("Unknown", "boom"), None);
    }
}
