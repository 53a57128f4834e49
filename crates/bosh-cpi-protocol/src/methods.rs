//! Typed positional arguments and results of every v2 CPI method.
//!
//! Each method has an arguments struct implementing [`CpiMethod`], which converts to and from
//! the positional `arguments` array and names the result type.

use bosh_types::ids::{AgentId, DiskCid, StemcellCid, VmCid};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// A JSON object of IaaS-specific settings, passed through verbatim.
pub type CloudProperties = Map<String, Value>;
/// Network name → settings.
pub type Networks = BTreeMap<String, Network>;
/// Tags for VMs and disks: string keys and string values.
pub type Metadata = BTreeMap<String, String>;

/// The methods of the v2 contract that the director calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Info,
    CreateStemcell,
    DeleteStemcell,
    CreateVm,
    DeleteVm,
    HasVm,
    RebootVm,
    SetVmMetadata,
    CalculateVmCloudProperties,
    GetDisks,
    CreateDisk,
    DeleteDisk,
    HasDisk,
    AttachDisk,
    DetachDisk,
    SetDiskMetadata,
    ResizeDisk,
    UpdateDisk,
    SnapshotDisk,
    DeleteSnapshot,
}

impl Method {
    pub const ALL: [Method; 20] = [
        Self::Info,
        Self::CreateStemcell,
        Self::DeleteStemcell,
        Self::CreateVm,
        Self::DeleteVm,
        Self::HasVm,
        Self::RebootVm,
        Self::SetVmMetadata,
        Self::CalculateVmCloudProperties,
        Self::GetDisks,
        Self::CreateDisk,
        Self::DeleteDisk,
        Self::HasDisk,
        Self::AttachDisk,
        Self::DetachDisk,
        Self::SetDiskMetadata,
        Self::ResizeDisk,
        Self::UpdateDisk,
        Self::SnapshotDisk,
        Self::DeleteSnapshot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::CreateStemcell => "create_stemcell",
            Self::DeleteStemcell => "delete_stemcell",
            Self::CreateVm => "create_vm",
            Self::DeleteVm => "delete_vm",
            Self::HasVm => "has_vm",
            Self::RebootVm => "reboot_vm",
            Self::SetVmMetadata => "set_vm_metadata",
            Self::CalculateVmCloudProperties => "calculate_vm_cloud_properties",
            Self::GetDisks => "get_disks",
            Self::CreateDisk => "create_disk",
            Self::DeleteDisk => "delete_disk",
            Self::HasDisk => "has_disk",
            Self::AttachDisk => "attach_disk",
            Self::DetachDisk => "detach_disk",
            Self::SetDiskMetadata => "set_disk_metadata",
            Self::ResizeDisk => "resize_disk",
            Self::UpdateDisk => "update_disk",
            Self::SnapshotDisk => "snapshot_disk",
            Self::DeleteSnapshot => "delete_snapshot",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A positional `arguments` array that does not fit a method.
#[derive(Debug, thiserror::Error)]
pub enum ArgumentsError {
    #[error("argument {index} ('{name}') of '{method}' is invalid")]
    Invalid {
        method: Method,
        index: usize,
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// A method's arguments, with the type of its `result`.
pub trait CpiMethod: Sized {
    const METHOD: Method;
    type Output: Serialize + DeserializeOwned;
    /// The positional `arguments` array.
    fn to_arguments(&self) -> Vec<Value>;
    /// Reads the positional array; missing trailing arguments read as `null`, extra ones are
    /// ignored (a v3 director sends more to a v2 CPI).
    fn from_arguments(args: &[Value]) -> Result<Self, ArgumentsError>;
}

fn arg_to_value<T: Serialize>(v: &T) -> Value {
    // Plain data with string keys always serializes; a failure here is a programming error.
    serde_json::to_value(v).expect("CPI argument serializes to JSON")
}

fn arg_from_value<T: DeserializeOwned>(
    method: Method,
    args: &[Value],
    index: usize,
    name: &'static str,
) -> Result<T, ArgumentsError> {
    let v = args.get(index).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|source| ArgumentsError::Invalid {
        method,
        index,
        name,
        source,
    })
}

/// Declares an arguments struct; `?` fields are trailing optional arguments left out of the
/// array when `None` (like v3's `create_stemcell` tags).
macro_rules! cpi_method {
    (
        $(#[$doc:meta])*
        $name:ident => $method:ident -> $out:ty {
            $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* $(,)?
            $(; $( $(#[$odoc:meta])* ? $opt:ident : $oty:ty ),* $(,)? )?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $( $(#[$fdoc])* pub $field: $ty, )*
            $($( $(#[$odoc])* pub $opt: Option<$oty>, )*)?
        }

        impl CpiMethod for $name {
            const METHOD: Method = Method::$method;
            type Output = $out;

            fn to_arguments(&self) -> Vec<Value> {
                #[allow(unused_mut)]
                let mut args: Vec<Value> = vec![$( arg_to_value(&self.$field) ),*];
                $($(
                    if let Some(v) = &self.$opt {
                        args.push(arg_to_value(v));
                    }
                )*)?
                args
            }

            #[allow(unused_variables, unused_mut, unused_assignments)]
            fn from_arguments(args: &[Value]) -> Result<Self, ArgumentsError> {
                let mut index = 0usize;
                $(
                    let $field: $ty = arg_from_value(Method::$method, args, index, stringify!($field))?;
                    index += 1;
                )*
                $($(
                    let $opt: Option<$oty> = arg_from_value(Method::$method, args, index, stringify!($opt))?;
                    index += 1;
                )*)?
                Ok(Self { $($field,)* $($($opt,)*)? })
            }
        }
    };
}

cpi_method!(
    /// `info()`.
    InfoArgs => Info -> InfoResult {}
);
cpi_method!(
    /// `create_stemcell(image_path, cloud_properties[, {"tags": ...}])`.
    CreateStemcellArgs => CreateStemcell -> StemcellCid {
        /// The `image` file of the extracted stemcell, with `stemcell.MF` beside it.
        image_path: String,
        /// `stemcell.MF` `cloud_properties`.
        cloud_properties: CloudProperties;
        /// v3 only: `{"tags": {...}}`.
        ?options: StemcellOptions,
    }
);
cpi_method!(
    /// `delete_stemcell(stemcell_cid)`.
    DeleteStemcellArgs => DeleteStemcell -> () { stemcell_cid: StemcellCid }
);
cpi_method!(
    /// `create_vm(agent_id, stemcell_cid, cloud_properties, networks, disk_cids, env)`.
    CreateVmArgs => CreateVm -> CreateVmResult {
        agent_id: AgentId,
        stemcell_cid: StemcellCid,
        cloud_properties: CloudProperties,
        networks: Networks,
        /// Placement hint: the instance's current persistent disks (`null` reads as empty).
        disk_cids: DiskCids,
        /// Instance `env`, with `env.bosh` enriched by the director; passed to the agent.
        env: Map<String, Value>,
    }
);
cpi_method!(
    /// `delete_vm(vm_cid)`.
    DeleteVmArgs => DeleteVm -> () { vm_cid: VmCid }
);
cpi_method!(
    /// `has_vm(vm_cid)`.
    HasVmArgs => HasVm -> bool { vm_cid: VmCid }
);
cpi_method!(
    /// `reboot_vm(vm_cid)`.
    RebootVmArgs => RebootVm -> () { vm_cid: VmCid }
);
cpi_method!(
    /// `set_vm_metadata(vm_cid, metadata)`.
    SetVmMetadataArgs => SetVmMetadata -> () { vm_cid: VmCid, metadata: Metadata }
);
cpi_method!(
    /// `calculate_vm_cloud_properties(vm_resources)`.
    CalculateVmCloudPropertiesArgs => CalculateVmCloudProperties -> CloudProperties {
        vm_resources: VmResources,
    }
);
cpi_method!(
    /// `get_disks(vm_cid)`.
    GetDisksArgs => GetDisks -> Vec<DiskCid> { vm_cid: VmCid }
);
cpi_method!(
    /// `create_disk(size_mib, cloud_properties, vm_cid)`.
    CreateDiskArgs => CreateDisk -> DiskCid {
        size_mib: u64,
        cloud_properties: CloudProperties,
        /// Locality hint; `null` when the disk is created before its VM.
        vm_cid: Option<VmCid>,
    }
);
cpi_method!(
    /// `delete_disk(disk_cid)`.
    DeleteDiskArgs => DeleteDisk -> () { disk_cid: DiskCid }
);
cpi_method!(
    /// `has_disk(disk_cid)`.
    HasDiskArgs => HasDisk -> bool { disk_cid: DiskCid }
);
cpi_method!(
    /// `attach_disk(vm_cid, disk_cid)`; v2 returns the disk hint the agent needs.
    AttachDiskArgs => AttachDisk -> DiskHint { vm_cid: VmCid, disk_cid: DiskCid }
);
cpi_method!(
    /// `detach_disk(vm_cid, disk_cid)`.
    DetachDiskArgs => DetachDisk -> () { vm_cid: VmCid, disk_cid: DiskCid }
);
cpi_method!(
    /// `set_disk_metadata(disk_cid, metadata)`.
    SetDiskMetadataArgs => SetDiskMetadata -> () { disk_cid: DiskCid, metadata: Metadata }
);
cpi_method!(
    /// `resize_disk(disk_cid, new_size_mib)`.
    ResizeDiskArgs => ResizeDisk -> () { disk_cid: DiskCid, new_size_mib: u64 }
);
cpi_method!(
    /// `update_disk(disk_cid, new_size_mib, cloud_properties)`; `null` result = same cid.
    UpdateDiskArgs => UpdateDisk -> Option<DiskCid> {
        disk_cid: DiskCid,
        new_size_mib: u64,
        cloud_properties: CloudProperties,
    }
);
cpi_method!(
    /// `snapshot_disk(disk_cid, metadata)`.
    SnapshotDiskArgs => SnapshotDisk -> SnapshotCid { disk_cid: DiskCid, metadata: Metadata }
);
cpi_method!(
    /// `delete_snapshot(snapshot_cid)`.
    DeleteSnapshotArgs => DeleteSnapshot -> () { snapshot_cid: SnapshotCid }
);

/// `create_disk`'s `disk_cids` placement hint; `null` reads as no disks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct DiskCids(#[schemars(with = "Vec<String>")] pub Vec<DiskCid>);

impl<'de> Deserialize<'de> for DiskCids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(
            Option::<Vec<DiskCid>>::deserialize(d)?.unwrap_or_default(),
        ))
    }
}

/// v3 `create_stemcell` options.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StemcellOptions {
    #[serde(default)]
    pub tags: Metadata,
}

/// A snapshot id issued by `snapshot_disk`. Unlike other cids it may be empty: CPIs without
/// snapshots (docker) answer `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SnapshotCid(pub String);

impl fmt::Display for SnapshotCid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `info` result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct InfoResult {
    /// The CPI contract version; absent means v1, which the director refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<u32>,
    #[serde(default)]
    pub stemcell_formats: Vec<String>,
}

/// `create_vm` v2 result: `[vm_cid, networks]` on the wire. Reading also accepts a v1 bare
/// string cid.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateVmResult {
    pub vm_cid: VmCid,
    /// Echoed networks, "for future use"; the director reads only the cid.
    pub networks: Value,
}

impl Serialize for CreateVmResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.vm_cid, &self.networks).serialize(s)
    }
}

impl<'de> Deserialize<'de> for CreateVmResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            V2(VmCid, #[serde(default)] Value),
            V2Short((VmCid,)),
            V1(VmCid),
        }
        Ok(match Wire::deserialize(d)? {
            Wire::V2(vm_cid, networks) => Self { vm_cid, networks },
            Wire::V2Short((vm_cid,)) | Wire::V1(vm_cid) => Self {
                vm_cid,
                networks: Value::Null,
            },
        })
    }
}

/// `attach_disk` v2 result: how the agent finds the device, forwarded verbatim to the agent's
/// `add_persistent_disk`. E.g. `"/dev/sdf"`, `{"path": "/dev/sdc"}`, `{"lun": "0", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DiskHint {
    Path(String),
    Object(Map<String, Value>),
}

impl DiskHint {
    /// The director raises "No disk_hint" for a null or empty hint.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Path(s) => s.is_empty(),
            Self::Object(m) => m.is_empty(),
        }
    }
}

/// `calculate_vm_cloud_properties` input (`vm_resources` in a manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmResources {
    /// MiB.
    pub ram: u64,
    pub cpu: u64,
    /// MiB.
    pub ephemeral_disk_size: u64,
}

/// The kind of a network in `create_vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    Manual,
    Dynamic,
    Vip,
}

/// One entry of `create_vm`'s `networks`. Unknown keys are kept so that echoing the networks
/// back (and into agent settings) loses nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Network {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub network_type: Option<NetworkType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Prefix length; directors send it as a string or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<String>>,
    /// Which of `dns`/`gateway`/`addressable` this network is the default for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub cloud_properties: CloudProperties,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Set by container CPIs so the agent leaves interfaces alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preconfigured: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), json!(m.as_str()));
        }
        assert_eq!(Method::from_name("create_network"), None);
    }

    #[test]
    fn create_vm_arguments_are_positional_and_round_trip() {
        let agent = AgentId::new_v4();
        let raw = json!([
            agent.to_string(),
            "sc-1",
            {"instance_type": "m5.large"},
            {"default": {"type": "manual", "ip": "10.0.0.5", "netmask": "255.255.255.0",
                "gateway": "10.0.0.1", "dns": ["8.8.8.8"], "default": ["dns", "gateway"],
                "cloud_properties": {"subnet": "s-1"}, "nic_group": 1}},
            null,
            {"bosh": {"group": "g"}}
        ]);
        let args = CreateVmArgs::from_arguments(raw.as_array().unwrap()).unwrap();
        assert_eq!(args.agent_id, agent);
        assert_eq!(args.stemcell_cid.as_str(), "sc-1");
        assert!(args.disk_cids.0.is_empty());
        let net = &args.networks["default"];
        assert_eq!(net.network_type, Some(NetworkType::Manual));
        assert_eq!(net.ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(net.extra["nic_group"], json!(1));
        let back = Value::Array(args.to_arguments());
        let mut expected = raw.clone();
        expected[4] = json!([]);
        assert_eq!(back, expected);
    }

    #[test]
    fn bad_arguments_name_the_position() {
        let err = DeleteVmArgs::from_arguments(&[json!(42)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "argument 0 ('vm_cid') of 'delete_vm' is invalid"
        );
        assert!(
            CreateDiskArgs::from_arguments(&[json!(10), json!({})])
                .unwrap()
                .vm_cid
                .is_none()
        );
        assert!(CreateDiskArgs::from_arguments(&[json!("ten"), json!({})]).is_err());
    }

    #[test]
    fn create_stemcell_tags_are_sent_only_when_set() {
        let mut args = CreateStemcellArgs {
            image_path: "/tmp/image".into(),
            cloud_properties: Map::new(),
            options: None,
        };
        assert_eq!(args.to_arguments().len(), 2);
        args.options = Some(StemcellOptions {
            tags: [("a".into(), "b".into())].into(),
        });
        assert_eq!(
            Value::Array(args.to_arguments()),
            json!(["/tmp/image", {}, {"tags": {"a": "b"}}])
        );
        let read = CreateStemcellArgs::from_arguments(&args.to_arguments()).unwrap();
        assert_eq!(read, args);
    }

    #[test]
    fn create_vm_result_is_an_array_and_reads_v1_strings() {
        let r = CreateVmResult {
            vm_cid: "vm-1".parse().unwrap(),
            networks: json!({"a": {}}),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!(["vm-1", {"a": {}}])
        );
        let v1: CreateVmResult = serde_json::from_value(json!("vm-2")).unwrap();
        assert_eq!(v1.vm_cid.as_str(), "vm-2");
        let short: CreateVmResult = serde_json::from_value(json!(["vm-3"])).unwrap();
        assert_eq!(short.vm_cid.as_str(), "vm-3");
        assert!(serde_json::from_value::<CreateVmResult>(json!(null)).is_err());
    }

    #[test]
    fn disk_hint_is_string_or_object() {
        let s: DiskHint = serde_json::from_value(json!("/dev/sdf")).unwrap();
        assert_eq!(s, DiskHint::Path("/dev/sdf".into()));
        let o: DiskHint = serde_json::from_value(json!({"lun": "0"})).unwrap();
        assert!(matches!(o, DiskHint::Object(_)));
        assert!(DiskHint::Path(String::new()).is_empty());
        assert!(serde_json::from_value::<DiskHint>(json!(null)).is_err());
    }

    #[test]
    fn info_result_tolerates_missing_api_version() {
        let i: InfoResult = serde_json::from_value(json!({"stemcell_formats": ["x"]})).unwrap();
        assert_eq!(i.api_version, None);
        let i: InfoResult = serde_json::from_value(json!({"api_version": 2})).unwrap();
        assert_eq!(i.api_version, Some(2));
        assert!(i.stemcell_formats.is_empty());
    }
}
