//! The emitter against documents the reference Go CLI printed.

use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `bosh interpolate base.yml` with nothing to substitute is a parse + sorted re-emit.
#[test]
fn interpolate_without_changes_matches_reference() {
    let doc = bosh_yaml::parse(&read("interpolate/base.yml")).unwrap();
    assert_eq!(
        bosh_yaml::to_string_sorted(&doc),
        read("interpolate/case1.expected")
    );
}

/// release.MF is written from a struct, so keys keep their order.
#[test]
fn release_manifests_round_trip_byte_for_byte() {
    for rel in [
        "kv-release-expected/release-1.0.0.MF",
        "kv-release-expected/release-0+dev.1.MF",
        "kv-release/releases/kv/index.yml",
        "kv-release/.final_builds/packages/kvtools/index.yml",
        "kv-release/config/blobs.yml",
        "kv-release/config/final.yml",
    ] {
        let src = read(rel);
        let doc = bosh_yaml::parse(&src).unwrap();
        assert_eq!(bosh_yaml::to_string(&doc), src, "{rel}");
    }
}

/// Every expected interpolate output re-emits to itself after sorting.
#[test]
fn expected_outputs_are_fixed_points_of_sorted_emission() {
    for case in ["case1", "case2", "case3", "case6"] {
        let src = read(&format!("interpolate/{case}.expected"));
        let doc = bosh_yaml::parse(&src).unwrap();
        assert_eq!(bosh_yaml::to_string_sorted(&doc), src, "{case}");
    }
}
