//! Typed identifiers. UUID kinds are minted by the director; CPI ids are opaque strings
//! the CPI hands back. Each is its own type so that a disk id can never be passed where a
//! VM id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// An id that is not a valid UUID, or an empty CPI id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: '{input}'")]
pub struct IdParseError {
    pub kind: &'static str,
    pub input: String,
}

macro_rules! uuid_kind {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new_v4() -> Self {
                Self(Uuid::new_v4())
            }
            pub fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // BOSH shows ids in the hyphenated lowercase form.
                write!(f, "{}", self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $label, input: s.to_owned() })
            }
        }
    };
}

uuid_kind!(
    /// A deployment's id.
    DeploymentId,
    "deployment id"
);
uuid_kind!(
    /// An instance's immutable id (the `<uuid>` of `<group>/<uuid>`).
    InstanceId,
    "instance id"
);
/// A director task's id. The director API speaks sequential integers (the official CLI
/// decodes them as ints), so unlike the other director-minted ids this is not a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TaskId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(TaskId).map_err(|_| IdParseError {
            kind: "task id",
            input: s.to_owned(),
        })
    }
}
uuid_kind!(
    /// The id an agent uses on NATS (`agent.<id>`).
    AgentId,
    "agent id"
);

macro_rules! cpi_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a CPI-issued id; CPIs never return empty ids.
            pub fn new(id: impl Into<String>) -> Result<Self, IdParseError> {
                let id = id.into();
                if id.is_empty() {
                    return Err(IdParseError { kind: $label, input: id });
                }
                Ok(Self(id))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

cpi_id!(
    /// A VM id issued by a CPI's `create_vm`.
    VmCid,
    "VM cid"
);
cpi_id!(
    /// A disk id issued by a CPI's `create_disk`.
    DiskCid,
    "disk cid"
);
cpi_id!(
    /// A stemcell id issued by a CPI's `create_stemcell`.
    StemcellCid,
    "stemcell cid"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_through_strings_and_json() {
        let id = InstanceId::new_v4();
        let parsed: InstanceId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        let back: InstanceId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn uuid_ids_reject_garbage() {
        let err = "not-a-uuid".parse::<AgentId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid agent id: 'not-a-uuid'");
    }

    #[test]
    fn task_ids_are_integers_on_the_wire() {
        let id: TaskId = "42".parse().unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(id.to_string(), "42");
        assert!("4a".parse::<TaskId>().is_err());
    }

    #[test]
    fn cpi_ids_are_opaque_and_non_empty() {
        let vm: VmCid = "i-0abc".parse().unwrap();
        assert_eq!(vm.as_str(), "i-0abc");
        assert_eq!(serde_json::to_string(&vm).unwrap(), "\"i-0abc\"");
        assert!(DiskCid::new("").is_err());
        let sc: StemcellCid = serde_json::from_str("\"ami-1\"").unwrap();
        assert_eq!(sc.to_string(), "ami-1");
    }
}
