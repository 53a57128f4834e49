//! BOSH networks as user-defined Docker networks. A manual network is a bridge network
//! (created on demand with the subnet derived from the VM's IP and netmask) named by
//! `cloud_properties.name`, or by its subnet CIDR when unnamed; the VM gets its static IP
//! through the endpoint's IPAM config. A dynamic network must be named and already routable;
//! Docker assigns the address. VIP networks are not the container's business.

use super::{DockerCpi, LABEL_CPI, LABEL_CPI_VALUE, cloud_error, is_conflict, is_not_found};
use crate::error::CpiError;
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkCreateRequest,
};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
use bosh_cpi_protocol::methods::{Network, NetworkType, Networks};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// One Docker network a container joins, with its static IPv4 address if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct NetworkAttachment {
    pub docker_network: String,
    pub ipv4: Option<String>,
}

impl NetworkAttachment {
    pub fn endpoint(&self) -> EndpointSettings {
        EndpointSettings {
            ipam_config: self.ipv4.as_ref().map(|ip| EndpointIpamConfig {
                ipv4_address: Some(ip.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn invalid(method: Method, message: String) -> CpiError {
    CpiError::cloud(CpiErrorKind::VmCreationFailed, method, message)
}

fn name_property(net: &Network) -> Option<String> {
    match net.cloud_properties.get("name") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Prefix length from `netmask` (dotted) or `prefix` (number or string).
fn prefix_len(net: &Network) -> Option<u32> {
    if let Some(mask) = net.netmask.as_deref() {
        let mask: Ipv4Addr = mask.parse().ok()?;
        let bits = u32::from(mask);
        // A netmask is contiguous ones.
        return (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones());
    }
    match net.prefix.as_ref()? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|p| *p <= 32)
}

/// `10.0.1.0/24` for ip `10.0.1.5` and prefix 24.
pub(super) fn subnet_cidr(ip: Ipv4Addr, prefix: u32) -> String {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    format!("{}/{prefix}", Ipv4Addr::from(u32::from(ip) & mask))
}

/// Ensures every manual/dynamic network exists and returns what to join, in `networks`
/// order. At least one network is required.
pub(super) async fn ensure(
    cpi: &DockerCpi,
    method: Method,
    networks: &Networks,
) -> Result<Vec<NetworkAttachment>, CpiError> {
    let mut out = Vec::new();
    for (bosh_name, net) in networks {
        match net.network_type.unwrap_or(NetworkType::Manual) {
            NetworkType::Vip => continue,
            NetworkType::Dynamic => {
                let Some(name) = name_property(net) else {
                    return Err(invalid(
                        method,
                        format!(
                            "Dynamic network '{bosh_name}' must set cloud_properties.name to an existing Docker network"
                        ),
                    ));
                };
                out.push(NetworkAttachment {
                    docker_network: name,
                    ipv4: None,
                });
            }
            NetworkType::Manual => out.push(ensure_manual(cpi, method, bosh_name, net).await?),
        }
    }
    if out.is_empty() {
        return Err(invalid(
            method,
            "Must provide at least one manual or dynamic network".to_owned(),
        ));
    }
    Ok(out)
}

async fn ensure_manual(
    cpi: &DockerCpi,
    method: Method,
    bosh_name: &str,
    net: &Network,
) -> Result<NetworkAttachment, CpiError> {
    let ip: Ipv4Addr = net
        .ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| {
            invalid(
                method,
                format!("Manual network '{bosh_name}' needs an IPv4 'ip'"),
            )
        })?;
    let prefix = prefix_len(net).ok_or_else(|| {
        invalid(
            method,
            format!("Manual network '{bosh_name}' needs a valid 'netmask' or 'prefix'"),
        )
    })?;
    let subnet = subnet_cidr(ip, prefix);
    let explicit = name_property(net);
    let name = explicit.clone().unwrap_or_else(|| subnet.clone());
    let docker = cpi.docker(method).await?;
    match docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => {
            return Ok(NetworkAttachment {
                docker_network: name,
                ipv4: Some(ip.to_string()),
            });
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            return Err(cloud_error(
                method,
                &format!("Inspecting network '{name}'"),
                e,
            ));
        }
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some(
            match net.cloud_properties.get("driver") {
                Some(Value::String(d)) => d.as_str(),
                _ => "bridge",
            }
            .to_owned(),
        ),
        ipam: Some(Ipam {
            driver: Some("default".to_owned()),
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.clone()),
                gateway: net.gateway.clone(),
                ..Default::default()
            }]),
            options: None,
        }),
        labels: Some(HashMap::from([(
            LABEL_CPI.to_owned(),
            LABEL_CPI_VALUE.to_owned(),
        )])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = %name, %subnet, "network created");
        }
        // Created meanwhile by a concurrent create_vm.
        Err(e) if is_conflict(&e) || e.to_string().contains("already exists") => {}
        Err(e) if explicit.is_none() && e.to_string().contains("overlap") => {
            // An unnamed network whose subnet is already served: join that network.
            let existing = find_by_subnet(cpi, method, &subnet).await?;
            return match existing {
                Some(existing) => Ok(NetworkAttachment {
                    docker_network: existing,
                    ipv4: Some(ip.to_string()),
                }),
                None => Err(cloud_error(
                    method,
                    &format!("Creating network '{name}'"),
                    e,
                )),
            };
        }
        Err(e) => {
            return Err(cloud_error(
                method,
                &format!("Creating network '{name}'"),
                e,
            ));
        }
    }
    Ok(NetworkAttachment {
        docker_network: name,
        ipv4: Some(ip.to_string()),
    })
}

async fn find_by_subnet(
    cpi: &DockerCpi,
    method: Method,
    subnet: &str,
) -> Result<Option<String>, CpiError> {
    let docker = cpi.docker(method).await?;
    let all = docker
        .list_networks(None::<ListNetworksOptions>)
        .await
        .map_err(|e| cloud_error(method, "Listing networks", e))?;
    Ok(all.into_iter().find_map(|n| {
        let serves = n
            .ipam
            .as_ref()
            .and_then(|i| i.config.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.subnet.as_deref() == Some(subnet)));
        if serves { n.name } else { None }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_come_from_ip_and_netmask_or_prefix() {
        let mut net = Network {
            ip: Some("10.1.2.3".into()),
            netmask: Some("255.255.255.0".into()),
            ..Default::default()
        };
        assert_eq!(prefix_len(&net), Some(24));
        assert_eq!(subnet_cidr("10.1.2.3".parse().unwrap(), 24), "10.1.2.0/24");
        assert_eq!(subnet_cidr("10.1.2.3".parse().unwrap(), 20), "10.1.0.0/20");
        net.netmask = Some("255.0.255.0".into());
        assert_eq!(prefix_len(&net), None, "non-contiguous masks are refused");
        net.netmask = None;
        net.prefix = Some(Value::String("16".into()));
        assert_eq!(prefix_len(&net), Some(16));
        net.prefix = Some(serde_json::json!(33));
        assert_eq!(prefix_len(&net), None);
    }
}
