//! CPI config: the list of CPIs, unique names, required type.

use bosh_types::cpi_config::CpiConfig;
use bosh_types::validate::{ValidationError, ValidationErrors};

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn err_at<'a>(errs: &'a ValidationErrors, path: &str) -> &'a ValidationError {
    errs.at(path)
        .unwrap_or_else(|| panic!("no error at {path}; got:\n{errs}"))
}

#[test]
fn realistic_cpi_config_parses() {
    let cfg = CpiConfig::parse(&data("cpi-config.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.cpis.len(), 2);
    let east = cfg.cpi("aws-east").unwrap();
    assert_eq!(east.executable(), "aws_cpi");
    assert_eq!(
        east.properties
            .get("access_key_id")
            .and_then(|v| v.as_str()),
        Some("((aws_east_access_key))")
    );
    let west = cfg.cpi("aws-west").unwrap();
    assert_eq!(west.executable(), "/var/vcap/jobs/aws_cpi/bin/cpi");
    assert_eq!(west.migrated_from, ["aws-west-legacy"]);
}

#[test]
fn names_are_unique_and_type_required() {
    let src = "cpis:\n- name: a\n  type: aws\n- name: a\n  type: gcp\n- name: b\n";
    let errs = CpiConfig::parse(src).unwrap_err();
    let e = err_at(&errs, "cpis[1].name");
    assert!(e.message.contains("duplicate cpi name 'a'"), "{e}");
    assert_eq!(e.line, Some(4));
    let e = err_at(&errs, "cpis[name=b].type");
    assert_eq!(e.line, Some(6));
}

#[test]
fn cpis_list_is_required() {
    let errs = CpiConfig::parse("cpi: []\n").unwrap_err();
    assert_eq!(err_at(&errs, "cpis").message, "is required");
    let errs = CpiConfig::parse("cpis: {a: 1}\n").unwrap_err();
    assert!(err_at(&errs, "cpis").message.contains("expected an array"));
}

#[test]
fn merged_configs_keep_names_unique() {
    let a = CpiConfig::parse("cpis: [{name: a, type: aws}]\n").unwrap();
    let b = CpiConfig::parse("cpis: [{name: b, type: gcp}]\n").unwrap();
    assert_eq!(CpiConfig::merge(vec![a.clone(), b]).unwrap().cpis.len(), 2);
    assert!(CpiConfig::merge(vec![a.clone(), a]).is_err());
}
