//! IP allocation on manual networks (formats.md §12.1) and agent network settings.

use crate::plan::NetworkSettings;
use bosh_types::cloud_config::{ManualNetwork, ManualSubnet, Network};
use bosh_yaml::Value;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an instance in `az` may take an address from `subnet`.
pub(crate) fn subnet_serves(subnet_azs: &[String], az: Option<&str>) -> bool {
    match az {
        None => subnet_azs.is_empty(),
        Some(a) => subnet_azs.iter().any(|s| s == a),
    }
}

/// The subnet of `net` whose range holds `ip`.
pub(crate) fn subnet_of(net: &ManualNetwork, ip: IpAddr) -> Option<&ManualSubnet> {
    net.subnets
        .iter()
        .find(|s| s.range.is_some_and(|r| r.contains(ip)))
}

/// Whether `ip` may stay a dynamic (non-static) address of an instance in `az`: inside a
/// subnet that serves the AZ, neither restricted nor in the subnet's static ranges.
pub(crate) fn valid_dynamic(net: &ManualNetwork, ip: IpAddr, az: Option<&str>) -> bool {
    subnet_of(net, ip)
        .is_some_and(|s| subnet_serves(&s.azs, az) && !s.is_restricted(ip) && !s.is_static(ip))
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_bits(b: u128, v4: bool) -> Option<IpAddr> {
    if v4 {
        u32::try_from(b).ok().map(|x| IpAddr::V4(Ipv4Addr::from(x)))
    } else {
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    }
}

/// IPs taken in this director: by other deployments and by this plan so far.
#[derive(Debug, Default)]
pub(crate) struct IpPool {
    used: HashSet<IpAddr>,
}

impl IpPool {
    pub(crate) fn take(&mut self, ip: IpAddr) -> bool {
        self.used.insert(ip)
    }

    /// The lowest free dynamic address for an instance in `az`, subnets in config order.
    pub(crate) fn allocate(&mut self, net: &ManualNetwork, az: Option<&str>) -> Option<IpAddr> {
        for s in net.subnets.iter().filter(|s| subnet_serves(&s.azs, az)) {
            let Some(range) = s.range else { continue };
            let v4 = range.is_ipv4();
            let restricted = s.restricted();
            let mut b = bits(range.first());
            let last = bits(range.last());
            while b <= last {
                let Some(ip) = from_bits(b, v4) else { break };
                // Skip whole restricted/static ranges at once: a /16 reserve stays cheap.
                if let Some(r) = restricted
                    .iter()
                    .chain(s.static_ips.iter())
                    .find(|r| r.contains(ip))
                {
                    b = bits(r.last).saturating_add(1);
                    if b == 0 {
                        break;
                    }
                    continue;
                }
                if self.used.insert(ip) {
                    return Some(ip);
                }
                b += 1;
            }
        }
        None
    }
}

/// Agent settings for an instance on `net`. `ip` is the instance's address on a manual or
/// vip network; `default` the group's sorted defaults for this network.
pub(crate) fn settings(
    net: &Network,
    ip: Option<IpAddr>,
    az: Option<&str>,
    default: &[String],
    nic_group: Option<&str>,
) -> NetworkSettings {
    let mut s = NetworkSettings {
        kind: String::new(),
        ip,
        netmask: None,
        gateway: None,
        prefix: None,
        dns: Vec::new(),
        default: default.to_vec(),
        cloud_properties: Value::Map(Default::default()),
        nic_group: nic_group.map(str::to_owned),
    };
    match net {
        Network::Manual(m) => {
            s.kind = "manual".into();
            if let Some(sub) = ip.and_then(|ip| subnet_of(m, ip)) {
                s.netmask = sub.range.map(|r| r.netmask());
                s.gateway = sub.gateway;
                s.prefix = sub.prefix;
                s.dns = sub.dns.clone();
                s.cloud_properties = non_null(&sub.cloud_properties);
            }
        }
        Network::Dynamic(d) => {
            s.kind = "dynamic".into();
            match d.subnets.iter().find(|sub| subnet_serves(&sub.azs, az)) {
                Some(sub) => {
                    s.dns = if sub.dns.is_empty() {
                        d.dns.clone()
                    } else {
                        sub.dns.clone()
                    };
                    s.cloud_properties = non_null(&sub.cloud_properties);
                }
                None => {
                    s.dns = d.dns.clone();
                    s.cloud_properties = non_null(&d.cloud_properties);
                }
            }
        }
        Network::Vip(v) => {
            s.kind = "vip".into();
            let sub = v
                .subnets
                .iter()
                .find(|sub| ip.is_some_and(|ip| sub.static_ips.iter().any(|r| r.contains(ip))));
            s.cloud_properties = non_null(sub.map_or(&v.cloud_properties, |x| &x.cloud_properties));
        }
    }
    s
}

fn non_null(v: &Value) -> Value {
    if v.is_null() {
        Value::Map(Default::default())
    } else {
        v.clone()
    }
}

/// The next free VIP from a vip network's subnet pools, for a group without `static_ips`.
pub(crate) fn allocate_vip(
    pool: &mut IpPool,
    net: &bosh_types::cloud_config::VipNetwork,
    az: Option<&str>,
) -> Option<IpAddr> {
    for sub in net.subnets.iter().filter(|s| subnet_serves(&s.azs, az)) {
        for r in &sub.static_ips {
            let v4 = r.first.is_ipv4();
            let (mut b, last) = (bits(r.first), bits(r.last));
            while b <= last {
                let ip = from_bits(b, v4)?;
                if pool.take(ip) {
                    return Some(ip);
                }
                b += 1;
            }
        }
    }
    None
}
