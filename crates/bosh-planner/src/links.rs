//! Link resolution within one deployment (formats.md §13).

use crate::error::{At, PlanError};
use crate::plan::{InstanceGroupPlan, LinkInstance, LinkPlan, ProvidedLink};
use crate::props::lookup;
use bosh_types::cloud_config::canonical_name;
use bosh_types::manifest::Manifest;
use bosh_types::release::JobSpec;
use bosh_yaml::{Mapping, Value};
use indexmap::IndexMap;

/// A job of the plan, with what link resolution needs beside the plan itself.
pub(crate) struct JobSource<'a> {
    pub group: usize,
    pub job: usize,
    pub spec: &'a JobSpec,
    /// Manifest `consumes` / `provides` of the job (null when absent).
    pub consumes: &'a Value,
    pub provides: &'a Value,
    /// Custom provider definitions: `(name, type, properties)`.
    pub custom: Vec<(String, String, Vec<String>)>,
    /// Where errors about this job point.
    pub at: At,
}

pub(crate) struct Provider {
    group: usize,
    job: usize,
    link: ProvidedLink,
    consumable: bool,
    properties: Value,
}

fn is_nil(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("nil")
}

fn entry<'a>(map: &'a Value, name: &str) -> Option<&'a Value> {
    map.as_map()?.get(&Value::from(name))
}

/// The links each job provides, with their properties taken from the bound properties.
pub(crate) fn providers(
    manifest: &Manifest,
    groups: &[InstanceGroupPlan],
    jobs: &[JobSource<'_>],
) -> Result<Vec<Provider>, PlanError> {
    let mut out = Vec::new();
    for src in jobs {
        let job = &groups[src.group].jobs[src.job];
        if let Some(m) = src.provides.as_map() {
            for k in m.keys() {
                let name = k.as_str().unwrap_or_default();
                let known = src.spec.provides.iter().any(|p| p.name == name)
                    || src.custom.iter().any(|c| c.0 == name);
                if !known {
                    return Err(src.at.key("provides").key(name).error(
                        manifest,
                        format!(
                            "job '{}' in instance group '{}' specifies link '{name}', but the release job does not provide it",
                            job.name, groups[src.group].name
                        ),
                    ));
                }
            }
        }
        let defs = src
            .spec
            .provides
            .iter()
            .map(|p| (p.name.clone(), p.type_.clone(), p.properties.clone()))
            .chain(src.custom.iter().cloned());
        for (name, link_type, props) in defs {
            let over = entry(src.provides, &name);
            let consumable = !over.is_some_and(is_nil);
            let alias = over
                .and_then(|o| o.get("as"))
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .to_owned();
            let shared = over
                .and_then(|o| o.get("shared"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut properties = Value::Map(Mapping::new());
            for p in &props {
                if !src.spec.properties.contains_key(p) {
                    return Err(src.at.error(
                        manifest,
                        format!(
                            "link property '{p}' of link '{name}' provided by job '{}' is not defined in the release job spec",
                            job.name
                        ),
                    ));
                }
                let v = lookup(&job.properties, p).cloned().unwrap_or(Value::Null);
                set_path(&mut properties, p, v);
            }
            out.push(Provider {
                group: src.group,
                job: src.job,
                link: ProvidedLink {
                    name,
                    alias,
                    link_type,
                    shared,
                },
                consumable,
                properties,
            });
        }
    }
    Ok(out)
}

fn set_path(out: &mut Value, dotted: &str, v: Value) {
    let mut cur = out;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        if !matches!(cur, Value::Map(_)) {
            *cur = Value::Map(Mapping::new());
        }
        let Value::Map(m) = cur else { return };
        if n + 1 == parts.len() {
            m.insert(Value::from(*part), v);
            return;
        }
        cur = m.entry(Value::from(*part)).or_insert(Value::Null);
    }
}

/// Resolves every consumed link of every job; returns `(group, job) → links`.
pub(crate) fn resolve(
    manifest: &Manifest,
    groups: &[InstanceGroupPlan],
    jobs: &[JobSource<'_>],
    providers: &[Provider],
) -> Result<Vec<IndexMap<String, LinkPlan>>, PlanError> {
    let mut out = Vec::new();
    for src in jobs {
        let group = &groups[src.group];
        let job = &group.jobs[src.job];
        if let Some(m) = src.consumes.as_map() {
            for k in m.keys() {
                let name = k.as_str().unwrap_or_default();
                if !src.spec.consumes.iter().any(|c| c.name == name) {
                    return Err(src.at.key("consumes").key(name).error(
                        manifest,
                        format!(
                            "job '{}' in instance group '{}' specifies link '{name}', but the release job does not consume it",
                            job.name, group.name
                        ),
                    ));
                }
            }
        }
        let mut links = IndexMap::new();
        for c in &src.spec.consumes {
            let over = entry(src.consumes, &c.name);
            let at = match over {
                Some(_) => src.at.key("consumes").key(&c.name),
                None => src.at.clone(),
            };
            let fail = |detail: String| {
                at.error(
                    manifest,
                    format!(
                        "failed to resolve link '{}' with type '{}' from job '{}' in instance group '{}': {detail}",
                        c.name, c.type_, job.name, group.name
                    ),
                )
            };
            if over.is_some_and(is_nil) {
                continue;
            }
            let over = over.and_then(Value::as_map);
            let get = |k: &str| over.and_then(|m| m.get(&Value::from(k)));
            if let Some(d) = get("deployment").and_then(Value::as_str)
                && d != manifest.name
            {
                return Err(fail(format!(
                    "cross-deployment links (deployment '{d}') are not supported yet"
                )));
            }
            if ["instances", "properties", "address"]
                .iter()
                .any(|k| get(k).is_some())
            {
                return Err(fail("manual links are not supported yet".into()));
            }
            let from = get("from").and_then(Value::as_str);
            let candidates: Vec<&Provider> = providers
                .iter()
                .filter(|p| p.consumable && p.link.link_type == c.type_)
                .filter(|p| from.is_none_or(|f| p.link.alias == f))
                .collect();
            let provider = match candidates.as_slice() {
                [one] => *one,
                [] if c.optional && from.is_none() => continue,
                [] => {
                    return Err(fail(match from {
                        Some(f) => format!("no link provider named '{f}' of that type"),
                        None => "no link providers found".into(),
                    }));
                }
                many => {
                    let names: Vec<String> = many
                        .iter()
                        .map(|p| {
                            format!(
                                "'{}' (job '{}' in instance group '{}')",
                                p.link.alias,
                                groups[p.group].jobs[p.job].name,
                                groups[p.group].name
                            )
                        })
                        .collect();
                    return Err(fail(format!(
                        "multiple link providers found: {}",
                        names.join(", ")
                    )));
                }
            };
            let pg = &groups[provider.group];
            let network = match get("network").and_then(Value::as_str) {
                Some(n) => {
                    if !pg.networks.iter().any(|x| x.name == n) {
                        return Err(fail(format!(
                            "network '{n}' is not a network of instance group '{}'",
                            pg.name
                        )));
                    }
                    n.to_owned()
                }
                None => pg
                    .networks
                    .iter()
                    .find(|n| n.default.iter().any(|d| d == "gateway"))
                    .or(pg.networks.first())
                    .map(|n| n.name.clone())
                    .unwrap_or_default(),
            };
            let instances = pg
                .instances
                .iter()
                .map(|i| LinkInstance {
                    name: pg.name.clone(),
                    id: i.id,
                    index: i.index,
                    bootstrap: i.bootstrap,
                    az: i.az.clone(),
                    address: i
                        .networks
                        .get(&network)
                        .and_then(|s| s.ip)
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|| {
                            format!(
                                "{}.{}.{}.{}.bosh",
                                i.id,
                                canonical_name(&pg.name),
                                canonical_name(&network),
                                canonical_name(&manifest.name)
                            )
                        }),
                })
                .collect();
            links.insert(
                c.name.clone(),
                LinkPlan {
                    deployment_name: manifest.name.clone(),
                    domain: "bosh".into(),
                    default_network: network,
                    networks: pg.networks.iter().map(|n| n.name.clone()).collect(),
                    instance_group: pg.name.clone(),
                    job: pg.jobs[provider.job].name.clone(),
                    link_name: provider.link.name.clone(),
                    link_type: provider.link.link_type.clone(),
                    properties: provider.properties.clone(),
                    instances,
                    use_dns_addresses: false,
                    use_short_dns_addresses: false,
                    use_link_dns_names: false,
                },
            );
        }
        out.push(links);
    }
    Ok(out)
}

/// Provided links of one job, for the plan.
pub(crate) fn provided_of(providers: &[Provider], group: usize, job: usize) -> Vec<ProvidedLink> {
    providers
        .iter()
        .filter(|p| p.group == group && p.job == job)
        .map(|p| p.link.clone())
        .collect()
}
