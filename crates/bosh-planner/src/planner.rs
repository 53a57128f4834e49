//! `plan`: the whole pipeline, in the director's order. References are resolved first (all
//! errors reported at once), then placement, networks, links and change detection.

use crate::changes::instance_change;
use crate::error::{At, PlanError, PlanErrors, group_at, job_at};
use crate::input::{ExistingInstance, IdGenerator, InstanceState, PlanInput, ReleaseInput};
use crate::links::{self, JobSource};
use crate::network::{self, IpPool};
use crate::placement::{self, Placement, Slot, StaticIp};
use crate::plan::*;
use crate::props::{bind_properties, deep_merge, digest, shallow_merge};
use bosh_types::cloud_config::Network;
use bosh_types::manifest::{InstanceGroup, PersistentDisk, StemcellRef};
use bosh_types::release::JobSpec;
use bosh_types::runtime_config::{Addon, PlacementTarget, RuntimeConfig};
use bosh_types::version::Version;
use bosh_yaml::Value;
use indexmap::IndexMap;
use std::collections::HashSet;
use std::net::IpAddr;

/// One job to place on a group, before links are known.
struct JobDraft<'a> {
    plan: JobPlan,
    spec: &'a JobSpec,
    consumes: &'a Value,
    provides: &'a Value,
    custom: Vec<(String, String, Vec<String>)>,
    at: At,
}

/// Plans a deploy. Pure: the same input and id sequence always give the same plan.
pub fn plan(input: &PlanInput, ids: &mut dyn IdGenerator) -> Result<DeploymentPlan, PlanErrors> {
    let m = &input.manifest;
    m.validate_against(&input.cloud_config)?;
    let runtime = RuntimeConfig::merge(input.runtime_configs.clone())?;
    let mut errs: Vec<PlanError> = Vec::new();

    // Releases: manifest versions, then runtime-config ones (which must agree).
    let mut release_versions: IndexMap<String, String> = IndexMap::new();
    for (i, r) in m.releases.iter().enumerate() {
        let at = At::root().key("releases").named(i, "name", &r.name);
        match resolve_release(&input.releases, &r.name, r.version.as_deref()) {
            Ok(rel) => {
                release_versions.insert(r.name.clone(), rel.version.clone());
            }
            Err(msg) => errs.push(at.key("version").error(m, msg)),
        }
    }
    for r in &runtime.releases {
        match resolve_release(&input.releases, &r.name, r.version.as_deref()) {
            Ok(rel) => match release_versions.get(&r.name) {
                Some(v) if *v != rel.version => errs.push(PlanError {
                    path: String::new(),
                    line: None,
                    message: format!(
                        "runtime config specifies release '{}' with version '{}', which conflicts with version '{v}' in the deployment manifest",
                        r.name, rel.version
                    ),
                }),
                _ => {
                    release_versions.insert(r.name.clone(), rel.version.clone());
                }
            },
            Err(msg) => errs.push(PlanError {
                path: String::new(),
                line: None,
                message: format!("runtime config: {msg}"),
            }),
        }
    }
    let release_of = |name: &str| -> Option<&ReleaseInput> {
        let v = release_versions.get(name)?;
        input
            .releases
            .iter()
            .find(|r| r.name == name && &r.version == v)
    };

    // Groups: stemcell, VM, disk, jobs (manifest, then addons), bound properties.
    let mut groups: Vec<InstanceGroupPlan> = Vec::new();
    let mut drafts: Vec<Vec<JobDraft<'_>>> = Vec::new();
    let addons: Vec<(&Addon, Option<At>)> = runtime
        .addons
        .iter()
        .map(|a| (a, None))
        .chain(
            m.addons
                .iter()
                .enumerate()
                .map(|(i, a)| (a, Some(At::root().key("addons").named(i, "name", &a.name)))),
        )
        .collect();
    for (gi, g) in m.instance_groups.iter().enumerate() {
        let gat = group_at(m, gi);
        let stemcell = match m.stemcell(&g.stemcell) {
            None => {
                errs.push(gat.key("stemcell").error(
                    m,
                    format!(
                        "stemcell alias '{}' is not defined in 'stemcells'",
                        g.stemcell
                    ),
                ));
                None
            }
            Some(sref) => match resolve_stemcell(input, sref) {
                Ok(s) => Some(s),
                Err(msg) => {
                    errs.push(gat.key("stemcell").error(m, msg));
                    None
                }
            },
        };
        let mut jobs: Vec<JobDraft<'_>> = Vec::new();
        for (ji, j) in g.jobs.iter().enumerate() {
            let at = job_at(m, gi, ji);
            let raw = match &j.properties {
                Some(p) => p.clone(),
                None => deep_merge(&m.properties, &g.properties),
            };
            let custom = j
                .custom_provider_definitions
                .iter()
                .map(|c| (c.name.clone(), c.link_type.clone(), c.properties.clone()))
                .collect();
            match job_draft(
                m,
                &release_of,
                &j.name,
                &j.release,
                &raw,
                None,
                &j.consumes,
                &j.provides,
                custom,
                at,
            ) {
                Ok(d) => jobs.push(d),
                Err(e) => errs.push(e),
            }
        }
        let target_jobs: Vec<(String, String)> = g
            .jobs
            .iter()
            .map(|j| (j.name.clone(), j.release.clone()))
            .collect();
        let nets: Vec<String> = g.networks.iter().map(|n| n.name.clone()).collect();
        let os = stemcell.as_ref().map(|s| s.os.clone()).unwrap_or_default();
        let target = PlacementTarget {
            deployment: &m.name,
            teams: &[],
            instance_group: &g.name,
            lifecycle: g.lifecycle,
            jobs: &target_jobs,
            stemcell_os: &os,
            networks: &nets,
            azs: &g.azs,
        };
        for (addon, aat) in &addons {
            if !addon.applies_to(&target) {
                continue;
            }
            for (aj, job) in addon.jobs.iter().enumerate() {
                let at = match aat {
                    Some(a) => a.key("jobs").named(aj, "name", &job.name),
                    None => gat.clone(),
                };
                if jobs.iter().any(|d| d.plan.name == job.name) {
                    errs.push(at.error(
                        m,
                        format!(
                            "colocated job '{}' of addon '{}' is already added to the instance group '{}'",
                            job.name, addon.name, g.name
                        ),
                    ));
                    continue;
                }
                let raw = job
                    .properties
                    .clone()
                    .or_else(|| addon.properties.clone())
                    .unwrap_or(Value::Null);
                match job_draft(
                    m,
                    &release_of,
                    &job.name,
                    &job.release,
                    &raw,
                    Some(&addon.name),
                    &job.consumes,
                    &job.provides,
                    Vec::new(),
                    at,
                ) {
                    Ok(d) => jobs.push(d),
                    Err(e) => errs.push(e),
                }
            }
        }
        let mut packages: IndexMap<String, PackagePlan> = IndexMap::new();
        for d in &jobs {
            let Some(rel) = release_of(&d.plan.release) else {
                continue;
            };
            for p in &d.spec.packages {
                if packages.contains_key(p) {
                    continue;
                }
                match rel.packages.iter().find(|x| &x.name == p) {
                    Some(x) => {
                        packages.insert(
                            p.clone(),
                            PackagePlan {
                                name: x.name.clone(),
                                release: rel.name.clone(),
                                version: x.version.clone(),
                                fingerprint: x.fingerprint.clone(),
                                dependencies: x.dependencies.clone(),
                            },
                        );
                    }
                    None if rel.packages.is_empty() => {}
                    None => errs.push(d.at.error(
                        m,
                        format!(
                            "package '{p}' of job '{}' is not in release '{}/{}'",
                            d.plan.name, rel.name, rel.version
                        ),
                    )),
                }
            }
        }
        packages.sort_keys();
        let persistent_disk = match disk_plan(input, g) {
            Ok(d) => d,
            Err(msg) => {
                errs.push(gat.key("persistent_disks").error(m, msg));
                None
            }
        };
        let update = g.update_config(&m.update);
        let canaries = input.options.canaries.or(update.canaries);
        let max_in_flight = input.options.max_in_flight.or(update.max_in_flight);
        let (Some(canaries), Some(max_in_flight), Some(cw), Some(uw)) = (
            canaries,
            max_in_flight,
            update.canary_watch_time,
            update.update_watch_time,
        ) else {
            errs.push(gat.key("update").error(
                m,
                "canaries, max_in_flight, canary_watch_time and update_watch_time must be set here or in the deployment's update",
            ));
            continue;
        };
        let Some(stemcell) = stemcell else { continue };
        let properties_digest = digest(
            &jobs
                .iter()
                .map(|d| (&d.plan.name, &d.plan.properties))
                .collect::<Vec<_>>(),
        );
        groups.push(InstanceGroupPlan {
            name: g.name.clone(),
            lifecycle: g.lifecycle,
            update: UpdatePlan {
                canaries,
                max_in_flight,
                canary_watch_time: WatchTimeMs {
                    min: cw.min_ms,
                    max: cw.max_ms,
                },
                update_watch_time: WatchTimeMs {
                    min: uw.min_ms,
                    max: uw.max_ms,
                },
                serial: update.is_serial(),
                vm_strategy: update.vm_strategy.clone(),
                azs: Vec::new(),
            },
            stemcell,
            vm_type: g.vm_type.clone(),
            vm_resources: g.vm_resources,
            vm_extensions: g.vm_extensions.clone(),
            env: if g.env.is_null() {
                Value::Map(Default::default())
            } else {
                g.env.clone()
            },
            persistent_disk,
            networks: g
                .networks
                .iter()
                .map(|n| {
                    let mut default = n.default.clone();
                    default.sort();
                    GroupNetwork {
                        name: n.name.clone(),
                        kind: match input.cloud_config.network(&n.name) {
                            Some(Network::Dynamic(_)) => "dynamic",
                            Some(Network::Vip(_)) => "vip",
                            _ => "manual",
                        }
                        .into(),
                        default,
                        static_ips: n.static_ips.clone(),
                    }
                })
                .collect(),
            jobs: jobs.iter().map(|d| d.plan.clone()).collect(),
            packages: packages.into_values().collect(),
            properties_digest,
            links_digest: String::new(),
            instances: Vec::new(),
        });
        drafts.push(jobs);
    }
    if !errs.is_empty() {
        return Err(PlanErrors(errs));
    }

    // Placement, identity and networks.
    let mut pool = IpPool::default();
    for r in &input.other_reservations {
        pool.take(r.ip);
    }
    let mut other: HashSet<IpAddr> = input.other_reservations.iter().map(|r| r.ip).collect();
    for e in &input.current {
        for s in e.networks.values() {
            if let Some(ip) = s.ip {
                pool.take(ip);
            }
        }
    }
    let mut static_seen: IndexMap<IpAddr, String> = IndexMap::new();
    for (gi, g) in m.instance_groups.iter().enumerate() {
        for (ni, n) in g.networks.iter().enumerate() {
            for ip in &n.static_ips {
                let at = group_at(m, gi).key("networks").index(ni).key("static_ips");
                if other.contains(ip) {
                    let who = input
                        .other_reservations
                        .iter()
                        .find(|r| r.ip == *ip)
                        .map(|r| r.deployment.clone())
                        .unwrap_or_default();
                    errs.push(at.error(
                        m,
                        format!("static IP '{ip}' is already reserved by deployment '{who}'"),
                    ));
                } else if let Some(prev) = static_seen.insert(*ip, g.name.clone()) {
                    errs.push(at.error(
                        m,
                        format!("static IP '{ip}' is also used by instance group '{prev}'"),
                    ));
                }
                pool.take(*ip);
            }
        }
    }
    if !errs.is_empty() {
        return Err(PlanErrors(errs));
    }
    other.clear();

    let mut claimed: HashSet<IpAddr> = HashSet::new();
    let mut new_res = Vec::new();
    let mut to_delete = Vec::new();
    let mut kept_ips: HashSet<(usize, String, IpAddr)> = HashSet::new();
    let mut known_groups: HashSet<&str> = HashSet::new();
    for (gi, g) in m.instance_groups.iter().enumerate() {
        known_groups.insert(&g.name);
        let gat = group_at(m, gi);
        let existing: Vec<(usize, &ExistingInstance)> = input
            .current
            .iter()
            .enumerate()
            .filter(|(_, e)| e.group == g.name)
            .collect();
        let placed = place_group(input, g, &existing);
        for pos in &placed.obsolete {
            to_delete.push(obsolete(&input.current[*pos]));
        }
        let mut used_indexes: Vec<u32> = existing.iter().map(|(_, e)| e.index).collect();
        let mut slots: Vec<(Slot, u32)> = Vec::new();
        for s in placed.slots.iter().filter(|s| s.existing.is_some()) {
            let e = &input.current[s.existing.unwrap_or_default()];
            slots.push((s.clone(), e.index));
        }
        for s in placed.slots.iter().filter(|s| s.existing.is_none()) {
            let idx = placement::lowest_free_index(&used_indexes);
            used_indexes.push(idx);
            slots.push((s.clone(), idx));
        }
        slots.sort_by_key(|(_, i)| *i);

        let gp = &mut groups[gi];
        let vm_cp = vm_cloud_properties(input, g);
        let mut instances = Vec::new();
        // Listed static IPs existing instances hold: new instances must not take them.
        let held: HashSet<(String, IpAddr)> = slots
            .iter()
            .filter_map(|(s, _)| s.existing.map(|p| &input.current[p]))
            .flat_map(|e| {
                g.networks.iter().filter_map(|n| {
                    let ip = e.networks.get(&n.name)?.ip?;
                    n.static_ips.contains(&ip).then(|| (n.name.clone(), ip))
                })
            })
            .collect();
        for (slot, index) in &slots {
            let e = slot.existing.map(|p| &input.current[p]);
            let id = e.map_or_else(|| ids.instance_id(), |e| e.id);
            let az = slot.az.clone();
            let mut nets = IndexMap::new();
            for (ni, n) in g.networks.iter().enumerate() {
                let nat = gat.key("networks").index(ni);
                let Some(cn) = input.cloud_config.network(&n.name) else {
                    continue;
                };
                let had = e.and_then(|e| e.networks.get(&n.name)).and_then(|s| s.ip);
                let ip: Option<IpAddr> = match cn {
                    Network::Dynamic(_) => None,
                    Network::Manual(mn) if !n.static_ips.is_empty() => {
                        let ip = slot.static_ips.get(&n.name).copied().or_else(|| {
                            // A second static network: keep the IP if still listed, else
                            // the first free listed IP of the instance's AZ.
                            let serves = |ip: IpAddr| {
                                network::subnet_of(mn, ip)
                                    .is_some_and(|s| network::subnet_serves(&s.azs, az.as_deref()))
                            };
                            had.filter(|ip| {
                                n.static_ips.contains(ip) && !claimed.contains(ip) && serves(*ip)
                            })
                            .or_else(|| {
                                n.static_ips.iter().copied().find(|ip| {
                                    !claimed.contains(ip)
                                        && !held.contains(&(n.name.clone(), *ip))
                                        && serves(*ip)
                                })
                            })
                        });
                        let Some(ip) = ip else {
                            return Err(nat.key("static_ips").error(
                                m,
                                format!(
                                    "failed to distribute static IPs of network '{}' over the instances of instance group '{}'",
                                    n.name, g.name
                                ),
                            )
                            .into());
                        };
                        Some(ip)
                    }
                    Network::Manual(mn) => {
                        let keep = had.filter(|ip| {
                            !claimed.contains(ip) && network::valid_dynamic(mn, *ip, az.as_deref())
                        });
                        match keep {
                            Some(ip) => Some(ip),
                            None => match pool.allocate(mn, az.as_deref()) {
                                Some(ip) => Some(ip),
                                None => {
                                    return Err(nat.key("name").error(
                                        m,
                                        format!(
                                            "failed to reserve an IP for instance '{}/{id}' on network '{}': no more available",
                                            g.name, n.name
                                        ),
                                    )
                                    .into());
                                }
                            },
                        }
                    }
                    Network::Vip(vn) => {
                        if !n.static_ips.is_empty() {
                            let keep =
                                had.filter(|ip| n.static_ips.contains(ip) && !claimed.contains(ip));
                            keep.or_else(|| {
                                n.static_ips.iter().copied().find(|ip| {
                                    !claimed.contains(ip) && !held.contains(&(n.name.clone(), *ip))
                                })
                            })
                        } else {
                            let keep = had.filter(|ip| {
                                !claimed.contains(ip)
                                    && vn.subnets.iter().any(|s| {
                                        network::subnet_serves(&s.azs, az.as_deref())
                                            && s.static_ips.iter().any(|r| r.contains(*ip))
                                    })
                            });
                            let ip = keep
                                .or_else(|| network::allocate_vip(&mut pool, vn, az.as_deref()));
                            if ip.is_none() {
                                return Err(nat.key("name").error(
                                    m,
                                    format!(
                                        "instance group '{}' on vip network '{}' needs static_ips (the network has no free VIPs)",
                                        g.name, n.name
                                    ),
                                )
                                .into());
                            }
                            ip
                        }
                    }
                };
                if let Some(ip) = ip {
                    claimed.insert(ip);
                    if had == Some(ip) {
                        kept_ips.insert((slot.existing.unwrap_or_default(), n.name.clone(), ip));
                    } else {
                        new_res.push(PlannedReservation {
                            instance: format!("{}/{id}", g.name),
                            network: n.name.clone(),
                            ip,
                            is_static: !n.static_ips.is_empty(),
                        });
                    }
                }
                let mut default = n.default.clone();
                default.sort();
                nets.insert(
                    n.name.clone(),
                    network::settings(cn, ip, az.as_deref(), &default, n.nic_group.as_deref()),
                );
            }
            let az_cp = az
                .as_ref()
                .and_then(|a| input.cloud_config.azs.iter().find(|x| &x.name == a))
                .map(|a| &a.cloud_properties);
            let cloud_properties = shallow_merge(az_cp.into_iter().chain(vm_cp.iter().copied()));
            instances.push(InstancePlan {
                id,
                index: *index,
                az,
                bootstrap: e.is_some_and(|e| e.bootstrap),
                state: e.map_or(InstanceState::Started, |e| e.state),
                cloud_properties,
                networks: nets,
                change: Change::Create,
                reasons: Vec::new(),
                existing_vm: e.and_then(|e| e.vm.as_ref().map(|v| v.cid.clone())),
                existing_disk: e.and_then(|e| e.persistent_disk.as_ref().map(|d| d.cid.clone())),
            });
        }
        // Keep a single existing bootstrap instance; otherwise the lowest index.
        if instances.iter().filter(|i| i.bootstrap).count() != 1 {
            for (n, i) in instances.iter_mut().enumerate() {
                i.bootstrap = n == 0;
            }
        }
        gp.instances = instances;
    }
    // Instances of groups no longer in the manifest.
    for e in &input.current {
        if !known_groups.contains(e.group.as_str()) {
            to_delete.push(obsolete(e));
        }
    }

    // Links.
    let mut sources = Vec::new();
    for (gi, jobs) in drafts.iter().enumerate() {
        for (ji, d) in jobs.iter().enumerate() {
            sources.push(JobSource {
                group: gi,
                job: ji,
                spec: d.spec,
                consumes: d.consumes,
                provides: d.provides,
                custom: d.custom.clone(),
                at: d.at.clone(),
            });
        }
    }
    let providers = links::providers(m, &groups, &sources)?;
    let resolved = links::resolve(m, &groups, &sources, &providers)?;
    for (src, links) in sources.iter().zip(resolved) {
        let job = &mut groups[src.group].jobs[src.job];
        job.links = links;
        job.provides = links::provided_of(&providers, src.group, src.job);
    }
    for g in &mut groups {
        g.links_digest = digest(
            &g.jobs
                .iter()
                .map(|j| (&j.name, &j.links))
                .collect::<Vec<_>>(),
        );
    }

    // Changes and the per-AZ update policy.
    for g in &mut groups {
        let snapshot = g.clone();
        for i in &mut g.instances {
            if let Some(e) = input.current.iter().find(|e| e.id == i.id) {
                let (change, reasons) = instance_change(e, &snapshot, i, &input.options);
                i.change = change;
                i.reasons = reasons;
            }
        }
        g.update.azs = az_updates(g);
    }

    // Reservations released: every recorded IP of this deployment not kept.
    let mut released = Vec::new();
    for (pos, e) in input.current.iter().enumerate() {
        for (net, s) in &e.networks {
            if let Some(ip) = s.ip
                && !kept_ips.contains(&(pos, net.clone(), ip))
            {
                released.push(PlannedReservation {
                    instance: e.name(),
                    network: net.clone(),
                    ip,
                    is_static: m
                        .instance_group(&e.group)
                        .and_then(|g| g.networks.iter().find(|n| &n.name == net))
                        .is_some_and(|n| n.static_ips.contains(&ip)),
                });
            }
        }
    }

    let mut tags = runtime.tags.clone();
    for (k, v) in &m.tags {
        tags.insert(k.clone(), v.clone());
    }
    let mut variables = m.variables.clone();
    for v in &runtime.variables {
        if !variables.iter().any(|x| x.name == v.name) {
            variables.push(v.clone());
        }
    }
    Ok(DeploymentPlan {
        name: m.name.clone(),
        releases: release_versions
            .into_iter()
            .map(|(name, version)| ReleaseVersion { name, version })
            .collect(),
        instance_groups: groups,
        instances_to_delete: to_delete,
        ip_reservations_new: new_res,
        ip_reservations_released: released,
        variables,
        tags,
    })
}

#[allow(clippy::too_many_arguments)]
fn job_draft<'a>(
    m: &bosh_types::manifest::Manifest,
    release_of: &dyn Fn(&str) -> Option<&'a ReleaseInput>,
    name: &str,
    release: &str,
    raw: &Value,
    addon: Option<&str>,
    consumes: &'a Value,
    provides: &'a Value,
    custom: Vec<(String, String, Vec<String>)>,
    at: At,
) -> Result<JobDraft<'a>, PlanError> {
    let Some(rel) = release_of(release) else {
        return Err(at.key("release").error(
            m,
            format!(
                "release '{release}' of job '{name}' is not uploaded or not listed in 'releases'"
            ),
        ));
    };
    let Some(job) = rel.jobs.iter().find(|j| j.name == name) else {
        return Err(at.key("name").error(
            m,
            format!(
                "job '{name}' not found in release '{}/{}'",
                rel.name, rel.version
            ),
        ));
    };
    let properties =
        bind_properties(&job.spec, raw).map_err(|e| at.key("properties").error(m, e))?;
    Ok(JobDraft {
        plan: JobPlan {
            name: name.to_owned(),
            release: release.to_owned(),
            release_version: rel.version.clone(),
            version: job.version.clone(),
            sha1: job.sha1.clone(),
            addon: addon.map(str::to_owned),
            properties,
            links: IndexMap::new(),
            provides: Vec::new(),
        },
        spec: &job.spec,
        consumes,
        provides,
        custom,
        at,
    })
}

fn is_latest(v: &str) -> bool {
    v == "latest" || v.ends_with(".latest")
}

/// Highest of `candidates` by semi-semantic version (string order when unparsable).
fn highest<'a>(candidates: impl Iterator<Item = (&'a str, usize)>) -> Option<usize> {
    candidates
        .max_by(
            |(a, _), (b, _)| match (Version::parse(a), Version::parse(b)) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            },
        )
        .map(|(_, i)| i)
}

fn resolve_release<'a>(
    releases: &'a [ReleaseInput],
    name: &str,
    version: Option<&str>,
) -> Result<&'a ReleaseInput, String> {
    let version = version.unwrap_or("latest");
    let found = if is_latest(version) {
        let prefix = version.strip_suffix("latest").unwrap_or("");
        highest(
            releases
                .iter()
                .enumerate()
                .filter(|(_, r)| r.name == name && r.version.starts_with(prefix))
                .map(|(i, r)| (r.version.as_str(), i)),
        )
        .map(|i| &releases[i])
    } else {
        releases
            .iter()
            .find(|r| r.name == name && r.version == version)
    };
    found.ok_or_else(|| format!("release '{name}/{version}' is not uploaded"))
}

fn resolve_stemcell(input: &PlanInput, s: &StemcellRef) -> Result<StemcellPlan, String> {
    let matches = |c: &crate::input::StemcellInput| match (&s.os, &s.name) {
        (Some(os), _) => &c.operating_system == os,
        (None, Some(name)) => &c.name == name,
        (None, None) => false,
    };
    let what = s.os.as_deref().or(s.name.as_deref()).unwrap_or_default();
    let found = if is_latest(&s.version) {
        let prefix = s.version.strip_suffix("latest").unwrap_or("");
        highest(
            input
                .stemcells
                .iter()
                .enumerate()
                .filter(|(_, c)| matches(c) && c.version.starts_with(prefix))
                .map(|(i, c)| (c.version.as_str(), i)),
        )
        .map(|i| &input.stemcells[i])
    } else {
        input
            .stemcells
            .iter()
            .find(|c| matches(c) && c.version == s.version)
    };
    let c = found.ok_or_else(|| {
        format!(
            "stemcell '{what}/{}' (alias '{}') is not uploaded",
            s.version, s.alias
        )
    })?;
    Ok(StemcellPlan {
        alias: s.alias.clone(),
        name: c.name.clone(),
        os: c.operating_system.clone(),
        version: c.version.clone(),
        cid: c.cid.clone(),
    })
}

fn disk_plan(input: &PlanInput, g: &InstanceGroup) -> Result<Option<DiskPlan>, String> {
    Ok(match &g.persistent_disk {
        PersistentDisk::None | PersistentDisk::Size(0) => None,
        PersistentDisk::Size(n) => Some(DiskPlan {
            size: *n,
            cloud_properties: Value::Map(Default::default()),
            disk_type: None,
        }),
        PersistentDisk::Type(t) => input
            .cloud_config
            .disk_types
            .iter()
            .find(|d| &d.name == t)
            .map(|d| DiskPlan {
                size: d.disk_size,
                cloud_properties: if d.cloud_properties.is_null() {
                    Value::Map(Default::default())
                } else {
                    d.cloud_properties.clone()
                },
                disk_type: Some(t.clone()),
            }),
        PersistentDisk::Named(_) => {
            return Err("named 'persistent_disks' are not supported by this planner yet".into());
        }
    })
}

/// vm_type then vm_extensions cloud properties, in order (the AZ's go first per instance).
fn vm_cloud_properties<'a>(input: &'a PlanInput, g: &InstanceGroup) -> Vec<&'a Value> {
    let cc = &input.cloud_config;
    let mut out = Vec::new();
    if let Some(vt) = g
        .vm_type
        .as_ref()
        .and_then(|n| cc.vm_types.iter().find(|v| &v.name == n))
    {
        out.push(&vt.cloud_properties);
    }
    for ext in &g.vm_extensions {
        if let Some(x) = cc.vm_extensions.iter().find(|v| &v.name == ext) {
            out.push(&x.cloud_properties);
        }
    }
    out
}

fn place_group(
    input: &PlanInput,
    g: &InstanceGroup,
    existing: &[(usize, &ExistingInstance)],
) -> Placement {
    let driving = g
        .networks
        .iter()
        .find_map(|n| match input.cloud_config.network(&n.name) {
            Some(Network::Manual(mn)) if !n.static_ips.is_empty() => Some((n, mn)),
            _ => None,
        });
    match driving {
        Some((n, mn)) => {
            let ips: Vec<StaticIp> = n
                .static_ips
                .iter()
                .map(|ip| StaticIp {
                    ip: *ip,
                    azs: network::subnet_of(mn, *ip)
                        .map(|s| {
                            s.azs
                                .iter()
                                .filter(|a| g.azs.is_empty() || g.azs.contains(a))
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect();
            placement::place_by_static_ips(&n.name, &ips, &g.azs, existing)
        }
        None => placement::place_by_az(g.instances, &g.azs, existing),
    }
}

fn obsolete(e: &ExistingInstance) -> ObsoleteInstance {
    ObsoleteInstance {
        group: e.group.clone(),
        id: e.id,
        index: e.index,
        az: e.az.clone(),
        vm: e.vm.as_ref().map(|v| v.cid.clone()),
        disk: e.persistent_disk.as_ref().map(|d| d.cid.clone()),
    }
}

/// Per-AZ batches: the bootstrap instance's AZ first, then AZs as instances list them.
fn az_updates(g: &InstanceGroupPlan) -> Vec<AzUpdate> {
    let mut order: Vec<Option<String>> = Vec::new();
    if let Some(b) = g.instances.iter().find(|i| i.bootstrap) {
        order.push(b.az.clone());
    }
    for i in &g.instances {
        if !order.contains(&i.az) {
            order.push(i.az.clone());
        }
    }
    order
        .into_iter()
        .map(|az| {
            let n = g
                .instances
                .iter()
                .filter(|i| i.az == az && i.change != Change::None)
                .count();
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            AzUpdate {
                az,
                instances: n,
                canaries: g.update.canaries.resolve(n).min(n),
                max_in_flight: g.update.max_in_flight.resolve(n).max(1),
            }
        })
        .collect()
}
