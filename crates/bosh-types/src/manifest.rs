//! Deployment manifest v2 (formats.md §9, §12, §13): the typed model, the director's checks
//! on one manifest, and the cross-checks of a manifest against a cloud config.
//!
//! A manifest may still hold `((placeholders))` when parsed. Whole-value placeholders are
//! never type errors: `properties`/`env` are interpolated late by design, and everywhere
//! else the director interpolates before it checks, so the real value is not known yet.
//! Such fields take their "absent" value, and checks that need them are skipped.

use crate::cloud_config::{
    CloudConfig, Network, VmResources, canonical_name, ip_ranges, parse_vm_resources,
};
use crate::runtime_config::{Addon, AddonLevel, parse_addons};
use crate::validate::{
    Doc, Field, Loc, SourceLines, ValidationErrors, is_placeholder, serde_as_string, show,
};
use bosh_yaml::{Mapping, Value};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Most static IPs one `a - b` entry may expand to; a larger range is a mistake.
const MAX_STATIC_RANGE: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub director_uuid: Option<String>,
    pub releases: Vec<ReleaseRef>,
    #[serde(default)]
    pub stemcells: Vec<StemcellRef>,
    pub update: UpdateConfig,
    #[serde(default)]
    pub instance_groups: Vec<InstanceGroup>,
    #[serde(default)]
    pub addons: Vec<Addon>,
    /// Deprecated global properties; `Null` when absent.
    #[serde(default)]
    pub properties: Value,
    #[serde(default)]
    pub variables: Vec<Variable>,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    #[serde(default)]
    pub features: Features,
    #[serde(skip)]
    lines: SourceLines,
}

/// `releases[]` of a manifest or runtime config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRef {
    pub name: String,
    /// `latest` and `<prefix>.latest` are resolved by the director; numbers become strings.
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    /// A compiled release: compiled for this stemcell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stemcell: Option<OsVersion>,
    #[serde(default)]
    pub exported_from: Vec<OsVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsVersion {
    pub os: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StemcellRef {
    pub alias: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    #[default]
    Service,
    Errand,
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifecycle::Service => "service",
            Lifecycle::Errand => "errand",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Update policy

/// `canaries` / `max_in_flight`: an absolute count or a percentage of the group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Absolute(u32),
    Percent(u32),
}

impl Count {
    /// The count for a group of `size` instances: `floor(N * size / 100)` capped at `size`
    /// for percentages.
    pub fn resolve(&self, size: u32) -> u32 {
        match *self {
            Count::Absolute(n) => n,
            Count::Percent(p) => {
                let n = u64::from(p) * u64::from(size) / 100;
                u32::try_from(n.min(u64::from(size))).unwrap_or(size)
            }
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Absolute(n) => write!(f, "{n}"),
            Count::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || format!("expected an integer or a percentage like '25%', got '{s}'");
        let digits = |d: &str| -> Result<u32, String> {
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            d.parse().map_err(|_| bad())
        };
        match t.strip_suffix('%') {
            Some(p) => digits(p).map(Count::Percent),
            None => digits(t).map(Count::Absolute),
        }
    }
}

serde_as_string!(Count);

/// A watch time in milliseconds: `5000`, or `min-max` like `1000-30000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchTime {
    pub min_ms: u64,
    pub max_ms: u64,
}

impl fmt::Display for WatchTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min_ms, self.max_ms)
    }
}

impl FromStr for WatchTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || "watch time should be an integer or a range of two integers".to_owned();
        let num = |d: &str| -> Result<u64, String> {
            let d = d.trim();
            if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            d.parse().map_err(|_| bad())
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(s)?;
                (n, n)
            }
        };
        if min > max {
            return Err("min watch time cannot be greater than max watch time".into());
        }
        Ok(WatchTime {
            min_ms: min,
            max_ms: max,
        })
    }
}

serde_as_string!(WatchTime);

/// `update`, at deployment level (where the four timing/count keys are required) or as an
/// instance group override (where every key falls back to the deployment's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<Count>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_watch_time: Option<WatchTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_watch_time: Option<WatchTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_deploy_az_update_strategy: Option<String>,
}

impl UpdateConfig {
    /// This override with each missing key taken from `parent`.
    pub fn with_defaults(&self, parent: &UpdateConfig) -> UpdateConfig {
        UpdateConfig {
            canaries: self.canaries.or(parent.canaries),
            max_in_flight: self.max_in_flight.or(parent.max_in_flight),
            canary_watch_time: self.canary_watch_time.or(parent.canary_watch_time),
            update_watch_time: self.update_watch_time.or(parent.update_watch_time),
            serial: self.serial.or(parent.serial),
            vm_strategy: self
                .vm_strategy
                .clone()
                .or_else(|| parent.vm_strategy.clone()),
            initial_deploy_az_update_strategy: self
                .initial_deploy_az_update_strategy
                .clone()
                .or_else(|| parent.initial_deploy_az_update_strategy.clone()),
        }
    }
    /// Canaries for a group of `size` (may be 0).
    pub fn canaries_for(&self, size: u32) -> Option<u32> {
        self.canaries.map(|c| c.resolve(size))
    }
    /// Instances updated at once for a group of `size`: never less than 1.
    pub fn max_in_flight_for(&self, size: u32) -> Option<u32> {
        self.max_in_flight.map(|c| c.resolve(size).max(1))
    }
    /// Serial unless said otherwise.
    pub fn is_serial(&self) -> bool {
        self.serial.unwrap_or(true)
    }
}

fn typed<T: FromStr<Err = String>>(
    doc: &mut Doc,
    m: Option<&Mapping>,
    loc: &Loc,
    key: &str,
) -> Field<T> {
    match Doc::get(m, key) {
        None => Field::Absent,
        Some(v) if is_placeholder(v) => Field::Unknown,
        Some(v @ (Value::Int(_) | Value::String(_))) => {
            let text = match v {
                Value::Int(i) => i.to_string(),
                _ => v.as_str().unwrap_or_default().to_owned(),
            };
            match text.parse::<T>() {
                Ok(t) => Field::Present(t),
                Err(e) => {
                    doc.error(&loc.key(key), e);
                    Field::Unknown
                }
            }
        }
        Some(v) => {
            doc.error(
                &loc.key(key),
                format!("expected a string or integer, got {} {}", v.kind(), show(v)),
            );
            Field::Unknown
        }
    }
}

fn one_of(
    doc: &mut Doc,
    m: Option<&Mapping>,
    loc: &Loc,
    key: &str,
    allowed: &[&str],
) -> Option<String> {
    let v = doc.opt_string(m, loc, key)?;
    if allowed.contains(&v.as_str()) || is_placeholder(&Value::String(v.clone())) {
        Some(v)
    } else {
        doc.error(
            &loc.key(key),
            format!(
                "invalid value '{v}', expected one of: {}",
                allowed.join(", ")
            ),
        );
        None
    }
}

pub(crate) fn parse_update(
    doc: &mut Doc,
    v: &Value,
    loc: &Loc,
    deployment_level: bool,
) -> UpdateConfig {
    let m = doc.map(v, loc);
    if deployment_level && m.is_some() {
        for key in [
            "canaries",
            "max_in_flight",
            "canary_watch_time",
            "update_watch_time",
        ] {
            if !Doc::has(m, key) {
                doc.error(&loc.key(key), "is required");
            }
        }
    }
    UpdateConfig {
        canaries: typed(doc, m, loc, "canaries").ok(),
        max_in_flight: typed(doc, m, loc, "max_in_flight").ok(),
        canary_watch_time: typed(doc, m, loc, "canary_watch_time").ok(),
        update_watch_time: typed(doc, m, loc, "update_watch_time").ok(),
        serial: doc.bool(m, loc, "serial"),
        vm_strategy: one_of(
            doc,
            m,
            loc,
            "vm_strategy",
            &["delete-create", "create-swap-delete"],
        ),
        initial_deploy_az_update_strategy: one_of(
            doc,
            m,
            loc,
            "initial_deploy_az_update_strategy",
            &["serial", "parallel"],
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Instance groups

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceGroup {
    pub name: String,
    #[serde(default)]
    pub azs: Vec<String>,
    pub instances: u32,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    pub jobs: Vec<JobRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_resources: Option<VmResources>,
    #[serde(default)]
    pub vm_extensions: Vec<String>,
    pub stemcell: String,
    #[serde(default)]
    pub persistent_disk: PersistentDisk,
    pub networks: Vec<InstanceGroupNetwork>,
    /// Per-group override; see [`InstanceGroup::update_config`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateConfig>,
    #[serde(default)]
    pub migrated_from: Vec<MigratedFrom>,
    /// Deprecated group-level properties; `Null` when absent.
    #[serde(default)]
    pub properties: Value,
    /// Agent env, passed through; `Null` when absent.
    #[serde(default)]
    pub env: Value,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
}

impl InstanceGroup {
    /// The group's effective update policy.
    pub fn update_config(&self, deployment: &UpdateConfig) -> UpdateConfig {
        match &self.update {
            Some(u) => u.with_defaults(deployment),
            None => deployment.clone(),
        }
    }
    pub fn job(&self, name: &str) -> Option<&JobRef> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// The persistent disk of an instance group: at most one of the three manifest forms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistentDisk {
    #[default]
    None,
    /// `persistent_disk: <MB>` (0 means none).
    Size(u64),
    /// `persistent_disk_type: <name>`.
    Type(String),
    /// `persistent_disks: [{name, type}]`.
    Named(Vec<NamedDisk>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedDisk {
    pub name: String,
    #[serde(rename = "type")]
    pub disk_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRef {
    pub name: String,
    /// The release named in the manifest, or the only release when none was named.
    pub release: String,
    /// `None` when the job has no `properties` key (then group/global properties apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
    #[serde(default)]
    pub consumes: Value,
    #[serde(default)]
    pub provides: Value,
    #[serde(default)]
    pub custom_provider_definitions: Vec<CustomProvider>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomProvider {
    pub name: String,
    #[serde(rename = "type")]
    pub link_type: String,
    #[serde(default)]
    pub properties: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceGroupNetwork {
    pub name: String,
    /// Ranges expanded to single addresses, in manifest order.
    #[serde(default)]
    pub static_ips: Vec<IpAddr>,
    /// Subset of `dns`, `gateway`, `addressable` (filled in for a group's only network).
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigratedFrom {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Variables and features

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    #[serde(rename = "type")]
    pub var_type: String,
    #[serde(default)]
    pub options: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_mode: Option<String>,
    #[serde(default)]
    pub consumes: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_dns_addresses: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_short_dns_addresses: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_link_dns_names: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomize_az_placement: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converge_variables: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_tmpfs_config: Option<bool>,
}

/// `[A-Za-z0-9_\-/]+`, not ending with `/`, no `//`.
fn valid_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'/'))
        && !name.ends_with('/')
        && !name.contains("//")
}

pub(crate) fn parse_variables(doc: &mut Doc, m: Option<&Mapping>, top: &Loc) -> Vec<Variable> {
    let mut out = Vec::new();
    let Field::Present(items) = doc.seq(m, top, "variables") else {
        return out;
    };
    let mut names = Vec::new();
    for (at, v) in Doc::items(items, &top.key("variables"), "name") {
        let vm = doc.map(v, &at);
        if vm.is_none() {
            continue;
        }
        let name = doc.req_string(vm, &at, "name");
        if !name.is_empty() && !valid_variable_name(&name) {
            doc.error(
                &at.key("name"),
                format!("invalid variable name '{name}': use letters, digits, '_', '-' and '/', not ending in '/' and without '//'"),
            );
        }
        let var_type = doc.req_string(vm, &at, "type");
        let update_mode = one_of(
            doc,
            vm,
            &at,
            "update_mode",
            &["no-overwrite", "overwrite", "converge"],
        );
        names.push((name.clone(), at.clone()));
        out.push(Variable {
            name,
            var_type,
            options: doc.raw_map(vm, &at, "options"),
            update_mode,
            consumes: doc.raw_map(vm, &at, "consumes"),
        });
    }
    doc.unique(
        names.iter().map(|(n, l)| (n.as_str(), l.clone())),
        "variable name",
        "name",
    );
    out
}

pub(crate) fn parse_lifecycle(doc: &mut Doc, m: Option<&Mapping>, loc: &Loc) -> Option<Lifecycle> {
    match doc.opt_string(m, loc, "lifecycle")?.as_str() {
        "service" => Some(Lifecycle::Service),
        "errand" => Some(Lifecycle::Errand),
        other => {
            doc.error(
                &loc.key("lifecycle"),
                format!(
                    "invalid lifecycle '{other}', valid lifecycle profiles are: service, errand"
                ),
            );
            None
        }
    }
}

fn parse_os_version(doc: &mut Doc, v: &Value, loc: &Loc) -> Option<OsVersion> {
    let m = doc.map(v, loc);
    m?;
    Some(OsVersion {
        os: doc.req_string(m, loc, "os"),
        version: doc.req_string(m, loc, "version"),
    })
}

/// Parses `releases`; in a deployment manifest the legacy single `release` is refused next to
/// `releases`.
pub(crate) fn parse_releases(
    doc: &mut Doc,
    m: Option<&Mapping>,
    top: &Loc,
    manifest: bool,
) -> Vec<ReleaseRef> {
    let mut out = Vec::new();
    if manifest && Doc::has(m, "release") && Doc::has(m, "releases") {
        doc.error(
            &top.key("release"),
            "deployment manifest contains both 'release' and 'releases' sections, please use one of the two",
        );
    }
    let items = match doc.seq(m, top, "releases") {
        Field::Present(items) => items,
        Field::Absent if manifest && !Doc::has(m, "release") && m.is_some() => {
            doc.error(&top.key("releases"), "is required");
            return out;
        }
        _ => return out,
    };
    let mut names = Vec::new();
    for (at, v) in Doc::items(items, &top.key("releases"), "name") {
        let rm = doc.map(v, &at);
        if rm.is_none() {
            continue;
        }
        let name = doc.req_string(rm, &at, "name");
        let version = doc.string(rm, &at, "version");
        if version.is_absent() {
            doc.error(&at.key("version"), "is required");
        }
        let stemcell =
            Doc::get(rm, "stemcell").and_then(|s| parse_os_version(doc, s, &at.key("stemcell")));
        let mut exported_from = Vec::new();
        if let Field::Present(list) = doc.seq(rm, &at, "exported_from") {
            for (i, e) in list.iter().enumerate() {
                exported_from.extend(parse_os_version(doc, e, &at.key("exported_from").index(i)));
            }
        }
        names.push((name.clone(), at.clone()));
        out.push(ReleaseRef {
            name,
            version: version.ok(),
            url: doc.opt_string(rm, &at, "url"),
            sha1: doc.opt_string(rm, &at, "sha1"),
            stemcell,
            exported_from,
        });
    }
    doc.unique(
        names.iter().map(|(n, l)| (n.as_str(), l.clone())),
        "release name",
        "name",
    );
    out
}

fn parse_stemcells(doc: &mut Doc, m: Option<&Mapping>, top: &Loc) -> Vec<StemcellRef> {
    let mut out = Vec::new();
    let Field::Present(items) = doc.seq(m, top, "stemcells") else {
        return out;
    };
    let mut aliases = Vec::new();
    for (at, v) in Doc::items(items, &top.key("stemcells"), "alias") {
        let sm = doc.map(v, &at);
        if sm.is_none() {
            continue;
        }
        let alias = doc.req_string(sm, &at, "alias");
        let os = doc.opt_string(sm, &at, "os");
        let name = doc.opt_string(sm, &at, "name");
        match (&os, &name) {
            (Some(_), Some(_)) => doc.error(
                &at,
                "properties 'os' and 'name' are both specified for stemcell, choose one",
            ),
            (None, None) => doc.error(&at.key("os"), "is required (or 'name')"),
            _ => {}
        }
        let version = doc.req_string(sm, &at, "version");
        aliases.push((alias.clone(), at.clone()));
        out.push(StemcellRef {
            alias,
            os,
            name,
            version,
        });
    }
    doc.unique(
        aliases.iter().map(|(n, l)| (n.as_str(), l.clone())),
        "stemcell alias",
        "alias",
    );
    out
}

/// What an instance group's parse needs to know about the rest of the manifest.
struct Scope<'a> {
    releases: &'a [ReleaseRef],
    stemcells: &'a [StemcellRef],
}

const NETWORK_DEFAULTS: [&str; 3] = ["dns", "gateway", "addressable"];

fn parse_group_networks(
    doc: &mut Doc,
    m: Option<&Mapping>,
    loc: &Loc,
    group: &str,
    instances: Option<u32>,
) -> Vec<InstanceGroupNetwork> {
    let mut out: Vec<(Loc, InstanceGroupNetwork)> = Vec::new();
    let items = match doc.req_seq(m, loc, "networks") {
        Field::Present(items) => items,
        _ => return Vec::new(),
    };
    if items.is_empty() {
        doc.error(
            &loc.key("networks"),
            format!("instance group '{group}' must specify at least one network"),
        );
        return Vec::new();
    }
    for (i, v) in items.iter().enumerate() {
        let at = loc.key("networks").index(i);
        let nm = doc.map(v, &at);
        if nm.is_none() {
            continue;
        }
        let name = doc.req_string(nm, &at, "name");
        let default = doc.strings(nm, &at, "default");
        for (d, prop) in default.iter().enumerate() {
            if !NETWORK_DEFAULTS.contains(&prop.as_str()) {
                doc.error(
                    &at.key("default").index(d),
                    format!("invalid default network property '{prop}', valid properties are: dns, gateway, addressable"),
                );
            }
        }
        let mut static_ips: Vec<IpAddr> = Vec::new();
        for (r, range) in ip_ranges(doc, nm, &at, "static_ips")
            .into_iter()
            .enumerate()
        {
            let r_at = match Doc::get(nm, "static_ips") {
                Some(Value::Seq(_)) => at.key("static_ips").index(r),
                _ => at.key("static_ips"),
            };
            let Some(addrs) = range.addresses(MAX_STATIC_RANGE) else {
                doc.error(&r_at, format!("static IP range '{range}' is too large"));
                continue;
            };
            for ip in addrs {
                if static_ips.contains(&ip) {
                    doc.error(
                        &r_at,
                        format!(
                            "instance group '{group}' specifies static IP '{ip}' more than once"
                        ),
                    );
                } else {
                    static_ips.push(ip);
                }
            }
        }
        let has_static = Doc::has(nm, "static_ips")
            && !is_placeholder(Doc::get(nm, "static_ips").unwrap_or(&Value::Null));
        if let Some(n) = instances
            && has_static
            && static_ips.len() != n as usize
        {
            doc.error(
                &at.key("static_ips"),
                format!(
                    "instance group '{group}' has {n} instances but was allocated {} static IPs in network '{name}'",
                    static_ips.len()
                ),
            );
        }
        let nic_group = match Doc::get(nm, "nic_group") {
            Some(Value::Int(i)) => Some(i.to_string()),
            _ => doc.opt_string(nm, &at, "nic_group"),
        };
        out.push((
            at,
            InstanceGroupNetwork {
                name,
                static_ips,
                default,
                nic_group,
            },
        ));
    }

    if out.len() == 1 {
        let net = &mut out[0].1;
        for prop in ["dns", "gateway"] {
            if !net.default.iter().any(|d| d == prop) {
                net.default.push(prop.to_owned());
            }
        }
    } else if out.len() > 1 {
        let mut missing = Vec::new();
        for prop in NETWORK_DEFAULTS {
            let with: Vec<&(Loc, InstanceGroupNetwork)> = out
                .iter()
                .filter(|(_, n)| n.default.iter().any(|d| d == prop))
                .collect();
            if with.len() > 1 {
                let names: Vec<String> =
                    with.iter().map(|(_, n)| format!("'{}'", n.name)).collect();
                doc.error(
                    &with[1].0.key("default"),
                    format!(
                        "instance group '{group}' specified more than one network to contain default; '{prop}' has default networks: {}",
                        names.join(", ")
                    ),
                );
            }
            if with.is_empty() && prop != "addressable" {
                missing.push(prop);
            }
        }
        if !missing.is_empty() {
            doc.error(
                &loc.key("networks"),
                format!(
                    "instance group '{group}' must specify which network is default for {}, since it has more than one network configured",
                    missing.join(", ")
                ),
            );
        }
    }
    out.into_iter().map(|(_, n)| n).collect()
}

fn parse_persistent_disk(
    doc: &mut Doc,
    m: Option<&Mapping>,
    loc: &Loc,
    group: &str,
) -> PersistentDisk {
    let forms: Vec<&str> = [
        "persistent_disk",
        "persistent_disk_type",
        "persistent_disks",
    ]
    .into_iter()
    .filter(|k| Doc::has(m, k))
    .collect();
    if forms.len() > 1 {
        doc.error(
            &loc.key(forms[1]),
            format!(
                "instance group '{group}' specifies more than one of 'persistent_disk', 'persistent_disk_type' and 'persistent_disks'; choose one"
            ),
        );
    }
    if let Field::Present(size) = doc.int(m, loc, "persistent_disk", 0, i64::MAX) {
        return if size == 0 {
            PersistentDisk::None
        } else {
            PersistentDisk::Size(size.unsigned_abs())
        };
    }
    if let Some(t) = doc.opt_string(m, loc, "persistent_disk_type") {
        return PersistentDisk::Type(t);
    }
    if let Field::Present(items) = doc.seq(m, loc, "persistent_disks") {
        let mut disks = Vec::new();
        for (i, v) in items.iter().enumerate() {
            let at = loc.key("persistent_disks").index(i);
            let dm = doc.map(v, &at);
            if dm.is_none() {
                continue;
            }
            let name = doc.req_string(dm, &at, "name");
            let disk_type = doc.req_string(dm, &at, "type");
            if disks
                .iter()
                .any(|d: &NamedDisk| !name.is_empty() && d.name == name)
            {
                doc.error(
                    &at.key("name"),
                    format!("duplicate persistent disk name '{name}'"),
                );
            }
            disks.push(NamedDisk { name, disk_type });
        }
        return PersistentDisk::Named(disks);
    }
    PersistentDisk::None
}

fn parse_jobs(
    doc: &mut Doc,
    m: Option<&Mapping>,
    loc: &Loc,
    group: &str,
    scope: &Scope<'_>,
) -> Vec<JobRef> {
    let mut out = Vec::new();
    let Field::Present(items) = doc.req_seq(m, loc, "jobs") else {
        return out;
    };
    let mut names = Vec::new();
    for (at, v) in Doc::items(items, &loc.key("jobs"), "name") {
        let jm = doc.map(v, &at);
        if jm.is_none() {
            continue;
        }
        let name = doc.req_string(jm, &at, "name");
        let release = match doc.opt_string(jm, &at, "release") {
            Some(r) => {
                if !is_placeholder(&Value::String(r.clone()))
                    && !scope.releases.iter().any(|x| x.name == r)
                {
                    doc.error(
                        &at.key("release"),
                        format!("job '{name}' (instance group '{group}') references an unknown release '{r}'"),
                    );
                }
                r
            }
            None if scope.releases.len() == 1 => scope.releases[0].name.clone(),
            None => {
                doc.error(
                    &at.key("release"),
                    format!("cannot tell what release job '{name}' (instance group '{group}') is supposed to use, please explicitly specify one"),
                );
                String::new()
            }
        };
        let mut custom_provider_definitions = Vec::new();
        if let Field::Present(list) = doc.seq(jm, &at, "custom_provider_definitions") {
            for (i, cv) in list.iter().enumerate() {
                let cat = at.key("custom_provider_definitions").index(i);
                let cm = doc.map(cv, &cat);
                if cm.is_none() {
                    continue;
                }
                custom_provider_definitions.push(CustomProvider {
                    name: doc.req_string(cm, &cat, "name"),
                    link_type: doc.req_string(cm, &cat, "type"),
                    properties: doc.strings(cm, &cat, "properties"),
                });
            }
        }
        names.push((name.clone(), at.clone()));
        out.push(JobRef {
            properties: Doc::get(jm, "properties").map(|_| doc.raw_map(jm, &at, "properties")),
            consumes: doc.raw_map(jm, &at, "consumes"),
            provides: doc.raw_map(jm, &at, "provides"),
            name,
            release,
            custom_provider_definitions,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for (n, at) in &names {
        if !n.is_empty() && !seen.insert(n.as_str()) {
            doc.error(
                &at.key("name"),
                format!("colocated job '{n}' is already added to the instance group '{group}'"),
            );
        }
    }
    out
}

fn parse_instance_group(
    doc: &mut Doc,
    v: &Value,
    loc: &Loc,
    scope: &Scope<'_>,
) -> Option<InstanceGroup> {
    let m = doc.map(v, loc);
    m?;
    let name = doc.req_string(m, loc, "name");
    if !name.is_empty() && !is_placeholder(&Value::String(name.clone())) {
        let canon = canonical_name(&name);
        if canon.is_empty() || canon.len() > 63 || canon.starts_with('-') || canon.ends_with('-') {
            doc.error(&loc.key("name"), format!("instance group name '{name}' is not a valid DNS label once canonicalized ('{canon}')"));
        }
    }
    doc.reject(m, loc, "resource_pool", "'resource_pool' is no longer supported (manifest v1); use 'vm_type' and 'stemcell' with a cloud config");
    doc.reject(
        m,
        loc,
        "templates",
        "'templates' is no longer supported (manifest v1); use 'jobs'",
    );
    doc.reject(
        m,
        loc,
        "template",
        "'template' is no longer supported (manifest v1); use 'jobs'",
    );
    doc.reject(
        m,
        loc,
        "persistent_disk_pool",
        "'persistent_disk_pool' is no longer supported (manifest v1); use 'persistent_disk_type'",
    );

    let lifecycle = parse_lifecycle(doc, m, loc).unwrap_or_default();
    let instances = doc.req_int(m, loc, "instances", 0, i64::from(u32::MAX));
    let azs = doc.strings(m, loc, "azs");
    if matches!(Doc::get(m, "azs"), Some(Value::Seq(s)) if s.is_empty()) {
        doc.error(
            &loc.key("azs"),
            format!("instance group '{name}' has empty availability zones"),
        );
    }
    let jobs = parse_jobs(doc, m, loc, &name, scope);

    let vm_type = doc.opt_string(m, loc, "vm_type");
    let vm_resources = Doc::get(m, "vm_resources")
        .and_then(|v| parse_vm_resources(doc, v, &loc.key("vm_resources")));
    match (Doc::has(m, "vm_type"), Doc::has(m, "vm_resources")) {
        (false, false) if !Doc::has(m, "resource_pool") => doc.error(
            &loc.key("vm_type"),
            format!("instance group '{name}' is missing either 'vm_type' or 'vm_resources'"),
        ),
        (true, true) => doc.error(
            &loc.key("vm_resources"),
            format!("instance group '{name}' can only specify one of 'vm_type' or 'vm_resources'"),
        ),
        _ => {}
    }
    let vm_extensions = doc.strings(m, loc, "vm_extensions");

    let stemcell = if Doc::has(m, "resource_pool") {
        doc.opt_string(m, loc, "stemcell").unwrap_or_default()
    } else {
        doc.req_string(m, loc, "stemcell")
    };
    if !stemcell.is_empty()
        && !is_placeholder(&Value::String(stemcell.clone()))
        && !scope.stemcells.iter().any(|s| s.alias == stemcell)
    {
        doc.error(
            &loc.key("stemcell"),
            format!("instance group '{name}' references an unknown stemcell '{stemcell}'"),
        );
    }

    let persistent_disk = parse_persistent_disk(doc, m, loc, &name);
    let instance_count = instances.clone().ok().and_then(|n| u32::try_from(n).ok());
    let networks = parse_group_networks(doc, m, loc, &name, instance_count);
    let update = Doc::get(m, "update").map(|u| parse_update(doc, u, &loc.key("update"), false));

    let mut migrated_from = Vec::new();
    if let Field::Present(items) = doc.seq(m, loc, "migrated_from") {
        for (i, v) in items.iter().enumerate() {
            let at = loc.key("migrated_from").index(i);
            let mm = doc.map(v, &at);
            if mm.is_some() {
                migrated_from.push(MigratedFrom {
                    name: doc.req_string(mm, &at, "name"),
                    az: doc.opt_string(mm, &at, "az"),
                });
            }
        }
    }

    Some(InstanceGroup {
        azs,
        instances: instance_count.unwrap_or(0),
        lifecycle,
        jobs,
        vm_type,
        vm_resources,
        vm_extensions,
        stemcell,
        persistent_disk,
        networks,
        update,
        migrated_from,
        properties: doc.raw_map(m, loc, "properties"),
        env: doc.raw_map(m, loc, "env"),
        tags: doc.string_map(m, loc, "tags"),
        name,
    })
}

fn parse_features(doc: &mut Doc, m: Option<&Mapping>, top: &Loc) -> Features {
    let Some(v) = Doc::get(m, "features") else {
        return Features::default();
    };
    let loc = top.key("features");
    let fm = doc.map(v, &loc);
    let f = Features {
        use_dns_addresses: doc.bool(fm, &loc, "use_dns_addresses"),
        use_short_dns_addresses: doc.bool(fm, &loc, "use_short_dns_addresses"),
        use_link_dns_names: doc.bool(fm, &loc, "use_link_dns_names"),
        randomize_az_placement: doc.bool(fm, &loc, "randomize_az_placement"),
        converge_variables: doc.bool(fm, &loc, "converge_variables"),
        use_tmpfs_config: doc.bool(fm, &loc, "use_tmpfs_config"),
    };
    if f.use_link_dns_names == Some(true) {
        for (key, value) in [
            ("use_dns_addresses", f.use_dns_addresses),
            ("use_short_dns_addresses", f.use_short_dns_addresses),
        ] {
            if value == Some(false) {
                doc.error(
                    &loc.key(key),
                    format!("cannot be false when 'use_link_dns_names' is true: link DNS names need '{key}'"),
                );
            }
        }
    }
    f
}

/// Manifest keys that belong to a cloud config, and v1 keys, with the director's reasons.
const REFUSED_TOP_LEVEL: [(&str, &str); 8] = [
    (
        "vm_types",
        "deployment manifest contains 'vm_types' section, but this can only be set in a cloud-config",
    ),
    (
        "azs",
        "deployment manifest contains 'azs' section, but this can only be set in a cloud-config",
    ),
    (
        "disk_types",
        "deployment manifest contains 'disk_types' section, but this can only be set in a cloud-config",
    ),
    (
        "compilation",
        "deployment manifest contains 'compilation' section, but this can only be set in a cloud-config",
    ),
    (
        "networks",
        "deployment 'networks' are no longer supported; network definitions must now be provided in a cloud-config",
    ),
    (
        "disk_pools",
        "'disk_pools' is no longer supported; disk definitions must now be provided as disk_types in a cloud-config",
    ),
    (
        "jobs",
        "'jobs' are no longer supported, please use 'instance_groups' instead",
    ),
    (
        "resource_pools",
        "'resource_pools' is no longer supported; you must now define resources in a cloud-config",
    ),
];

impl Manifest {
    /// Parses a deployment manifest and checks everything that needs only the manifest.
    pub fn parse(src: &str) -> Result<Manifest, ValidationErrors> {
        let (root, mut doc) = Doc::parse(src)?;
        let top = Loc::root();
        let m = doc.map(&root, &top);
        for (key, msg) in REFUSED_TOP_LEVEL {
            doc.reject(m, &top, key, msg);
        }
        let name = doc.req_string(m, &top, "name");
        let director_uuid = doc.opt_string(m, &top, "director_uuid");
        let releases = parse_releases(&mut doc, m, &top, true);
        let stemcells = parse_stemcells(&mut doc, m, &top);
        let update = match Doc::get(m, "update") {
            Some(u) => parse_update(&mut doc, u, &top.key("update"), true),
            None => {
                if m.is_some() {
                    doc.error(&top.key("update"), "is required");
                }
                UpdateConfig::default()
            }
        };
        let scope = Scope {
            releases: &releases,
            stemcells: &stemcells,
        };
        let mut instance_groups = Vec::new();
        let mut group_names = Vec::new();
        if let Field::Present(items) = doc.seq(m, &top, "instance_groups") {
            for (at, v) in Doc::items(items, &top.key("instance_groups"), "name") {
                if let Some(g) = parse_instance_group(&mut doc, v, &at, &scope) {
                    group_names.push((canonical_name(&g.name), g.name.clone(), at));
                    instance_groups.push(g);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (canon, name, at) in &group_names {
            if !canon.is_empty() && !seen.insert(canon.as_str()) {
                doc.error(
                    &at.key("name"),
                    format!("duplicate instance group name '{name}' (canonical name '{canon}' already taken)"),
                );
            }
        }
        let release_names: Vec<String> = releases.iter().map(|r| r.name.clone()).collect();
        let addons = parse_addons(&mut doc, m, &top, AddonLevel::Deployment, &release_names);
        let properties = doc.raw_map(m, &top, "properties");
        let variables = parse_variables(&mut doc, m, &top);
        let tags = doc.string_map(m, &top, "tags");
        let features = parse_features(&mut doc, m, &top);
        let lines = doc.lines();
        doc.finish(Manifest {
            name,
            director_uuid,
            releases,
            stemcells,
            update,
            instance_groups,
            addons,
            properties,
            variables,
            tags,
            features,
            lines,
        })
    }

    /// The 1-based line of the node at `path` in the source this manifest was parsed from.
    pub fn line_of(&self, path: &bosh_yaml::Path) -> Option<usize> {
        self.lines.line_of_path(path)
    }

    pub fn instance_group(&self, name: &str) -> Option<&InstanceGroup> {
        self.instance_groups.iter().find(|g| g.name == name)
    }

    pub fn release(&self, name: &str) -> Option<&ReleaseRef> {
        self.releases.iter().find(|r| r.name == name)
    }

    pub fn stemcell(&self, alias: &str) -> Option<&StemcellRef> {
        self.stemcells.iter().find(|s| s.alias == alias)
    }

    fn group_loc(&self, i: usize) -> Loc {
        let list = Loc::root().key("instance_groups");
        let name = &self.instance_groups[i].name;
        if self
            .instance_groups
            .iter()
            .filter(|g| &g.name == name)
            .count()
            == 1
        {
            list.named(i, "name", name)
        } else {
            list.index(i)
        }
    }

    /// Checks the manifest's references into a cloud config: AZs, networks (and static IPs
    /// against their subnets), VM types and extensions, disk types.
    pub fn validate_against(&self, cloud: &CloudConfig) -> Result<(), ValidationErrors> {
        let mut doc = Doc::with_lines(self.lines.clone());
        let known =
            |name: &str| !name.is_empty() && !is_placeholder(&Value::String(name.to_owned()));
        for (gi, g) in self.instance_groups.iter().enumerate() {
            let loc = self.group_loc(gi);
            if g.azs.is_empty() && !cloud.azs.is_empty() {
                doc.error(
                    &loc.key("azs"),
                    format!("instance group '{}' must specify availability zones, as the cloud config defines them", g.name),
                );
            }
            for (i, az) in g.azs.iter().enumerate() {
                if known(az) && !cloud.azs.iter().any(|a| &a.name == az) {
                    doc.error(
                        &loc.key("azs").index(i),
                        format!("availability zone '{az}' is not defined in the cloud config"),
                    );
                }
            }
            if let Some(vt) = g.vm_type.as_deref().filter(|v| known(v))
                && !cloud.vm_types.iter().any(|v| v.name == vt)
            {
                doc.error(
                    &loc.key("vm_type"),
                    format!("vm type '{vt}' is not defined in the cloud config"),
                );
            }
            for (i, ext) in g.vm_extensions.iter().enumerate() {
                if known(ext) && !cloud.vm_extensions.iter().any(|v| &v.name == ext) {
                    doc.error(
                        &loc.key("vm_extensions").index(i),
                        format!("vm extension '{ext}' is not defined in the cloud config"),
                    );
                }
            }
            let disk_known = |t: &str| cloud.disk_types.iter().any(|d| d.name == t);
            match &g.persistent_disk {
                PersistentDisk::Type(t) if known(t) && !disk_known(t) => doc.error(
                    &loc.key("persistent_disk_type"),
                    format!("disk type '{t}' is not defined in the cloud config"),
                ),
                PersistentDisk::Named(disks) => {
                    for (i, d) in disks.iter().enumerate() {
                        if known(&d.disk_type) && !disk_known(&d.disk_type) {
                            doc.error(
                                &loc.key("persistent_disks").index(i).key("type"),
                                format!(
                                    "disk type '{}' is not defined in the cloud config",
                                    d.disk_type
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
            for (ni, net) in g.networks.iter().enumerate() {
                let at = loc.key("networks").index(ni);
                if !known(&net.name) {
                    continue;
                }
                let Some(cn) = cloud.network(&net.name) else {
                    doc.error(
                        &at.key("name"),
                        format!("network '{}' is not defined in the cloud config", net.name),
                    );
                    continue;
                };
                for az in g
                    .azs
                    .iter()
                    .filter(|a| cloud.azs.iter().any(|x| &x.name == *a))
                {
                    if !cn.serves_az(Some(az)) {
                        doc.error(
                            &at.key("name"),
                            format!(
                                "network '{}' has no subnet in availability zone '{az}'",
                                net.name
                            ),
                        );
                    }
                }
                check_static_ips(&mut doc, &at, g, net, cn);
            }
        }
        doc.finish(())
    }
}

fn check_static_ips(
    doc: &mut Doc,
    at: &Loc,
    g: &InstanceGroup,
    net: &InstanceGroupNetwork,
    cn: &Network,
) {
    if net.static_ips.is_empty() {
        return;
    }
    let at = at.key("static_ips");
    match cn {
        Network::Dynamic(_) => doc.error(
            &at,
            format!(
                "instance group '{}' using dynamic network '{}' cannot specify static IPs",
                g.name, net.name
            ),
        ),
        Network::Vip(_) => {}
        Network::Manual(m) => {
            for ip in &net.static_ips {
                let subnet = m
                    .subnets
                    .iter()
                    .find(|s| s.range.is_some_and(|r| r.contains(*ip)));
                let Some(subnet) = subnet else {
                    doc.error(
                        &at,
                        format!("static IP '{ip}' is out of network '{}' range", net.name),
                    );
                    continue;
                };
                if subnet.is_restricted(*ip) {
                    doc.error(
                        &at,
                        format!(
                            "static IP '{ip}' belongs to reserved range of network '{}'",
                            net.name
                        ),
                    );
                } else if !subnet.is_static(*ip) {
                    doc.error(
                        &at,
                        format!(
                            "static IP '{ip}' is not in the static range of network '{}'",
                            net.name
                        ),
                    );
                } else if !g.azs.is_empty()
                    && !subnet.azs.is_empty()
                    && !subnet.azs.iter().any(|a| g.azs.contains(a))
                {
                    doc.error(
                        &at,
                        format!(
                            "static IP '{ip}' is in a subnet of network '{}' whose availability zones ({}) are not among the instance group's",
                            net.name,
                            subnet.azs.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_resolve_percentages_with_floor_and_cap() {
        assert_eq!("25%".parse::<Count>().unwrap().resolve(10), 2);
        assert_eq!("150%".parse::<Count>().unwrap().resolve(4), 4);
        assert_eq!(" 3 ".parse::<Count>().unwrap().resolve(1), 3);
        assert!("-1".parse::<Count>().is_err());
        assert!("x%".parse::<Count>().is_err());
    }

    #[test]
    fn max_in_flight_is_at_least_one() {
        let u = UpdateConfig {
            max_in_flight: Some(Count::Percent(10)),
            ..Default::default()
        };
        assert_eq!(u.max_in_flight_for(3), Some(1));
        let c = UpdateConfig {
            canaries: Some(Count::Percent(10)),
            ..Default::default()
        };
        assert_eq!(c.canaries_for(3), Some(0));
    }

    #[test]
    fn watch_times_parse_single_and_range() {
        assert_eq!(
            "5000".parse::<WatchTime>().unwrap(),
            WatchTime {
                min_ms: 5000,
                max_ms: 5000
            }
        );
        assert_eq!(
            " 1000 - 30000 ".parse::<WatchTime>().unwrap(),
            WatchTime {
                min_ms: 1000,
                max_ms: 30000
            }
        );
        assert!("30000-1000".parse::<WatchTime>().is_err());
        assert!("1000-".parse::<WatchTime>().is_err());
        assert!("soon".parse::<WatchTime>().is_err());
    }

    #[test]
    fn variable_names_follow_the_director_rule() {
        assert!(valid_variable_name("/dir/dep/admin_password"));
        assert!(!valid_variable_name("a//b"));
        assert!(!valid_variable_name("a/"));
        assert!(!valid_variable_name("a b"));
    }
}
