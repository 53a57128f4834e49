//! Cloud config: a realistic multi-AZ config parses; each subnet, name and compilation rule
//! reports the exact path and line.

use bosh_types::cloud_config::{Cidr, CloudConfig, IpRange, Network};
use bosh_types::cpi_config::CpiConfig;
use bosh_types::validate::{ValidationError, ValidationErrors};
use std::net::IpAddr;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
        + 1
}

fn patch(src: &str, from: &str, to: &str) -> String {
    assert!(src.contains(from), "patch target {from:?} not found");
    src.replacen(from, to, 1)
}

fn err_at<'a>(errs: &'a ValidationErrors, path: &str) -> &'a ValidationError {
    errs.at(path)
        .unwrap_or_else(|| panic!("no error at {path}; got:\n{errs}"))
}

fn parse_err(src: &str) -> ValidationErrors {
    CloudConfig::parse(src).expect_err("expected errors")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const BASE: &str = "\
azs:
- name: z1
- name: z2
networks:
- name: default
  type: manual
  subnets:
  - range: 10.0.0.0/24
    gateway: 10.0.0.1
    reserved: [10.0.0.2 - 10.0.0.9]
    static: [10.0.0.100 - 10.0.0.150]
    az: z1
  - range: 10.0.1.0/24
    gateway: 10.0.1.1
    az: z2
vm_types:
- name: small
vm_extensions:
- name: lb
disk_types:
- name: default
  disk_size: 1024
compilation:
  workers: 2
  network: default
  az: z1
  vm_type: small
";

#[test]
fn realistic_cloud_config_parses() {
    let cc = CloudConfig::parse(&data("cloud-config.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cc.azs.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["z1", "z2", "z3"]
    );
    assert_eq!(cc.azs[2].cpi.as_deref(), Some("aws-west"));
    assert_eq!(cc.networks.len(), 4);
    let Some(Network::Manual(default)) = cc.network("default") else {
        panic!("manual network")
    };
    assert_eq!(default.subnets.len(), 3);
    let s0 = &default.subnets[0];
    assert_eq!(s0.range, Some("10.0.16.0/20".parse::<Cidr>().unwrap()));
    assert_eq!(s0.dns, [ip("10.0.0.2"), ip("8.8.8.8")]);
    // `az: z2` and `azs: [z1]` both become lists.
    assert_eq!(default.subnets[1].azs, ["z2"]);
    // A single-string static list is accepted.
    assert_eq!(
        default.subnets[2].static_ips,
        ["10.0.49.0 - 10.0.49.100".parse::<IpRange>().unwrap()]
    );
    assert!(s0.is_restricted(ip("10.0.16.0")) && s0.is_restricted(ip("10.0.31.255")));
    assert!(s0.is_restricted(ip("10.0.16.1")) && s0.is_restricted(ip("10.0.16.5")));
    assert!(!s0.is_restricted(ip("10.0.16.10")));
    assert!(s0.is_static(ip("10.0.17.50")) && !s0.is_static(ip("10.0.18.0")));
    assert!(matches!(cc.network("public"), Some(Network::Vip(_))));
    let dhcp = cc.network("dhcp").unwrap();
    assert!(dhcp.serves_az(Some("z2")) && !dhcp.serves_az(Some("z3")));
    assert_eq!(cc.disk_types[1].disk_size, 51200);
    let comp = cc.compilation.as_ref().unwrap();
    assert_eq!(
        (comp.workers, comp.az.as_deref(), comp.vm_type.as_deref()),
        (4, Some("z1"), Some("large"))
    );
    assert!(comp.reuse_compilation_vms);
    cc.validate_against_cpis(&CpiConfig::parse(&data("cpi-config.yml")).unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn base_is_valid() {
    CloudConfig::parse(BASE).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn range_needs_at_least_two_ips() {
    let src = patch(BASE, "10.0.0.0/24", "10.0.0.0/32");
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[0].range");
    assert!(e.message.contains("should include at least 2 IPs"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "10.0.0.0/32")));

    let errs = parse_err(&patch(BASE, "10.0.0.0/24", "10.0.0.0/40"));
    err_at(&errs, "networks[name=default].subnets[0].range");
}

#[test]
fn gateway_rules() {
    for (gw, why) in [
        ("10.0.5.1", "must be inside the range"),
        ("10.0.0.0", "can't be the network id"),
        ("10.0.0.255", "can't be the broadcast IP"),
        ("10.0.0.1/30", "invalid IP"),
    ] {
        let src = patch(BASE, "gateway: 10.0.0.1\n", &format!("gateway: {gw}\n"));
        let errs = parse_err(&src);
        let e = err_at(&errs, "networks[name=default].subnets[0].gateway");
        assert!(e.message.contains(why), "{gw}: {e}");
        assert_eq!(e.line, Some(line_of(&src, &format!("gateway: {gw}"))));
    }
    let src = patch(BASE, "    gateway: 10.0.0.1\n", "");
    let errs = parse_err(&src);
    assert_eq!(
        err_at(&errs, "networks[name=default].subnets[0].gateway").message,
        "is required"
    );
}

#[test]
fn reserved_and_static_must_be_inside_the_range() {
    let src = patch(
        BASE,
        "reserved: [10.0.0.2 - 10.0.0.9]",
        "reserved: [10.0.0.2 - 10.0.0.9, 10.0.7.1]",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[0].reserved[1]");
    assert!(
        e.message
            .contains("reserved IP '10.0.7.1' is out of network 'default' range"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&src, "reserved:")));

    let src = patch(
        BASE,
        "static: [10.0.0.100 - 10.0.0.150]",
        "static: [10.0.5.1 - 10.0.5.3]",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[0].static[0]");
    assert!(e.message.contains("out of network 'default' range"), "{e}");
}

#[test]
fn static_must_not_be_reserved() {
    for stat in ["10.0.0.5", "10.0.0.1", "10.0.0.255", "10.0.0.0 - 10.0.0.20"] {
        let src = patch(
            BASE,
            "static: [10.0.0.100 - 10.0.0.150]",
            &format!("static: [{stat}]"),
        );
        let errs = parse_err(&src);
        let e = err_at(&errs, "networks[name=default].subnets[0].static[0]");
        assert!(e.message.contains("reserved range"), "{stat}: {e}");
        assert_eq!(e.line, Some(line_of(&src, "static:")));
    }
}

#[test]
fn subnets_must_not_overlap() {
    let src = patch(
        BASE,
        "range: 10.0.1.0/24\n    gateway: 10.0.1.1",
        "range: 10.0.0.128/25\n    gateway: 10.0.0.129",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[1].range");
    assert!(e.message.contains("overlapping subnets"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "10.0.0.128/25")));
}

#[test]
fn subnets_all_have_azs_or_none() {
    let src = patch(BASE, "    az: z2\n", "");
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets");
    assert!(
        e.message
            .contains("must all either specify availability zone or not"),
        "{e}"
    );
    assert_eq!(e.line, Some(line_of(&src, "- range: 10.0.0.0/24")));
}

#[test]
fn subnet_azs_must_be_declared_and_not_doubled() {
    let src = patch(BASE, "    az: z2\n", "    az: z7\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[1].az");
    assert!(e.message.contains("unknown availability zone 'z7'"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "az: z7")));

    let src = patch(BASE, "    az: z2\n", "    az: z2\n    azs: [z1]\n");
    let errs = parse_err(&src);
    err_at(&errs, "networks[name=default].subnets[1]");
}

#[test]
fn names_are_unique() {
    let src = patch(BASE, "- name: z2\n", "- name: z1\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "azs[1].name");
    assert!(e.message.contains("duplicate az name 'z1'"), "{e}");
    assert_eq!(e.line, Some(3));

    let src = patch(
        BASE,
        "vm_types:\n- name: small\n",
        "vm_types:\n- name: small\n- name: small\n",
    );
    let errs = parse_err(&src);
    err_at(&errs, "vm_types[1].name");

    let src = patch(
        BASE,
        "vm_types:\n",
        "- name: Default\n  type: dynamic\nvm_types:\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=Default].name");
    assert!(e.message.contains("canonical name already taken"), "{e}");
}

#[test]
fn network_type_and_presence() {
    let src = patch(BASE, "  type: manual\n", "  type: overlay\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].type");
    assert!(e.message.contains("invalid network type 'overlay'"), "{e}");

    let src = "networks: []\ncompilation: {workers: 1, network: x}\n";
    let errs = parse_err(src);
    assert!(err_at(&errs, "networks").message.contains("no networks"));
}

#[test]
fn prefixes_must_agree_and_fit_the_range() {
    let src = patch(BASE, "    az: z1\n", "    az: z1\n    prefix: 28\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[1]");
    assert!(e.message.contains("different prefixes"), "{e}");

    let src = patch(BASE, "    az: z1\n", "    az: z1\n    prefix: 16\n");
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=default].subnets[0].prefix");
    assert!(e.message.contains("larger than range prefix '24'"), "{e}");
}

#[test]
fn disk_types_need_a_non_negative_size() {
    let src = patch(BASE, "disk_size: 1024", "disk_size: -5");
    let errs = parse_err(&src);
    let e = err_at(&errs, "disk_types[name=default].disk_size");
    assert_eq!(e.line, Some(line_of(&src, "disk_size: -5")));
}

#[test]
fn compilation_rules() {
    let src = patch(
        BASE,
        "compilation:\n  workers: 2\n  network: default\n  az: z1\n  vm_type: small\n",
        "",
    );
    let errs = parse_err(&src);
    assert_eq!(err_at(&errs, "compilation").message, "is required");

    let src = patch(BASE, "workers: 2", "workers: 0");
    let errs = parse_err(&src);
    let e = err_at(&errs, "compilation.workers");
    assert_eq!(e.line, Some(line_of(&src, "workers: 0")));

    let src = patch(BASE, "  network: default\n  az", "  network: nope\n  az");
    let errs = parse_err(&src);
    let e = err_at(&errs, "compilation.network");
    assert!(e.message.contains("unknown network 'nope'"), "{e}");
    assert_eq!(e.line, Some(line_of(&src, "network: nope")));

    let src = patch(BASE, "  az: z1\n  vm_type", "  vm_type");
    let errs = parse_err(&src);
    let e = err_at(&errs, "compilation.network");
    assert!(e.message.contains("has no matching subnet"), "{e}");

    let src = patch(BASE, "  az: z1\n  vm_type", "  az: z3\n  vm_type");
    let errs = parse_err(&src);
    assert!(
        err_at(&errs, "compilation.az")
            .message
            .contains("unknown az 'z3'")
    );

    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  vm_type: small\n  cloud_properties: {a: 1}\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "compilation");
    assert!(e.message.contains("only specify one of"), "{e}");
    // A block map's line is that of its first entry.
    assert_eq!(e.line, Some(line_of(&src, "workers: 2")));

    let src = patch(
        BASE,
        "  vm_type: small\n",
        "  cloud_properties: {a: 1}\n  vm_extensions: [lb]\n",
    );
    let errs = parse_err(&src);
    err_at(&errs, "compilation.vm_extensions");

    let src = patch(BASE, "  vm_type: small\n", "  vm_type: tiny\n");
    let errs = parse_err(&src);
    err_at(&errs, "compilation.vm_type");
}

#[test]
fn fragments_merge_like_named_configs() {
    let (first, second) = BASE.split_at(BASE.find("vm_types:").unwrap());
    let a = CloudConfig::parse_fragment(first).unwrap_or_else(|e| panic!("{e}"));
    let b = CloudConfig::parse_fragment(&format!("networks: []\n{second}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let merged = CloudConfig::merge(vec![a.clone(), b.clone()]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(merged.vm_types[0].name, "small");
    assert_eq!(merged.networks.len(), 1);

    let errs = CloudConfig::merge(vec![a.clone(), b.clone(), b]).unwrap_err();
    assert!(
        err_at(&errs, "compilation").message.contains("only one"),
        "{errs}"
    );
    let errs = CloudConfig::merge(vec![a]).unwrap_err();
    assert_eq!(err_at(&errs, "compilation").message, "is required");
}

#[test]
fn az_cpis_must_exist() {
    let src = patch(BASE, "- name: z2\n", "- name: z2\n  cpi: openstack\n");
    let cc = CloudConfig::parse(&src).unwrap();
    let cpis = CpiConfig::parse(&data("cpi-config.yml")).unwrap();
    let errs = cc.validate_against_cpis(&cpis).unwrap_err();
    let e = err_at(&errs, "azs[name=z2].cpi");
    assert_eq!(e.line, Some(line_of(&src, "cpi: openstack")));
}

#[test]
fn dynamic_networks_refuse_top_level_keys_with_subnets() {
    let src = patch(
        BASE,
        "vm_types:\n",
        "- name: dyn\n  type: dynamic\n  dns: [8.8.8.8]\n  subnets: [{az: z1}]\nvm_types:\n",
    );
    let errs = parse_err(&src);
    let e = err_at(&errs, "networks[name=dyn].dns");
    assert_eq!(e.line, Some(line_of(&src, "dns: [8.8.8.8]")));
}
