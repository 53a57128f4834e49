//! Cloud config (formats.md §10.1, §12.1): AZs, networks, VM types and extensions, disk types
//! and compilation, with the director's checks on subnets and references.

use crate::cpi_config::CpiConfig;
use crate::validate::{Doc, Field, Loc, SourceLines, ValidationErrors, serde_as_string, show};
use bosh_yaml::{Mapping, Value};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

// ---------------------------------------------------------------------------------------------
// IP helpers

fn ip_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), true),
        IpAddr::V6(a) => (u128::from(a), false),
    }
}

fn ip_from_bits(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        // Callers only pass values derived from IPv4 addresses, which fit in 32 bits.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

fn width(v4: bool) -> u8 {
    if v4 { 32 } else { 128 }
}

/// An IP network `a.b.c.d/n`; host bits are cleared on parse, as BOSH's IPAddr does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    pub fn new(ip: IpAddr, prefix_len: u8) -> Option<Cidr> {
        let (bits, v4) = ip_bits(ip);
        let w = width(v4);
        if prefix_len > w {
            return None;
        }
        let host_bits = u32::from(w - prefix_len);
        let host_mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        Some(Cidr {
            network: ip_from_bits(bits & !host_mask, v4),
            prefix_len,
        })
    }
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }
    /// The network address (first of the range).
    pub fn first(&self) -> IpAddr {
        self.network
    }
    /// The broadcast address (last of the range).
    pub fn last(&self) -> IpAddr {
        let (bits, v4) = ip_bits(self.network);
        let host_bits = u32::from(width(v4) - self.prefix_len);
        let host_mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        ip_from_bits(bits | host_mask, v4)
    }
    /// How many addresses, saturating at `u128::MAX` for `::/0`.
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(width(self.is_ipv4()) - self.prefix_len);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }
    pub fn netmask(&self) -> IpAddr {
        let v4 = self.is_ipv4();
        let w = u32::from(width(v4));
        let ones = u32::from(self.prefix_len);
        let mask = if ones == 0 {
            0
        } else {
            (u128::MAX << (128 - ones)) >> (128 - w)
        };
        ip_from_bits(mask, v4)
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
            && ip_bits(ip).0 >= ip_bits(self.first()).0
            && ip_bits(ip).0 <= ip_bits(self.last()).0
    }
    pub fn as_range(&self) -> IpRange {
        IpRange {
            first: self.first(),
            last: self.last(),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid CIDR '{s}'");
        let (ip, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let len: u8 = len.trim().parse().map_err(|_| bad())?;
        Cidr::new(ip, len).ok_or_else(bad)
    }
}

serde_as_string!(Cidr);

/// An inclusive range of addresses, written `a`, `a - b` or `a/n` in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl IpRange {
    pub fn single(ip: IpAddr) -> Self {
        IpRange {
            first: ip,
            last: ip,
        }
    }
    pub fn len(&self) -> u128 {
        (ip_bits(self.last).0 - ip_bits(self.first).0).saturating_add(1)
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4()
            && ip_bits(ip).0 >= ip_bits(self.first).0
            && ip_bits(ip).0 <= ip_bits(self.last).0
    }
    pub fn overlaps(&self, other: &IpRange) -> bool {
        self.first.is_ipv4() == other.first.is_ipv4()
            && ip_bits(self.first).0 <= ip_bits(other.last).0
            && ip_bits(other.first).0 <= ip_bits(self.last).0
    }
    /// The addresses, or `None` when there are more than `limit`.
    pub fn addresses(&self, limit: usize) -> Option<Vec<IpAddr>> {
        if self.len() > limit as u128 {
            return None;
        }
        let (a, v4) = ip_bits(self.first);
        let b = ip_bits(self.last).0;
        Some((a..=b).map(|bits| ip_from_bits(bits, v4)).collect())
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{} - {}", self.first, self.last)
        }
    }
}

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid IP or IP range '{s}'");
        if s.contains('/') {
            return s.parse::<Cidr>().map(|c| c.as_range()).map_err(|_| bad());
        }
        // IPv6 addresses contain no '-', so a '-' always separates a range.
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if a.is_ipv4() != b.is_ipv4() || ip_bits(a).0 > ip_bits(b).0 {
                return Err(bad());
            }
            return Ok(IpRange { first: a, last: b });
        }
        s.trim()
            .parse::<IpAddr>()
            .map(IpRange::single)
            .map_err(|_| bad())
    }
}

serde_as_string!(IpRange);

/// Reads `key` as a list of IPs/ranges (a single string is accepted, as the director does).
pub(crate) fn ip_ranges(doc: &mut Doc, m: Option<&Mapping>, loc: &Loc, key: &str) -> Vec<IpRange> {
    let items: Vec<(Loc, &Value)> = match Doc::get(m, key) {
        None => return Vec::new(),
        Some(Value::Seq(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (loc.key(key).index(i), v))
            .collect(),
        Some(v @ Value::String(_)) => vec![(loc.key(key), v)],
        Some(v) if crate::validate::is_placeholder(v) => return Vec::new(),
        Some(v) => {
            doc.error(
                &loc.key(key),
                format!("expected an array of IPs, got {}", v.kind()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (at, v) in items {
        match v.as_str().map(str::parse::<IpRange>) {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => doc.error(&at, e),
            None if crate::validate::is_placeholder(v) => {}
            None => doc.error(&at, format!("expected an IP or IP range, got {}", show(v))),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Model

/// A whole cloud config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudConfig {
    #[serde(default)]
    pub azs: Vec<AvailabilityZone>,
    pub networks: Vec<Network>,
    #[serde(default)]
    pub vm_types: Vec<VmType>,
    #[serde(default)]
    pub vm_extensions: Vec<VmExtension>,
    #[serde(default)]
    pub disk_types: Vec<DiskType>,
    /// Required in a complete config; one of several named configs may lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compilation: Option<Compilation>,
    #[serde(skip)]
    pub(crate) lines: SourceLines,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityZone {
    pub name: String,
    #[serde(default)]
    pub cloud_properties: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpi: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Network {
    Manual(ManualNetwork),
    Dynamic(DynamicNetwork),
    Vip(VipNetwork),
}

impl Network {
    pub fn name(&self) -> &str {
        match self {
            Network::Manual(n) => &n.name,
            Network::Dynamic(n) => &n.name,
            Network::Vip(n) => &n.name,
        }
    }
    /// The AZs named by this network's subnets (empty when its subnets have none).
    pub fn az_names(&self) -> Vec<&str> {
        let azs: Vec<&Vec<String>> = match self {
            Network::Manual(n) => n.subnets.iter().map(|s| &s.azs).collect(),
            Network::Dynamic(n) => n.subnets.iter().map(|s| &s.azs).collect(),
            Network::Vip(n) => n.subnets.iter().map(|s| &s.azs).collect(),
        };
        let mut out: Vec<&str> = Vec::new();
        for name in azs.into_iter().flatten() {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        out
    }
    /// Whether an instance in `az` (or without AZ) can get an address on this network.
    pub fn serves_az(&self, az: Option<&str>) -> bool {
        match self {
            Network::Vip(n) if n.subnets.is_empty() => true,
            Network::Dynamic(n) if n.subnets.is_empty() => az.is_none(),
            _ => {
                let names = self.az_names();
                match az {
                    Some(az) => names.contains(&az),
                    None => names.is_empty(),
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualNetwork {
    pub name: String,
    pub subnets: Vec<ManualSubnet>,
    #[serde(default)]
    pub managed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualSubnet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub range: Option<Cidr>,
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub reserved: Vec<IpRange>,
    #[serde(default, rename = "static")]
    pub static_ips: Vec<IpRange>,
    /// `az` and `azs` both land here.
    #[serde(default)]
    pub azs: Vec<String>,
    #[serde(default)]
    pub cloud_properties: Value,
    /// Prefix-delegation size; when absent, single addresses (32 or 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask_bits: Option<u8>,
}

impl ManualSubnet {
    /// Network, broadcast, gateway and reserved addresses: never handed out.
    pub fn restricted(&self) -> Vec<IpRange> {
        let mut out = Vec::new();
        if let Some(range) = self.range {
            out.push(IpRange::single(range.first()));
            out.push(IpRange::single(range.last()));
        }
        if let Some(gw) = self.gateway {
            out.push(IpRange::single(gw));
        }
        out.extend(self.reserved.iter().copied());
        out
    }
    pub fn is_static(&self, ip: IpAddr) -> bool {
        self.static_ips.iter().any(|r| r.contains(ip))
    }
    pub fn is_restricted(&self, ip: IpAddr) -> bool {
        self.restricted().iter().any(|r| r.contains(ip))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicNetwork {
    pub name: String,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub cloud_properties: Value,
    #[serde(default)]
    pub subnets: Vec<DynamicSubnet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicSubnet {
    #[serde(default)]
    pub azs: Vec<String>,
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    #[serde(default)]
    pub cloud_properties: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipNetwork {
    pub name: String,
    #[serde(default)]
    pub cloud_properties: Value,
    #[serde(default)]
    pub subnets: Vec<VipSubnet>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VipSubnet {
    #[serde(default)]
    pub azs: Vec<String>,
    #[serde(default, rename = "static")]
    pub static_ips: Vec<IpRange>,
    #[serde(default)]
    pub cloud_properties: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmType {
    pub name: String,
    #[serde(default)]
    pub cloud_properties: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmExtension {
    pub name: String,
    #[serde(default)]
    pub cloud_properties: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskType {
    pub name: String,
    /// MB.
    pub disk_size: u64,
    #[serde(default)]
    pub cloud_properties: Value,
}

/// Sizes for the CPI to pick a VM from, in MB: `vm_resources` of an instance group or of
/// compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmResources {
    pub cpu: u32,
    pub ram: u64,
    pub ephemeral_disk_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compilation {
    pub workers: u32,
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_resources: Option<VmResources>,
    #[serde(default)]
    pub vm_extensions: Vec<String>,
    #[serde(default)]
    pub cloud_properties: Value,
    #[serde(default)]
    pub reuse_compilation_vms: bool,
    #[serde(default)]
    pub orphan_workers: bool,
    #[serde(default)]
    pub env: Value,
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Reads `vm_resources` (all three keys required integers).
pub(crate) fn parse_vm_resources(doc: &mut Doc, v: &Value, loc: &Loc) -> Option<VmResources> {
    let m = doc.map(v, loc)?;
    let cpu = doc
        .req_int(Some(m), loc, "cpu", 1, i64::from(u32::MAX))
        .ok();
    let ram = doc.req_int(Some(m), loc, "ram", 1, i64::MAX).ok();
    let disk = doc
        .req_int(Some(m), loc, "ephemeral_disk_size", 1, i64::MAX)
        .ok();
    Some(VmResources {
        cpu: u32::try_from(cpu?).ok()?,
        ram: u64::try_from(ram?).ok()?,
        ephemeral_disk_size: u64::try_from(disk?).ok()?,
    })
}

/// Reads a subnet's `az`/`azs` and checks them against the declared AZs.
fn subnet_azs(
    doc: &mut Doc,
    m: Option<&Mapping>,
    loc: &Loc,
    network: &str,
    known: &[String],
) -> Vec<String> {
    let mut azs = Vec::new();
    if Doc::has(m, "az") && Doc::has(m, "azs") {
        doc.error(
            loc,
            format!("network '{network}' subnet specifies both 'az' and 'azs'; choose one"),
        );
    }
    if let Some(az) = doc.opt_string(m, loc, "az") {
        azs.push((az, loc.key("az")));
    }
    if Doc::has(m, "azs") {
        let list = doc.strings(m, loc, "azs");
        if list.is_empty() && matches!(Doc::get(m, "azs"), Some(Value::Seq(_))) {
            doc.error(&loc.key("azs"), "must not be empty");
        }
        azs.extend(
            list.into_iter()
                .enumerate()
                .map(|(i, a)| (a, loc.key("azs").index(i))),
        );
    }
    for (az, at) in &azs {
        if !known.iter().any(|k| k == az) {
            doc.error(
                at,
                format!("network '{network}' refers to an unknown availability zone '{az}'"),
            );
        }
    }
    azs.into_iter().map(|(a, _)| a).collect()
}

fn dns_list(doc: &mut Doc, m: Option<&Mapping>, loc: &Loc) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (i, s) in doc.strings(m, loc, "dns").into_iter().enumerate() {
        match s.trim().parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => doc.error(
                &loc.key("dns").index(i),
                format!("invalid DNS server IP '{s}'"),
            ),
        }
    }
    out
}

fn parse_ip(doc: &mut Doc, m: Option<&Mapping>, loc: &Loc, key: &str) -> Field<IpAddr> {
    match doc.string(m, loc, key) {
        Field::Present(s) if crate::validate::is_placeholder(&Value::String(s.clone())) => {
            Field::Unknown
        }
        Field::Present(s) => match s.trim().parse::<IpAddr>() {
            Ok(ip) => Field::Present(ip),
            Err(_) => {
                doc.error(&loc.key(key), format!("invalid IP '{s}'"));
                Field::Unknown
            }
        },
        Field::Absent => Field::Absent,
        Field::Unknown => Field::Unknown,
    }
}

fn parse_manual_subnet(
    doc: &mut Doc,
    v: &Value,
    loc: &Loc,
    network: &str,
    azs: &[String],
    managed: bool,
) -> Option<ManualSubnet> {
    let m = doc.map(v, loc);
    m?;
    let name = doc.opt_string(m, loc, "name");
    let range = match doc.string(m, loc, "range") {
        Field::Present(s) if crate::validate::is_placeholder(&Value::String(s.clone())) => None,
        Field::Present(s) => match s.parse::<Cidr>() {
            Ok(c) if c.size() < 2 => {
                doc.error(
                    &loc.key("range"),
                    format!("invalid network range '{s}', should include at least 2 IPs"),
                );
                None
            }
            Ok(c) => Some(c),
            Err(e) => {
                doc.error(&loc.key("range"), e);
                None
            }
        },
        Field::Absent => {
            if !managed {
                doc.error(&loc.key("range"), "is required");
            }
            None
        }
        Field::Unknown => None,
    };
    let gateway = match parse_ip(doc, m, loc, "gateway") {
        Field::Present(ip) => Some(ip),
        Field::Absent => {
            if !managed {
                doc.error(&loc.key("gateway"), "is required");
            }
            None
        }
        Field::Unknown => None,
    };
    if let (Some(range), Some(gw)) = (range, gateway) {
        let at = loc.key("gateway");
        let invalid = |why: &str| format!("invalid gateway for network '{network}': {why}");
        if !range.contains(gw) {
            doc.error(&at, invalid("must be inside the range"));
        } else if gw == range.first() {
            doc.error(&at, invalid("can't be the network id"));
        } else if gw == range.last() {
            doc.error(&at, invalid("can't be the broadcast IP"));
        }
    }
    let reserved = ip_ranges(doc, m, loc, "reserved");
    let static_ips = ip_ranges(doc, m, loc, "static");
    let mut subnet = ManualSubnet {
        name,
        range,
        gateway,
        dns: dns_list(doc, m, loc),
        reserved,
        static_ips,
        azs: subnet_azs(doc, m, loc, network, azs),
        cloud_properties: doc.raw_map(m, loc, "cloud_properties"),
        prefix: None,
        netmask_bits: doc
            .int(m, loc, "netmask_bits", 0, 128)
            .ok()
            .and_then(|b| u8::try_from(b).ok()),
    };
    if let Some(range) = range {
        for (i, r) in subnet.reserved.iter().enumerate() {
            if !(range.contains(r.first) && range.contains(r.last)) {
                doc.error(
                    &list_item(m, loc, "reserved", i),
                    format!("reserved IP '{r}' is out of network '{network}' range"),
                );
            }
        }
        let restricted = subnet.restricted();
        for (i, r) in subnet.static_ips.iter().enumerate() {
            let at = list_item(m, loc, "static", i);
            if restricted.iter().any(|x| x.overlaps(r)) {
                doc.error(
                    &at,
                    format!("static IP '{r}' is in network '{network}' reserved range"),
                );
            } else if !(range.contains(r.first) && range.contains(r.last)) {
                doc.error(
                    &at,
                    format!("static IP '{r}' is out of network '{network}' range"),
                );
            }
        }
    }
    subnet.prefix = match Doc::get(m, "prefix") {
        None => None,
        Some(v) => {
            let n = match v {
                Value::Int(i) => u8::try_from(*i).ok(),
                Value::String(s) => s.trim().parse::<u8>().ok(),
                _ => None,
            };
            let max = range.map_or(128, |r| width(r.is_ipv4()));
            match n {
                Some(p) if p <= max => {
                    if let Some(r) = range.filter(|r| r.prefix_len() > p) {
                        doc.error(
                            &loc.key("prefix"),
                            format!(
                                "prefix size '{p}' is larger than range prefix '{}'",
                                r.prefix_len()
                            ),
                        );
                    }
                    Some(p)
                }
                _ if crate::validate::is_placeholder(v) => None,
                _ => {
                    doc.error(&loc.key("prefix"), format!("invalid prefix {}", show(v)));
                    None
                }
            }
        }
    };
    Some(subnet)
}

/// Location of item `i` of `key`, which may have been written as a single string.
fn list_item(m: Option<&Mapping>, loc: &Loc, key: &str, i: usize) -> Loc {
    match Doc::get(m, key) {
        Some(Value::Seq(_)) => loc.key(key).index(i),
        _ => loc.key(key),
    }
}

fn parse_network(doc: &mut Doc, v: &Value, loc: &Loc, azs: &[String]) -> Option<Network> {
    let m = doc.map(v, loc);
    m?;
    let name = doc.req_string(m, loc, "name");
    let kind = doc
        .opt_string(m, loc, "type")
        .unwrap_or_else(|| "manual".into());
    match kind.as_str() {
        "manual" => {
            let managed = doc.bool(m, loc, "managed").unwrap_or(false);
            let mut subnets: Vec<(Loc, ManualSubnet)> = Vec::new();
            if let Field::Present(items) = doc.req_seq(m, loc, "subnets") {
                for (i, s) in items.iter().enumerate() {
                    let at = loc.key("subnets").index(i);
                    if let Some(sn) = parse_manual_subnet(doc, s, &at, &name, azs, managed) {
                        subnets.push((at, sn));
                    }
                }
            }
            for (n, (at, sn)) in subnets.iter().enumerate() {
                for (_, earlier) in &subnets[..n] {
                    if let (Some(a), Some(b)) = (sn.range, earlier.range)
                        && a.as_range().overlaps(&b.as_range())
                    {
                        doc.error(
                            &at.key("range"),
                            format!("network '{name}' has overlapping subnets"),
                        );
                    }
                }
                if let Some((_, first)) = subnets.first()
                    && sn.prefix != first.prefix
                {
                    doc.error(
                        at,
                        format!("network '{name}' has subnets that define different prefixes"),
                    );
                }
            }
            let with_azs = subnets.iter().filter(|(_, s)| !s.azs.is_empty()).count();
            if with_azs > 0 && with_azs < subnets.len() {
                doc.error(
                    &loc.key("subnets"),
                    format!("subnets on network '{name}' must all either specify availability zone or not"),
                );
            }
            Some(Network::Manual(ManualNetwork {
                name,
                subnets: subnets.into_iter().map(|(_, s)| s).collect(),
                managed,
            }))
        }
        "dynamic" => {
            let mut subnets = Vec::new();
            if let Field::Present(items) = doc.seq(m, loc, "subnets") {
                for key in ["dns", "cloud_properties"] {
                    if Doc::has(m, key) {
                        doc.error(
                            &loc.key(key),
                            format!(
                                "network '{name}' can't use top-level '{key}' together with subnets"
                            ),
                        );
                    }
                }
                for (i, s) in items.iter().enumerate() {
                    let at = loc.key("subnets").index(i);
                    let sm = doc.map(s, &at);
                    if sm.is_none() {
                        continue;
                    }
                    subnets.push(DynamicSubnet {
                        azs: subnet_azs(doc, sm, &at, &name, azs),
                        dns: dns_list(doc, sm, &at),
                        cloud_properties: doc.raw_map(sm, &at, "cloud_properties"),
                    });
                }
            }
            Some(Network::Dynamic(DynamicNetwork {
                dns: dns_list(doc, m, loc),
                cloud_properties: doc.raw_map(m, loc, "cloud_properties"),
                name,
                subnets,
            }))
        }
        "vip" => {
            let mut subnets = Vec::new();
            if let Field::Present(items) = doc.seq(m, loc, "subnets") {
                for (i, s) in items.iter().enumerate() {
                    let at = loc.key("subnets").index(i);
                    let sm = doc.map(s, &at);
                    if sm.is_none() {
                        continue;
                    }
                    subnets.push(VipSubnet {
                        azs: subnet_azs(doc, sm, &at, &name, azs),
                        static_ips: ip_ranges(doc, sm, &at, "static"),
                        cloud_properties: doc.raw_map(sm, &at, "cloud_properties"),
                    });
                }
            }
            Some(Network::Vip(VipNetwork {
                cloud_properties: doc.raw_map(m, loc, "cloud_properties"),
                name,
                subnets,
            }))
        }
        other => {
            doc.error(&loc.key("type"), format!("invalid network type '{other}'"));
            None
        }
    }
}

/// Lowercase, `_` → `-`, other characters outside `[a-z0-9-]` dropped: how the director
/// compares network and instance group names (and builds DNS names from them).
pub fn canonical_name(name: &str) -> String {
    name.to_lowercase()
        .replace('_', "-")
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .collect()
}

/// Parses a list of `{name, cloud_properties}` items.
fn named_items(
    doc: &mut Doc,
    m: Option<&Mapping>,
    key: &str,
    what: &str,
) -> Vec<(Loc, String, Value)> {
    let loc = Loc::root().key(key);
    let mut out = Vec::new();
    if let Field::Present(items) = doc.seq(m, &Loc::root(), key) {
        for (at, v) in Doc::items(items, &loc, "name") {
            let im = doc.map(v, &at);
            if im.is_none() {
                continue;
            }
            let name = doc.req_string(im, &at, "name");
            let cp = doc.raw_map(im, &at, "cloud_properties");
            out.push((at, name, cp));
        }
    }
    doc.unique(
        out.iter().map(|(at, n, _)| (n.as_str(), at.clone())),
        what,
        "name",
    );
    out
}

impl CloudConfig {
    /// Parses and checks a complete cloud config (`compilation` required).
    pub fn parse(src: &str) -> Result<CloudConfig, ValidationErrors> {
        Self::parse_inner(src, true)
    }

    /// Parses one of several named cloud configs: `compilation` may be absent, and the
    /// reference checks that need the other configs wait for [`CloudConfig::merge`].
    pub fn parse_fragment(src: &str) -> Result<CloudConfig, ValidationErrors> {
        Self::parse_inner(src, false)
    }

    fn parse_inner(src: &str, complete: bool) -> Result<CloudConfig, ValidationErrors> {
        let (root, mut doc) = Doc::parse(src)?;
        let top = Loc::root();
        let m = doc.map(&root, &top);
        if m.is_none() && !crate::validate::is_placeholder(&root) {
            return doc.finish(CloudConfig::empty());
        }

        let mut azs = Vec::new();
        if let Field::Present(items) = doc.seq(m, &top, "azs") {
            for (at, v) in Doc::items(items, &top.key("azs"), "name") {
                let am = doc.map(v, &at);
                if am.is_none() {
                    continue;
                }
                azs.push((
                    at.clone(),
                    AvailabilityZone {
                        name: doc.req_string(am, &at, "name"),
                        cloud_properties: doc.raw_map(am, &at, "cloud_properties"),
                        cpi: doc.opt_string(am, &at, "cpi"),
                    },
                ));
            }
        }
        doc.unique(
            azs.iter().map(|(at, a)| (a.name.as_str(), at.clone())),
            "az name",
            "name",
        );
        let az_names: Vec<String> = azs.iter().map(|(_, a)| a.name.clone()).collect();

        let mut networks = Vec::new();
        match doc.seq(m, &top, "networks") {
            Field::Present(items) => {
                if items.is_empty() && complete {
                    doc.error(&top.key("networks"), "no networks specified");
                }
                for (at, v) in Doc::items(items, &top.key("networks"), "name") {
                    if let Some(n) = parse_network(&mut doc, v, &at, &az_names) {
                        networks.push((at, n));
                    }
                }
            }
            Field::Absent if complete => doc.error(&top.key("networks"), "is required"),
            _ => {}
        }
        let canon: Vec<(String, Loc)> = networks
            .iter()
            .map(|(at, n)| (canonical_name(n.name()), at.clone()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for ((c, at), (_, n)) in canon.iter().zip(&networks) {
            if !c.is_empty() && !seen.insert(c.as_str()) {
                doc.error(
                    &at.key("name"),
                    format!(
                        "invalid network name '{}', canonical name already taken",
                        n.name()
                    ),
                );
            }
        }

        let vm_types = named_items(&mut doc, m, "vm_types", "vm type name")
            .into_iter()
            .map(|(_, name, cloud_properties)| VmType {
                name,
                cloud_properties,
            })
            .collect();
        let vm_extensions = named_items(&mut doc, m, "vm_extensions", "vm extension name")
            .into_iter()
            .map(|(_, name, cloud_properties)| VmExtension {
                name,
                cloud_properties,
            })
            .collect();

        let mut disk_types = Vec::new();
        if let Field::Present(items) = doc.seq(m, &top, "disk_types") {
            let mut names = Vec::new();
            for (at, v) in Doc::items(items, &top.key("disk_types"), "name") {
                let dm = doc.map(v, &at);
                if dm.is_none() {
                    continue;
                }
                let name = doc.req_string(dm, &at, "name");
                let size = doc
                    .req_int(dm, &at, "disk_size", 0, i64::MAX)
                    .ok()
                    .unwrap_or(0);
                names.push((name.clone(), at.clone()));
                disk_types.push(DiskType {
                    name,
                    disk_size: u64::try_from(size).unwrap_or(0),
                    cloud_properties: doc.raw_map(dm, &at, "cloud_properties"),
                });
            }
            doc.unique(
                names.iter().map(|(n, at)| (n.as_str(), at.clone())),
                "disk type name",
                "name",
            );
        }

        let compilation = match Doc::get(m, "compilation") {
            Some(v) => parse_compilation(&mut doc, v, &top.key("compilation")),
            None => {
                if complete && m.is_some() {
                    doc.error(&top.key("compilation"), "is required");
                }
                None
            }
        };

        let cc = CloudConfig {
            azs: azs.into_iter().map(|(_, a)| a).collect(),
            networks: networks.into_iter().map(|(_, n)| n).collect(),
            vm_types,
            vm_extensions,
            disk_types,
            compilation,
            lines: doc.lines(),
        };
        if complete {
            cc.check_compilation(&mut doc);
        }
        doc.finish(cc)
    }

    fn empty() -> CloudConfig {
        CloudConfig {
            azs: Vec::new(),
            networks: Vec::new(),
            vm_types: Vec::new(),
            vm_extensions: Vec::new(),
            disk_types: Vec::new(),
            compilation: None,
            lines: SourceLines::default(),
        }
    }

    /// Merges named cloud configs as the director does: lists concatenated, names unique
    /// across them, `compilation` in exactly one.
    pub fn merge(configs: Vec<CloudConfig>) -> Result<CloudConfig, ValidationErrors> {
        let mut doc = Doc::with_lines(SourceLines::default());
        let mut out = CloudConfig::empty();
        for cc in configs {
            if cc.compilation.is_some() && out.compilation.is_some() {
                doc.error(
                    &Loc::root().key("compilation"),
                    "may be specified in only one cloud config",
                );
            }
            out.compilation = out.compilation.or(cc.compilation);
            out.azs.extend(cc.azs);
            out.networks.extend(cc.networks);
            out.vm_types.extend(cc.vm_types);
            out.vm_extensions.extend(cc.vm_extensions);
            out.disk_types.extend(cc.disk_types);
        }
        let top = Loc::root();
        let lists: [(&str, &str, Vec<&str>); 5] = [
            (
                "azs",
                "az name",
                out.azs.iter().map(|a| a.name.as_str()).collect(),
            ),
            (
                "networks",
                "network name",
                out.networks.iter().map(Network::name).collect(),
            ),
            (
                "vm_types",
                "vm type name",
                out.vm_types.iter().map(|v| v.name.as_str()).collect(),
            ),
            (
                "vm_extensions",
                "vm extension name",
                out.vm_extensions.iter().map(|v| v.name.as_str()).collect(),
            ),
            (
                "disk_types",
                "disk type name",
                out.disk_types.iter().map(|v| v.name.as_str()).collect(),
            ),
        ];
        for (key, what, names) in lists {
            doc.unique(
                names
                    .into_iter()
                    .enumerate()
                    .map(|(i, n)| (n, top.key(key).index(i))),
                what,
                "name",
            );
        }
        if out.compilation.is_none() {
            doc.error(&top.key("compilation"), "is required");
        }
        if out.networks.is_empty() {
            doc.error(&top.key("networks"), "no networks specified");
        }
        out.check_compilation(&mut doc);
        doc.finish(out)
    }

    fn check_compilation(&self, doc: &mut Doc) {
        let Some(c) = &self.compilation else { return };
        let loc = Loc::root().key("compilation");
        if let Some(az) = &c.az
            && !self.azs.iter().any(|a| &a.name == az)
        {
            let known: Vec<&str> = self.azs.iter().map(|a| a.name.as_str()).collect();
            doc.error(
                &loc.key("az"),
                format!(
                    "compilation config references unknown az '{az}'; known azs are: [{}]",
                    known.join(", ")
                ),
            );
        }
        if let Some(vt) = &c.vm_type
            && !self.vm_types.iter().any(|v| &v.name == vt)
        {
            doc.error(
                &loc.key("vm_type"),
                format!("compilation config references unknown vm type '{vt}'"),
            );
        }
        for (i, ext) in c.vm_extensions.iter().enumerate() {
            if !self.vm_extensions.iter().any(|v| &v.name == ext) {
                doc.error(
                    &loc.key("vm_extensions").index(i),
                    format!("compilation config references unknown vm extension '{ext}'"),
                );
            }
        }
        if c.network.is_empty()
            || crate::validate::is_placeholder(&Value::String(c.network.clone()))
        {
            return;
        }
        match self.networks.iter().find(|n| n.name() == c.network) {
            None => doc.error(
                &loc.key("network"),
                format!("compilation config references an unknown network '{}'", c.network),
            ),
            Some(n) if !n.serves_az(c.az.as_deref()) => doc.error(
                &loc.key("network"),
                format!(
                    "compilation config refers to az '{}' but network '{}' has no matching subnet(s)",
                    c.az.as_deref().unwrap_or(""),
                    c.network
                ),
            ),
            Some(_) => {}
        }
    }

    /// Checks that every AZ's `cpi` names a CPI of the CPI config.
    pub fn validate_against_cpis(&self, cpis: &CpiConfig) -> Result<(), ValidationErrors> {
        let mut doc = Doc::with_lines(self.lines.clone());
        for (i, az) in self.azs.iter().enumerate() {
            if let Some(cpi) = &az.cpi
                && !cpis.cpis.iter().any(|c| &c.name == cpi)
            {
                let at = Loc::root().key("azs").named(i, "name", &az.name).key("cpi");
                doc.error(
                    &at,
                    format!("az '{}' references unknown cpi '{cpi}'", az.name),
                );
            }
        }
        doc.finish(())
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name() == name)
    }
}

fn parse_compilation(doc: &mut Doc, v: &Value, loc: &Loc) -> Option<Compilation> {
    let m = doc.map(v, loc);
    m?;
    let workers = doc.req_int(m, loc, "workers", 1, i64::from(u32::MAX)).ok();
    let network = doc.req_string(m, loc, "network");
    let vm_type = doc.opt_string(m, loc, "vm_type");
    let vm_resources = Doc::get(m, "vm_resources")
        .and_then(|v| parse_vm_resources(doc, v, &loc.key("vm_resources")));
    let cloud_properties = doc.raw_map(m, loc, "cloud_properties");
    let forms: Vec<&str> = ["vm_type", "vm_resources", "cloud_properties"]
        .into_iter()
        .filter(|k| Doc::has(m, k))
        .collect();
    if forms.len() > 1 {
        doc.error(
            loc,
            format!(
                "compilation config can only specify one of 'vm_type', 'vm_resources' or 'cloud_properties', found {}",
                forms.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let vm_extensions = doc.strings(m, loc, "vm_extensions");
    if !vm_extensions.is_empty() && !Doc::has(m, "vm_type") && !Doc::has(m, "vm_resources") {
        doc.error(
            &loc.key("vm_extensions"),
            "compilation config is using vm extensions and must configure a vm type or vm resources",
        );
    }
    Some(Compilation {
        workers: workers.and_then(|w| u32::try_from(w).ok()).unwrap_or(1),
        network,
        az: doc.opt_string(m, loc, "az").filter(|a| !a.is_empty()),
        vm_type,
        vm_resources,
        vm_extensions,
        cloud_properties,
        reuse_compilation_vms: doc.bool(m, loc, "reuse_compilation_vms").unwrap_or(false),
        orphan_workers: doc.bool(m, loc, "orphan_workers").unwrap_or(false),
        env: doc.raw_map(m, loc, "env"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_bounds_and_mask() {
        let c: Cidr = "10.0.1.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.1.0/24");
        assert_eq!(c.last(), ip("10.0.1.255"));
        assert_eq!(c.size(), 256);
        assert_eq!(c.netmask(), ip("255.255.255.0"));
        assert!(c.contains(ip("10.0.1.200")) && !c.contains(ip("10.0.2.0")));
        let all: Cidr = "::/0".parse().unwrap();
        assert_eq!(all.size(), u128::MAX);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00::/64".parse().unwrap();
        assert_eq!(v6.netmask(), ip("ffff:ffff:ffff:ffff::"));
    }

    #[test]
    fn ip_ranges_parse_all_forms() {
        let r: IpRange = "10.0.0.2 - 10.0.0.9".parse().unwrap();
        assert_eq!(r.len(), 8);
        assert_eq!("10.0.0.4/30".parse::<IpRange>().unwrap().len(), 4);
        assert_eq!("10.0.0.4".parse::<IpRange>().unwrap().len(), 1);
        assert!("10.0.0.9-10.0.0.2".parse::<IpRange>().is_err());
        assert!("fd00::1-fd00::ff".parse::<IpRange>().is_ok());
        assert!(r.overlaps(&"10.0.0.9-10.0.0.20".parse().unwrap()));
        assert!(!r.overlaps(&"10.0.0.10".parse().unwrap()));
        assert!("::/0".parse::<IpRange>().unwrap().addresses(10).is_none());
    }

    #[test]
    fn canonical_names_follow_the_director() {
        assert_eq!(canonical_name("My_Net.1"), "my-net1");
    }
}
