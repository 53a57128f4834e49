//! Properties of plans that hold whatever the manifest: no IP handed out twice or outside
//! its subnet's dynamic/static pools, stable identity across redeploys, one bootstrap per
//! group, and errors that name the manifest path.

mod common;

use bosh_planner::{Change, DeploymentPlan, IpReservation, PlanInput, SequentialIds, plan};
use bosh_types::cloud_config::Network;
use common::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

const HEADER: &str = r#"name: prop
releases:
- {name: app, version: "1"}
stemcells:
- {alias: default, os: ubuntu-jammy, version: latest}
update: {canaries: 1, max_in_flight: 2, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
"#;

#[derive(Debug, Clone)]
struct Group {
    instances: u32,
    azs: Vec<&'static str>,
    /// Static IPs per AZ drawn from each subnet's static pool (one per instance).
    static_ips: bool,
    job: &'static str,
}

fn manifest_src(groups: &[Group]) -> String {
    let mut s = HEADER.to_owned();
    for (n, g) in groups.iter().enumerate() {
        s += &format!(
            "- name: g{n}\n  instances: {}\n  azs: [{}]\n  vm_type: small\n  stemcell: default\n  jobs:\n  - {{name: {}, release: app}}\n  networks:\n  - name: default\n",
            g.instances,
            g.azs.join(", "),
            g.job
        );
        if g.static_ips {
            // Instance k of group n takes 10.0.<az>.<10+n*3+k/len>: distinct across groups.
            let ips: Vec<String> = (0..g.instances)
                .map(|k| {
                    let az = g.azs[k as usize % g.azs.len()];
                    let subnet = &az[1..];
                    format!(
                        "10.0.{subnet}.{}",
                        10 + n as u32 * 3 + k / g.azs.len() as u32
                    )
                })
                .collect();
            s += &format!("    static_ips: [{}]\n", ips.join(", "));
        }
    }
    s
}

fn group_strategy() -> impl Strategy<Value = Group> {
    (
        0u32..6,
        proptest::sample::subsequence(vec!["z1", "z2", "z3"], 1..=3),
        any::<bool>(),
        proptest::sample::select(vec!["redis", "postgres"]),
    )
        .prop_map(|(instances, azs, static_ips, job)| Group {
            // Three static IPs per AZ and group keeps the pools big enough.
            instances: if static_ips {
                instances.min(3 * azs.len() as u32)
            } else {
                instances
            },
            azs,
            static_ips,
            job,
        })
}

/// Every plan invariant that needs no expected output.
fn check_invariants(input: &PlanInput, p: &DeploymentPlan) {
    let mut seen: HashSet<IpAddr> = input.other_reservations.iter().map(|r| r.ip).collect();
    let Some(Network::Manual(net)) = input.cloud_config.network("default") else {
        panic!("default network")
    };
    for g in &p.instance_groups {
        let mg = input.manifest.instance_group(&g.name).unwrap();
        assert_eq!(g.instances.len() as u32, mg.instances, "{}", g.name);
        let indexes: HashSet<u32> = g.instances.iter().map(|i| i.index).collect();
        assert_eq!(
            indexes.len(),
            g.instances.len(),
            "indexes unique in {}",
            g.name
        );
        if !g.instances.is_empty() {
            assert_eq!(
                g.instances.iter().filter(|i| i.bootstrap).count(),
                1,
                "one bootstrap in {}",
                g.name
            );
        }
        let statics = &mg.networks[0].static_ips;
        for i in &g.instances {
            let az = i.az.as_deref().unwrap();
            assert!(mg.azs.iter().any(|a| a == az));
            let ip = i.networks["default"].ip.expect("manual IP");
            assert!(seen.insert(ip), "{ip} assigned twice");
            let subnet = net
                .subnets
                .iter()
                .find(|s| s.range.unwrap().contains(ip))
                .unwrap_or_else(|| panic!("{ip} outside every subnet"));
            assert!(
                subnet.azs.iter().any(|a| a == az),
                "{ip} not in a subnet of {az}"
            );
            assert!(!subnet.is_restricted(ip), "{ip} is reserved");
            if statics.is_empty() {
                assert!(!subnet.is_static(ip), "dynamic {ip} in the static range");
            } else {
                assert!(
                    statics.contains(&ip),
                    "{ip} is not one of the group's static IPs"
                );
            }
        }
    }
}

fn redeploy_over(
    input: &PlanInput,
    first: &DeploymentPlan,
    ids: &mut SequentialIds,
) -> (PlanInput, DeploymentPlan) {
    let mut next = input.clone();
    let mut n = 0;
    next.current = first.instances_after_apply(|k| {
        n += 1;
        format!("{k}-{n}")
    });
    let p = plan(&next, ids).unwrap_or_else(|e| panic!("redeploy: {e}"));
    (next, p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plans_keep_ips_unique_and_identity_stable(
        groups in proptest::collection::vec(group_strategy(), 1..4),
        resized in proptest::collection::vec(0u32..6, 3),
        taken in proptest::collection::vec((1u8..4, 20u8..30), 0..6),
    ) {
        let mut input = input(&manifest_src(&groups));
        input.other_reservations = taken
            .iter()
            .map(|(s, h)| IpReservation {
                deployment: "other".into(),
                network: "default".into(),
                ip: format!("10.0.{s}.{h}").parse().unwrap(),
            })
            .collect();
        let mut ids = SequentialIds::default();
        let first = plan(&input, &mut ids).unwrap_or_else(|e| panic!("{e}"));
        check_invariants(&input, &first);

        // The same manifest over its own result: nothing to do, nothing moves.
        let (again_input, again) = redeploy_over(&input, &first, &mut ids);
        check_invariants(&again_input, &again);
        prop_assert!(again.instances_to_delete.is_empty());
        prop_assert!(again.ip_reservations_new.is_empty());
        prop_assert!(again.ip_reservations_released.is_empty());
        for (a, b) in first.instance_groups.iter().zip(&again.instance_groups) {
            for (x, y) in a.instances.iter().zip(&b.instances) {
                prop_assert_eq!(y.change, Change::None, "{:?}", y.reasons);
                prop_assert_eq!((x.id, x.index, &x.az, x.bootstrap), (y.id, y.index, &y.az, y.bootstrap));
                prop_assert_eq!(&x.networks, &y.networks);
            }
        }

        // Resize every dynamic group: survivors keep their index, AZ and IP.
        let resized_groups: Vec<Group> = groups
            .iter()
            .zip(resized.iter().cycle())
            .map(|(g, n)| Group { instances: if g.static_ips { g.instances } else { *n }, ..g.clone() })
            .collect();
        let mut third = again_input.clone();
        third.manifest = manifest(&manifest_src(&resized_groups));
        let (third_input, third_plan) = redeploy_over(&third, &again, &mut ids);
        check_invariants(&third_input, &third_plan);
        let before: HashMap<_, _> = again
            .instance_groups
            .iter()
            .flat_map(|g| g.instances.iter().map(|i| (i.id, (i.index, i.az.clone(), i.networks["default"].ip))))
            .collect();
        for g in &third_plan.instance_groups {
            for i in &g.instances {
                if let Some(old) = before.get(&i.id) {
                    prop_assert_eq!(old, &(i.index, i.az.clone(), i.networks["default"].ip));
                }
            }
        }
        let kept: usize = third_plan.instance_groups.iter().map(|g| g.instances.iter().filter(|i| before.contains_key(&i.id)).count()).sum();
        prop_assert_eq!(kept + third_plan.instances_to_delete.len(), before.len());
    }
}

const WEB: &str = r#"name: shop
releases:
- {name: app, version: "1"}
stemcells:
- {alias: default, os: ubuntu-jammy, version: latest}
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- name: db
  instances: 1
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: postgres, release: app}]
- name: web
  instances: 3
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks:
  - name: default
  jobs:
  - name: web
    release: app
"#;

fn err_of(src: &str) -> bosh_planner::PlanErrors {
    plan(&input(src), &mut SequentialIds::default()).unwrap_err()
}

#[test]
fn undefined_network_is_named_with_its_path_and_line() {
    let e = err_of(&WEB.replace("  - name: default\n  jobs:", "  - name: nope\n  jobs:"));
    let at = e
        .at("instance_groups[name=web].networks[0].name")
        .expect("path");
    assert!(at.message.contains("network 'nope' is not defined"), "{e}");
    assert_eq!(at.line, Some(21));
}

#[test]
fn unknown_job_and_release_version_are_named() {
    let e = err_of(&WEB.replace(
        "  - name: web\n    release: app",
        "  - name: nope\n    release: app",
    ));
    let at = e
        .at("instance_groups[name=web].jobs[name=nope].name")
        .expect("path");
    assert_eq!(at.message, "job 'nope' not found in release 'app/1'");
    let e = err_of(&WEB.replace("version: \"1\"", "version: \"9\""));
    assert!(e.at("releases[name=app].version").is_some(), "{e}");
    let e = err_of(&WEB.replace("version: latest", "version: \"7.7\""));
    let at = e.at("instance_groups[name=web].stemcell").expect("path");
    assert!(at.message.contains("'ubuntu-jammy/7.7'"), "{e}");
}

#[test]
fn a_static_ip_of_another_deployment_is_refused() {
    let mut input = input(&WEB.replace(
        "  - name: default\n  jobs:",
        "  - name: default\n    static_ips: [10.0.1.10, 10.0.1.11, 10.0.2.10]\n  jobs:",
    ));
    input.other_reservations.push(IpReservation {
        deployment: "other".into(),
        network: "default".into(),
        ip: "10.0.1.11".parse().unwrap(),
    });
    let e = plan(&input, &mut SequentialIds::default()).unwrap_err();
    let at = e
        .at("instance_groups[name=web].networks[0].static_ips")
        .expect("path");
    assert!(
        at.message
            .contains("already reserved by deployment 'other'"),
        "{e}"
    );
}

#[test]
fn a_missing_required_link_names_group_job_and_link() {
    let src = WEB.replace(
        "  jobs: [{name: postgres, release: app}]",
        "  jobs: [{name: redis, release: app}]",
    );
    let e = err_of(&src);
    let msg = e.to_string();
    assert!(
        msg.contains("link 'db'")
            && msg.contains("job 'web'")
            && msg.contains("instance group 'web'"),
        "{msg}"
    );
    assert!(e.at("instance_groups[name=web].jobs[name=web]").is_some());
}

#[test]
fn two_implicit_providers_are_ambiguous_until_one_is_named() {
    let two = WEB.replace(
        "  jobs: [{name: postgres, release: app}]",
        "  jobs: [{name: postgres, release: app}]\n- name: db2\n  instances: 1\n  azs: [z1]\n  vm_type: small\n  stemcell: default\n  networks: [{name: default}]\n  jobs: [{name: postgres, release: app, provides: {db: {as: other}}}]",
    );
    assert!(
        err_of(&two)
            .to_string()
            .contains("multiple link providers found")
    );
    let named = two.replace(
        "    release: app\n",
        "    release: app\n    consumes: {db: {from: other}}\n",
    );
    let p = plan(&input(&named), &mut SequentialIds::default()).unwrap();
    let link = &p.instance_group("web").unwrap().jobs[0].links["db"];
    assert_eq!(link.instance_group, "db2");
    let blocked = two.replace(
        "    release: app\n",
        "    release: app\n    consumes: {db: nil}\n",
    );
    let p = plan(&input(&blocked), &mut SequentialIds::default()).unwrap();
    assert!(p.instance_group("web").unwrap().jobs[0].links.is_empty());
}

#[test]
fn recreate_flag_recreates_everything_and_bootstrap_stays_put() {
    let input0 = input(WEB);
    let mut ids = SequentialIds::default();
    let first = plan(&input0, &mut ids).unwrap();
    let mut next = input0.clone();
    next.current = first.instances_after_apply(|k| format!("{k}-x"));
    // Move bootstrap to web/2: a redeploy keeps it there.
    for e in next.current.iter_mut().filter(|e| e.group == "web") {
        e.bootstrap = e.index == 2;
    }
    next.options.recreate = true;
    let p = plan(&next, &mut ids).unwrap();
    let web = p.instance_group("web").unwrap();
    for i in &web.instances {
        assert_eq!(i.change, Change::Recreate);
        assert_eq!(i.reasons, ["recreate requested"]);
        assert_eq!(i.bootstrap, i.index == 2);
    }
    // The bootstrap instance's AZ is updated first.
    assert_eq!(web.update.azs[0].az.as_deref(), Some("z1"));
}

#[test]
fn env_vm_type_and_disk_changes_are_reported() {
    let input0 = input(WEB);
    let mut ids = SequentialIds::default();
    let first = plan(&input0, &mut ids).unwrap();
    let mut next = input0.clone();
    next.current = first.instances_after_apply(|k| format!("{k}-x"));
    next.manifest = manifest(
        &WEB.replace(
            "  networks: [{name: default}]\n  jobs: [{name: postgres",
            "  networks: [{name: default}]\n  persistent_disk: 2048\n  jobs: [{name: postgres",
        )
        .replacen(
            "  vm_type: small\n  stemcell: default\n  networks:\n",
            "  vm_type: large\n  env: {bosh: {password: x}}\n  stemcell: default\n  networks:\n",
            1,
        ),
    );
    let p = plan(&next, &mut ids).unwrap();
    let web = p.instance_group("web").unwrap();
    assert_eq!(web.instances[0].change, Change::Recreate);
    assert_eq!(
        web.instances[0].reasons,
        ["cloud_properties changed", "env changed"]
    );
    let db = p.instance_group("db").unwrap();
    assert_eq!(db.instances[0].change, Change::Update);
    assert_eq!(db.instances[0].reasons, ["persistent disk changed"]);
}
