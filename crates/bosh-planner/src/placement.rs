//! Matching desired instances to existing ones and to AZs (formats.md §12.2-12.4), as the
//! director's availability-zone pickers do.

use crate::input::ExistingInstance;
use indexmap::IndexMap;
use std::collections::VecDeque;
use std::net::IpAddr;

/// One desired instance: an existing one that stays, or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Position in the planner's `current` list.
    pub existing: Option<usize>,
    pub az: Option<String>,
    /// Static IP per network name, when placement came from static IPs.
    pub static_ips: IndexMap<String, IpAddr>,
}

#[derive(Debug, Default)]
pub(crate) struct Placement {
    pub slots: Vec<Slot>,
    /// Positions of existing instances no longer wanted.
    pub obsolete: Vec<usize>,
}

/// Balances `desired` instances over `azs` (none: no AZs), keeping existing instances
/// where possible. `existing` is `(position, instance)` of the group's instances.
///
/// The director's rules: instances with a persistent disk keep their AZ first (lowest index
/// first); the rest go one at a time to the AZ with the fewest placed instances, ties broken
/// by an AZ that still has unclaimed existing instances, else the smallest AZ name; an
/// unclaimed existing instance of that AZ is reused, lowest index first. Whatever is left
/// unclaimed is obsolete, so a scale-down removes from the fullest AZs, highest index first.
pub(crate) fn place_by_az(
    desired: u32,
    azs: &[String],
    existing: &[(usize, &ExistingInstance)],
) -> Placement {
    let mut sorted: Vec<&(usize, &ExistingInstance)> = existing.iter().collect();
    sorted.sort_by_key(|(_, e)| e.index);
    let mut by_az: IndexMap<Option<String>, VecDeque<usize>> = IndexMap::new();
    let mut has_disk: Vec<usize> = Vec::new();
    for (pos, e) in &sorted {
        by_az.entry(e.az.clone()).or_default().push_back(*pos);
        if e.persistent_disk.is_some() {
            has_disk.push(*pos);
        }
    }
    let az_of = |pos: usize| -> Option<String> {
        existing
            .iter()
            .find(|(p, _)| *p == pos)
            .and_then(|(_, e)| e.az.clone())
    };
    let mut out = Placement::default();
    let mut remaining = desired;

    if azs.is_empty() {
        let pool = by_az.entry(None).or_default();
        while remaining > 0 {
            let existing = pool.pop_front();
            out.slots.push(Slot {
                existing,
                az: None,
                static_ips: IndexMap::new(),
            });
            remaining -= 1;
        }
        out.obsolete = by_az.into_values().flatten().collect();
        out.obsolete.sort_by_key(|p| index_of(existing, *p));
        return out;
    }

    // AZs with the most existing instances first: ties then favour where instances live.
    let count = |az: &str| by_az.get(&Some(az.to_owned())).map_or(0, VecDeque::len);
    let mut desired_azs: Vec<&String> = azs.iter().collect();
    desired_azs.sort_by_key(|a| std::cmp::Reverse(count(a)));
    let mut weight: IndexMap<String, u32> = desired_azs.iter().map(|a| ((*a).clone(), 0)).collect();

    for pos in has_disk {
        if remaining == 0 {
            break;
        }
        let Some(az) = az_of(pos) else { continue };
        let Some(w) = weight.get_mut(&az) else {
            continue;
        };
        *w += 1;
        if let Some(q) = by_az.get_mut(&Some(az.clone())) {
            q.retain(|p| *p != pos);
        }
        out.slots.push(Slot {
            existing: Some(pos),
            az: Some(az),
            static_ips: IndexMap::new(),
        });
        remaining -= 1;
    }

    let mut preferred: Vec<String> = by_az
        .iter()
        .flat_map(|(az, q)| q.iter().filter_map(move |_| az.clone()))
        .collect();
    while remaining > 0 {
        let min = weight.values().copied().min().unwrap_or(0);
        let ties: Vec<&String> = weight
            .iter()
            .filter(|(_, w)| **w == min)
            .map(|(a, _)| a)
            .collect();
        let chosen = ties
            .iter()
            .find(|a| preferred.contains(a))
            .or_else(|| ties.iter().min())
            .map(|a| (*a).clone())
            .unwrap_or_default();
        if let Some(w) = weight.get_mut(&chosen) {
            *w += 1;
        }
        if let Some(i) = preferred.iter().position(|a| *a == chosen) {
            preferred.remove(i);
        }
        let existing = by_az
            .get_mut(&Some(chosen.clone()))
            .and_then(VecDeque::pop_front);
        out.slots.push(Slot {
            existing,
            az: Some(chosen),
            static_ips: IndexMap::new(),
        });
        remaining -= 1;
    }
    out.obsolete = by_az.into_values().flatten().collect();
    out.obsolete.sort_by_key(|p| index_of(existing, *p));
    out
}

fn index_of(existing: &[(usize, &ExistingInstance)], pos: usize) -> u32 {
    existing
        .iter()
        .find(|(p, _)| *p == pos)
        .map_or(u32::MAX, |(_, e)| e.index)
}

/// A static IP of the network that drives placement, with the AZs it can serve (empty: any
/// instance without AZ).
#[derive(Debug, Clone)]
pub(crate) struct StaticIp {
    pub ip: IpAddr,
    pub azs: Vec<String>,
}

/// Places a group whose first manual network lists `static_ips`: each IP is one instance,
/// its AZ follows from the IP's subnet. Existing instances keep their IP when it is still
/// listed, else take a free listed IP of their AZ, else become obsolete; the remaining IPs
/// become new instances, each in the AZ (of its subnet's) with the fewest instances.
pub(crate) fn place_by_static_ips(
    network: &str,
    ips: &[StaticIp],
    group_azs: &[String],
    existing: &[(usize, &ExistingInstance)],
) -> Placement {
    let mut sorted: Vec<&(usize, &ExistingInstance)> = existing.iter().collect();
    sorted.sort_by_key(|(_, e)| e.index);
    let mut claimed = vec![false; ips.len()];
    let mut out = Placement::default();
    let az_ok = |e: &ExistingInstance| match &e.az {
        None => group_azs.is_empty(),
        Some(a) => group_azs.contains(a),
    };
    let serves = |s: &StaticIp, az: &Option<String>| match az {
        None => s.azs.is_empty(),
        Some(a) => s.azs.contains(a),
    };
    let mut placed: Vec<bool> = vec![false; sorted.len()];
    for (n, (pos, e)) in sorted.iter().enumerate() {
        let Some(ip) = e.networks.get(network).and_then(|s| s.ip) else {
            continue;
        };
        if !az_ok(e) {
            continue;
        }
        if let Some(i) = ips
            .iter()
            .position(|s| s.ip == ip && serves(s, &e.az))
            .filter(|i| !claimed[*i])
        {
            claimed[i] = true;
            placed[n] = true;
            out.slots.push(slot(*pos, e.az.clone(), network, ip));
        }
    }
    for (n, (pos, e)) in sorted.iter().enumerate() {
        if placed[n] {
            continue;
        }
        let free = ips
            .iter()
            .enumerate()
            .find(|(i, s)| !claimed[*i] && serves(s, &e.az));
        match free {
            Some((i, s)) if az_ok(e) => {
                claimed[i] = true;
                out.slots.push(slot(*pos, e.az.clone(), network, s.ip));
            }
            _ => out.obsolete.push(*pos),
        }
    }
    for (i, s) in ips.iter().enumerate() {
        if claimed[i] {
            continue;
        }
        let az = match s.azs.len() {
            0 => None,
            1 => Some(s.azs[0].clone()),
            _ => s
                .azs
                .iter()
                .min_by_key(|a| {
                    let n = out
                        .slots
                        .iter()
                        .filter(|sl| sl.az.as_deref() == Some(a.as_str()))
                        .count();
                    (n, (*a).clone())
                })
                .cloned(),
        };
        let mut static_ips = IndexMap::new();
        static_ips.insert(network.to_owned(), s.ip);
        out.slots.push(Slot {
            existing: None,
            az,
            static_ips,
        });
    }
    out
}

fn slot(pos: usize, az: Option<String>, network: &str, ip: IpAddr) -> Slot {
    let mut static_ips = IndexMap::new();
    static_ips.insert(network.to_owned(), ip);
    Slot {
        existing: Some(pos),
        az,
        static_ips,
    }
}

/// The lowest index not in `used`.
pub(crate) fn lowest_free_index(used: &[u32]) -> u32 {
    let mut i = 0;
    while used.contains(&i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosh_types::ids::InstanceId;

    fn inst(index: u32, az: &str) -> ExistingInstance {
        ExistingInstance {
            group: "g".into(),
            id: InstanceId::from_uuid(uuid::Uuid::from_u128(u128::from(index) + 1)),
            index,
            az: Some(az.into()),
            bootstrap: false,
            state: Default::default(),
            dirty: false,
            vm: None,
            networks: IndexMap::new(),
            persistent_disk: None,
            applied: None,
        }
    }

    fn azs(p: &Placement) -> Vec<String> {
        p.slots.iter().map(|s| s.az.clone().unwrap()).collect()
    }

    #[test]
    fn fresh_instances_round_robin_over_azs_by_name() {
        let p = place_by_az(5, &["z2".into(), "z1".into(), "z3".into()], &[]);
        assert_eq!(azs(&p), ["z1", "z2", "z3", "z1", "z2"]);
        assert!(p.slots.iter().all(|s| s.existing.is_none()));
    }

    #[test]
    fn scale_down_removes_from_the_fullest_az_highest_index_first() {
        let cur = [
            inst(0, "z1"),
            inst(1, "z2"),
            inst(2, "z1"),
            inst(3, "z2"),
            inst(4, "z1"),
        ];
        let existing: Vec<(usize, &ExistingInstance)> = cur.iter().enumerate().collect();
        let p = place_by_az(3, &["z1".into(), "z2".into()], &existing);
        assert_eq!(p.obsolete, vec![3, 4]);
        let mut kept: Vec<usize> = p.slots.iter().filter_map(|s| s.existing).collect();
        kept.sort();
        assert_eq!(kept, vec![0, 1, 2]);
    }

    #[test]
    fn removed_az_makes_its_instances_obsolete_and_new_ones_fill_the_rest() {
        let cur = [inst(0, "z1"), inst(1, "z2")];
        let existing: Vec<(usize, &ExistingInstance)> = cur.iter().enumerate().collect();
        let p = place_by_az(2, &["z1".into()], &existing);
        assert_eq!(p.obsolete, vec![1]);
        assert_eq!(p.slots[0].existing, Some(0));
        assert_eq!(p.slots[1].existing, None);
    }

    #[test]
    fn lowest_free_index_fills_gaps() {
        assert_eq!(lowest_free_index(&[0, 1, 3]), 2);
        assert_eq!(lowest_free_index(&[]), 0);
    }
}
