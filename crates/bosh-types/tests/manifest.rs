//! Deployment manifest v2: good documents parse into the model, and each rule reports the
//! exact path and line of the offending node.

use bosh_types::cloud_config::CloudConfig;
use bosh_types::manifest::{Count, Lifecycle, Manifest, PersistentDisk, WatchTime};
use bosh_types::runtime_config::PlacementTarget;
use bosh_types::validate::{ValidationError, ValidationErrors};
use bosh_yaml::Value;
use std::net::IpAddr;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture(rel: &str) -> String {
    let path = format!(
        "{}/../../../shared/fixtures/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// 1-based line of the first line containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
        + 1
}

/// 1-based line of the line equal to `exact`.
fn line_exact(src: &str, exact: &str) -> usize {
    src.lines()
        .position(|l| l == exact)
        .unwrap_or_else(|| panic!("no line {exact:?}"))
        + 1
}

/// Replaces `from` (which must occur) with `to`.
fn patch(src: &str, from: &str, to: &str) -> String {
    assert!(src.contains(from), "patch target {from:?} not found");
    src.replacen(from, to, 1)
}

fn err_at<'a>(errs: &'a ValidationErrors, path: &str) -> &'a ValidationError {
    errs.at(path)
        .unwrap_or_else(|| panic!("no error at {path}; got:\n{errs}"))
}

fn parse_err(src: &str) -> ValidationErrors {
    match Manifest::parse(src) {
        Ok(m) => panic!("expected errors, parsed {:?}", m.name),
        Err(e) => e,
    }
}

/// A small valid manifest the rule tests modify.
const BASE: &str = "\
name: kv
releases:
- name: kv
  version: 1.0.0
stemcells:
- alias: default
  os: ubuntu-jammy
  version: latest
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 1000-30000
  update_watch_time: 1000-30000
instance_groups:
- name: kv
  instances: 2
  azs: [z1, z2]
  vm_type: small
  stemcell: default
  networks:
  - name: default
  jobs:
  - name: kv-server
    release: kv
";

const CLOUD: &str = "\
azs:
- name: z1
- name: z2
networks:
- name: default
  subnets:
  - range: 10.0.16.0/24
    gateway: 10.0.16.1
    reserved: [10.0.16.2 - 10.0.16.9]
    static: [10.0.16.100 - 10.0.16.150]
    azs: [z1, z2]
- name: dyn
  type: dynamic
  subnets:
  - azs: [z1, z2]
- name: z1-only
  subnets:
  - range: 10.0.17.0/24
    gateway: 10.0.17.1
    az: z1
vm_types:
- name: small
vm_extensions:
- name: lb
disk_types:
- name: default
  disk_size: 1024
compilation:
  workers: 1
  network: default
  az: z1
";

#[test]
fn realistic_manifest_parses_into_the_model() {
    let m = Manifest::parse(&data("manifest.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.name, "kv-prod");
    assert_eq!(m.releases.len(), 3);
    assert_eq!(
        m.release("os-conf").and_then(|r| r.version.as_deref()),
        Some("22")
    );
    assert_eq!(
        m.release("os-conf")
            .and_then(|r| r.stemcell.as_ref())
            .map(|s| s.version.as_str()),
        Some("1.100")
    );
    assert_eq!(
        m.stemcell("legacy").and_then(|s| s.name.as_deref()),
        Some("bosh-aws-xen-hvm-ubuntu-bionic-go_agent")
    );
    assert_eq!(m.update.canaries, Some(Count::Absolute(1)));
    assert_eq!(m.update.max_in_flight, Some(Count::Percent(25)));
    assert_eq!(
        m.update.update_watch_time,
        Some(WatchTime {
            min_ms: 5000,
            max_ms: 60000
        })
    );
    assert!(!m.update.is_serial());

    let names: Vec<&str> = m.instance_groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["kv", "api", "smoke-tests"]);

    let kv = m.instance_group("kv").unwrap();
    assert_eq!(kv.persistent_disk, PersistentDisk::Type("fast".into()));
    assert_eq!(kv.networks[1].static_ips.len(), 3);
    assert_eq!(
        kv.networks[1].static_ips[2],
        "203.0.113.7".parse::<IpAddr>().unwrap()
    );
    // The group's override keeps its own max_in_flight and inherits the rest.
    let eff = kv.update_config(&m.update);
    assert_eq!(eff.max_in_flight_for(3), Some(1));
    assert_eq!(eff.canaries_for(3), Some(1));
    assert_eq!(eff.vm_strategy.as_deref(), Some("create-swap-delete"));
    // Placeholders in properties and env stay as written, for late interpolation.
    let props = kv
        .job("kv-server")
        .and_then(|j| j.properties.as_ref())
        .unwrap();
    assert_eq!(props.get("port"), Some(&Value::from("((kv_port))")));
    assert_eq!(kv.tags.get("tier").map(String::as_str), Some("data"));

    let api = m.instance_group("api").unwrap();
    assert_eq!(api.vm_resources.map(|r| r.ram), Some(4096));
    assert!(matches!(&api.persistent_disk, PersistentDisk::Named(d) if d[0].name == "cache"));
    // A group's only network is its default for dns and gateway.
    assert_eq!(api.networks[0].default, ["dns", "gateway"]);
    assert_eq!(api.jobs[0].custom_provider_definitions[0].link_type, "http");
    assert_eq!(api.migrated_from[0].az.as_deref(), Some("z1"));
    // With 2 instances, 25% floors to 0 and max_in_flight is raised to 1.
    assert_eq!(api.update_config(&m.update).max_in_flight_for(2), Some(1));

    let smoke = m.instance_group("smoke-tests").unwrap();
    assert_eq!(smoke.lifecycle, Lifecycle::Errand);
    assert_eq!(
        smoke.jobs[0].properties,
        Some(Value::Map(Default::default()))
    );
    assert!(kv.jobs[1].properties.is_none());

    assert_eq!(m.variables.len(), 3);
    assert_eq!(m.variables[2].update_mode.as_deref(), Some("converge"));
    assert_eq!(m.tags.get("cost-center").map(String::as_str), Some("4711"));
    assert_eq!(m.features.use_dns_addresses, Some(true));

    // The deployment-level addon is excluded from errands.
    let addon = &m.addons[0];
    let jobs = vec![("kv-smoke".to_owned(), "kv".to_owned())];
    let mut target = PlacementTarget {
        deployment: "kv-prod",
        teams: &[],
        instance_group: "smoke-tests",
        lifecycle: Lifecycle::Errand,
        jobs: &jobs,
        stemcell_os: "ubuntu-jammy",
        networks: &[],
        azs: &[],
    };
    assert!(!addon.applies_to(&target));
    target.lifecycle = Lifecycle::Service;
    assert!(addon.applies_to(&target));
}

#[test]
fn realistic_manifest_matches_realistic_cloud_config() {
    let m = Manifest::parse(&data("manifest.yml")).unwrap();
    let cc = CloudConfig::parse(&data("cloud-config.yml")).unwrap_or_else(|e| panic!("{e}"));
    m.validate_against(&cc).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn interpolate_fixture_parses_with_placeholders() {
    let src = fixture("interpolate/base.yml");
    let m = Manifest::parse(&src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.name, "kv");
    assert_eq!(m.releases[0].version.as_deref(), Some("latest"));
    assert_eq!(
        m.update.canary_watch_time,
        Some(WatchTime {
            min_ms: 1000,
            max_ms: 30000
        })
    );
    assert_eq!(m.instance_groups.len(), 2);
    assert_eq!(m.instance_groups[1].lifecycle, Lifecycle::Errand);
    assert_eq!(m.variables[0].var_type, "password");
    m.validate_against(&CloudConfig::parse(CLOUD).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn base_is_valid() {
    let m = Manifest::parse(BASE).unwrap_or_else(|e| panic!("{e}"));
    m.validate_against(&CloudConfig::parse(CLOUD).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unknown_keys_are_tolerated() {
    let src = patch(BASE, "name: kv\n", "name: kv\nsome_future_key: {a: 1}\n");
    let src = patch(
        &src,
        "  instances: 2\n",
        "  instances: 2\n  shiny_new_thing: true\n",
    );
    Manifest::parse(&src).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn placeholders_are_not_type_errors() {
    let src = patch(BASE, "  instances: 2\n", "  instances: ((kv_instances))\n");
    let src = patch(
        &src,
        "  - name: default\n",
        "  - name: default\n    static_ips: [10.0.16.100]\n",
    );
    let src = patch(&src, "  canaries: 1\n", "  canaries: ((canaries))\n");
    let src = patch(
        &src,
        "    release: kv\n",
        "    release: kv\n    properties: ((kv_props))\n",
    );
    let m = Manifest::parse(&src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.update.canaries, None);
    assert_eq!(
        m.instance_groups[0].jobs[0].properties,
        Some(Value::from("((kv_props))"))
    );
}

#[test]
fn invalid_yaml_names_its_line() {
    let errs = parse_err("name: kv\nreleases: [\n  {name: kv\n");
    assert_eq!(errs.len(), 1);
    assert!(errs.0[0].line.is_some_and(|l| l >= 2), "{errs}");
}

#[test]
fn missing_required_keys() {
    let src = patch(BASE, "name: kv\n", "");
    let src = patch(&src, "  stemcell: default\n", "");
    let errs = parse_err(&src);
    assert_eq!(err_at(&errs, "name").message, "is required");
    let e = err_at(&errs, "instance_groups[name=kv].stemcell");
    // A missing key is reported at the line of the map that lacks it.
    assert_eq!(e.line, Some(line_of(&src, "  instances: 2") - 1));
}

#[test]
fn all_errors_are_reported_together() {
    let src = patch(BASE, "  instances: 2\n", "  instances: many\n");
    let src = patch(&src, "  vm_type: small\n", "");
    let src = patch(&src, "  canaries: 1\n", "  canaries: lots\n");
    let errs = parse_err(&src);
    assert!(errs.len() >= 3, "{errs}");
    let e = err_at(&errs, "instance_groups[name=kv].instances");
    assert_eq!(e.line, Some(line_of(&src, "instances: many")));
    assert!(e.message.contains("expected an integer"), "{e}");
    err_at(&errs, "instance_groups[name=kv].vm_type");
    err_at(&errs, "update.canaries");
    // Display prints one error per line.
    assert_eq!(errs.to_string().lines().count(), errs.len());
}

#[test]
fn negative_instances_are_refused() {
    let src = patch(BASE, "  instances: 2\n", "  instances: -1\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].instances");
    assert_eq!(e.line, Some(line_of(&src, "instances: -1")));
}

#[test]
fn v1_instance_group_keys_are_refused() {
    for (key, line) in [
        ("resource_pool", "  resource_pool: small\n"),
        ("templates", "  templates: [{name: kv-server}]\n"),
        ("template", "  template: kv-server\n"),
        ("persistent_disk_pool", "  persistent_disk_pool: fast\n"),
    ] {
        let src = patch(BASE, "  instances: 2\n", &format!("  instances: 2\n{line}"));
        let errs = parse_err(&src);
        let e = err_at(&errs, &format!("instance_groups[name=kv].{key}"));
        assert_eq!(e.line, Some(line_of(&src, &format!("  {key}:"))), "{key}");
        assert!(e.message.contains("no longer supported"), "{e}");
    }
}

#[test]
fn v1_and_cloud_config_top_level_keys_are_refused() {
    for key in [
        "networks",
        "resource_pools",
        "disk_pools",
        "jobs",
        "vm_types",
        "azs",
        "compilation",
    ] {
        let src = format!("{BASE}{key}: []\n");
        let errs = parse_err(&src);
        let e = err_at(&errs, key);
        assert_eq!(e.line, Some(line_of(&src, &format!("{key}: []"))), "{key}");
    }
}

#[test]
fn release_and_releases_together_are_refused() {
    let src = patch(
        BASE,
        "releases:\n",
        "release: {name: kv, version: 1}\nreleases:\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "release");
    assert!(e.message.contains("both 'release' and 'releases'"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "release: {name")));
}

#[test]
fn duplicate_names_are_refused() {
    let group = "- name: kv\n  instances: 1\n  vm_type: small\n  stemcell: default\n  networks: [{name: default}]\n  jobs: []\n";
    let src = format!("{BASE}{group}");
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[1].name");
    assert!(
        e.message.contains("duplicate instance group name 'kv'"),
        "{e}"
    );
    assert_eq!(e.line, Some(src.lines().count() - 5));

    let src = patch(
        BASE,
        "stemcells:\n",
        "stemcells:\n- {alias: default, os: ubuntu-noble, version: 1}\n",
    );
    let errs = parse_err(&src);
    err_at(&errs, "stemcells[1].alias");

    let src = patch(
        BASE,
        "    release: kv\n",
        "    release: kv\n  - name: kv-server\n    release: kv\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].jobs[1].name");
    assert!(
        e.message
            .contains("colocated job 'kv-server' is already added"),
        "{e}"
    );
}

#[test]
fn canonical_group_names_must_be_dns_labels_and_unique() {
    let src = patch(BASE, "- name: kv\n  instances", "- name: ___\n  instances");
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=___].name");
    assert!(e.message.contains("not a valid DNS label"), "{e}");
}

#[test]
fn vm_type_xor_vm_resources() {
    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: small\n  vm_resources: {cpu: 1, ram: 1024, ephemeral_disk_size: 1024}\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].vm_resources");
    assert!(e.message.contains("only specify one of"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "vm_resources:")));

    let src = patch(BASE, "  vm_type: small\n", "");
    let errs = parse_err(&src);
    assert!(
        err_at(&errs, "instance_groups[name=kv].vm_type")
            .message
            .contains("missing either")
    );

    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_resources: {cpu: 1, ram: 1024}\n",
    );
    let errs = parse_err(&src);
    let e = err_at(
        &errs,
        "instance_groups[name=kv].vm_resources.ephemeral_disk_size",
    );
    assert_eq!(e.line, Some(line_of(&src, "vm_resources:")));
}

#[test]
fn at_most_one_persistent_disk_form() {
    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: small\n  persistent_disk: 1024\n  persistent_disk_type: fast\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].persistent_disk_type");
    assert!(e.message.contains("more than one of"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "persistent_disk_type:")));

    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: small\n  persistent_disks:\n  - {name: a, type: x}\n  - {name: a, type: y}\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].persistent_disks[1].name");
    assert_eq!(e.line, Some(line_of(&src, "{name: a, type: y}")));
}

#[test]
fn networks_must_not_be_empty() {
    let src = patch(BASE, "  networks:\n  - name: default\n", "  networks: []\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks");
    assert!(e.message.contains("at least one network"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "networks: []")));
}

#[test]
fn several_networks_need_one_default_for_dns_and_gateway() {
    let src = patch(
        BASE,
        "  - name: default\n",
        "  - name: default\n  - name: other\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks");
    assert!(
        e.message
            .contains("must specify which network is default for dns, gateway"),
        "{e}"
    );

    let src = patch(
        BASE,
        "  - name: default\n",
        "  - name: default\n    default: [dns, gateway]\n  - name: other\n    default: [dns]\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[1].default");
    assert!(
        e.message
            .contains("'dns' has default networks: 'default', 'other'"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_exact(&src, "    default: [dns]")));

    let src = patch(
        BASE,
        "  - name: default\n",
        "  - name: default\n    default: [dns, router]\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[0].default[1]");
    assert!(
        e.message
            .contains("invalid default network property 'router'"),
        "{e}"
    );
}

#[test]
fn static_ip_count_must_equal_instances() {
    let src = patch(
        BASE,
        "  - name: default\n",
        "  - name: default\n    static_ips: [10.0.16.100 - 10.0.16.102]\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[0].static_ips");
    assert!(
        e.message
            .contains("has 2 instances but was allocated 3 static IPs"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&src, "static_ips:")));

    let src = patch(
        BASE,
        "  - name: default\n",
        "  - name: default\n    static_ips: [10.0.16.100, 10.0.16.100]\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[0].static_ips[1]");
    assert!(e.message.contains("more than once"), "{e}");
}

#[test]
fn lifecycle_must_be_service_or_errand() {
    let src = patch(
        BASE,
        "  instances: 2\n",
        "  instances: 2\n  lifecycle: batch\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].lifecycle");
    assert!(e.message.contains("invalid lifecycle 'batch'"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "lifecycle: batch")));
}

#[test]
fn stemcells_need_one_of_os_and_name_and_groups_a_known_alias() {
    let src = patch(
        BASE,
        "  os: ubuntu-jammy\n",
        "  os: ubuntu-jammy\n  name: bosh-warden\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "stemcells[alias=default]");
    assert!(
        e.message.contains("'os' and 'name' are both specified"),
        "{e}"
    );

    let src = patch(BASE, "  stemcell: default\n", "  stemcell: jammy\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "instance_groups[name=kv].stemcell");
    assert!(e.message.contains("unknown stemcell 'jammy'"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "stemcell: jammy")));
}

#[test]
fn jobs_must_name_a_known_release() {
    let src = patch(BASE, "    release: kv\n", "    release: kvv\n");
    let errs = parse_err(&src);
    let e = err_at(
        &errs,
        "instance_groups[name=kv].jobs[name=kv-server].release",
    );
    assert!(e.message.contains("unknown release 'kvv'"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "release: kvv")));

    // Without `release`, the only release is used...
    let one = patch(BASE, "    release: kv\n", "");
    let m = Manifest::parse(&one).unwrap();
    assert_eq!(m.instance_groups[0].jobs[0].release, "kv");
    // ...but with two releases it is ambiguous.
    let two = patch(
        &one,
        "releases:\n",
        "releases:\n- {name: other, version: 2}\n",
    );
    let errs = parse_err(&two);
    err_at(
        &errs,
        "instance_groups[name=kv].jobs[name=kv-server].release",
    );
}

#[test]
fn update_values_are_checked() {
    let src = patch(
        BASE,
        "  update_watch_time: 1000-30000\n",
        "  update_watch_time: 30000-1000\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "update.update_watch_time");
    assert!(e.message.contains("cannot be greater"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "30000-1000")));

    let src = patch(BASE, "  canary_watch_time: 1000-30000\n", "");
    let errs = parse_err(&src);
    assert_eq!(
        err_at(&errs, "update.canary_watch_time").message,
        "is required"
    );

    let src = patch(
        BASE,
        "  max_in_flight: 2\n",
        "  max_in_flight: 2\n  vm_strategy: recreate\n",
    );
    let errs = parse_err(&src);
    err_at(&errs, "update.vm_strategy");

    // Instance-group overrides are optional key by key.
    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: small\n  update: {canaries: 10%}\n",
    );
    let m = Manifest::parse(&src).unwrap();
    assert_eq!(
        m.instance_groups[0]
            .update_config(&m.update)
            .canaries_for(20),
        Some(2)
    );
}

#[test]
fn variables_are_checked() {
    let src = format!(
        "{BASE}variables:\n- name: a//b\n  type: password\n- name: ok\n  type: password\n- name: ok\n  type: rsa\n"
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "variables[name=a//b].name");
    assert_eq!(e.line, Some(line_of(&src, "a//b")));
    let e = err_at(&errs, "variables[2].name");
    assert!(e.message.contains("duplicate variable name 'ok'"), "{e}");
}

#[test]
fn link_dns_names_conflict_with_disabled_dns_addresses() {
    let src =
        format!("{BASE}features:\n  use_link_dns_names: true\n  use_short_dns_addresses: false\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "features.use_short_dns_addresses");
    assert_eq!(e.line, Some(line_of(&src, "use_short_dns_addresses")));
}

#[test]
fn deployment_addons_may_not_filter_by_deployment() {
    let src = format!(
        "{BASE}addons:\n- name: a\n  jobs: [{{name: j, release: kv}}]\n  include:\n    deployments: [x]\n"
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "addons[name=a].include.deployments");
    assert_eq!(e.line, Some(line_of(&src, "deployments: [x]")));

    let src = format!("{BASE}addons:\n- name: a\n  jobs: [{{name: j, release: nope}}]\n");
    let errs = parse_err(&src);
    err_at(&errs, "addons[name=a].jobs[name=j].release");
}

// --- cross-checks against a cloud config ------------------------------------------------------

fn cross_errs(src: &str) -> ValidationErrors {
    let m = Manifest::parse(src).unwrap_or_else(|e| panic!("{e}"));
    m.validate_against(&CloudConfig::parse(CLOUD).unwrap())
        .expect_err("expected cross-check errors")
}

#[test]
fn unknown_network_is_reported_with_path_and_line() {
    let src = patch(BASE, "  - name: default\n", "  - name: foo\n");
    let errs = cross_errs(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[0].name");
    assert_eq!(
        e.to_string(),
        format!(
            "instance_groups[name=kv].networks[0].name: network 'foo' is not defined in the cloud config (line {})",
            line_of(&src, "- name: foo")
        )
    );
}

#[test]
fn unknown_vm_type_extension_and_disk_type() {
    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: huge\n  vm_extensions: [lb, nlb]\n  persistent_disk_type: ssd\n",
    );
    let errs = cross_errs(&src);
    let e = err_at(&errs, "instance_groups[name=kv].vm_type");
    assert_eq!(e.line, Some(line_of(&src, "vm_type: huge")));
    let e = err_at(&errs, "instance_groups[name=kv].vm_extensions[1]");
    assert!(e.message.contains("'nlb'"), "{e}");
    let e = err_at(&errs, "instance_groups[name=kv].persistent_disk_type");
    assert_eq!(e.line, Some(line_of(&src, "persistent_disk_type: ssd")));

    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: small\n  persistent_disks: [{name: d, type: ssd}]\n",
    );
    let errs = cross_errs(&src);
    err_at(&errs, "instance_groups[name=kv].persistent_disks[0].type");
}

#[test]
fn azs_must_exist_and_are_required_when_the_cloud_has_them() {
    let src = patch(BASE, "  azs: [z1, z2]\n", "  azs: [z1, z9]\n");
    let errs = cross_errs(&src);
    let e = err_at(&errs, "instance_groups[name=kv].azs[1]");
    assert!(e.message.contains("'z9' is not defined"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "azs: [z1, z9]")));

    let src = patch(BASE, "  azs: [z1, z2]\n", "");
    let errs = cross_errs(&src);
    err_at(&errs, "instance_groups[name=kv].azs");
}

#[test]
fn network_must_have_a_subnet_in_each_group_az() {
    let src = patch(BASE, "  - name: default\n", "  - name: z1-only\n");
    let errs = cross_errs(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[0].name");
    assert!(
        e.message.contains("no subnet in availability zone 'z2'"),
        "{e}"
    );
}

#[test]
fn static_ips_must_come_from_the_subnet_static_range() {
    for (ip, needle) in [
        ("10.0.16.5", "reserved range"),
        ("10.0.16.20", "not in the static range"),
        ("10.9.9.9", "out of network 'default' range"),
    ] {
        let src = patch(BASE, "  instances: 2\n", "  instances: 1\n");
        let src = patch(
            &src,
            "  - name: default\n",
            &format!("  - name: default\n    static_ips: [{ip}]\n"),
        );
        let errs = cross_errs(&src);
        let e = err_at(&errs, "instance_groups[name=kv].networks[0].static_ips");
        assert!(e.message.contains(needle), "{ip}: {e}");
        assert_eq!(e.line, Some(line_of(&src, "static_ips:")));
    }
    let src = patch(BASE, "  instances: 2\n", "  instances: 1\n");
    let src = patch(
        &src,
        "  - name: default\n",
        "  - name: dyn\n    static_ips: [10.0.16.100]\n",
    );
    let errs = cross_errs(&src);
    let e = err_at(&errs, "instance_groups[name=kv].networks[0].static_ips");
    assert!(
        e.message
            .contains("dynamic network 'dyn' cannot specify static IPs"),
        "{e}"
    );
}
