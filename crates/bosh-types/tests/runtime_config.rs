//! Runtime config: releases, addons with placement rules, tags, variables.

use bosh_types::manifest::Lifecycle;
use bosh_types::runtime_config::{PlacementTarget, RuntimeConfig};
use bosh_types::validate::{ValidationError, ValidationErrors};

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

fn err_at<'a>(errs: &'a ValidationErrors, path: &str) -> &'a ValidationError {
    errs.at(path)
        .unwrap_or_else(|| panic!("no error at {path}; got:\n{errs}"))
}

fn target<'a>(jobs: &'a [(String, String)], azs: &'a [String]) -> PlacementTarget<'a> {
    PlacementTarget {
        deployment: "kv-prod",
        teams: &[],
        instance_group: "kv",
        lifecycle: Lifecycle::Service,
        jobs,
        stemcell_os: "ubuntu-jammy",
        networks: &[],
        azs,
    }
}

#[test]
fn realistic_runtime_config_parses() {
    let rc = RuntimeConfig::parse(&data("runtime-config.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rc.releases.len(), 2);
    assert_eq!(rc.releases[1].version.as_deref(), Some("6"));
    assert_eq!(rc.addons.len(), 2);
    let dns = &rc.addons[0];
    assert_eq!(dns.include.as_ref().unwrap().stemcell.len(), 2);
    assert_eq!(dns.exclude.as_ref().unwrap().deployments, ["bosh-lite-cf"]);
    assert_eq!(rc.tags.get("managed-by").map(String::as_str), Some("bosh"));
    assert_eq!(rc.variables[0].name, "/dns_api_server_tls");
}

#[test]
fn placement_rules_and_within_kinds_or_across_kinds() {
    let rc = RuntimeConfig::parse(&data("runtime-config.yml")).unwrap();
    let (dns, monitoring) = (&rc.addons[0], &rc.addons[1]);
    let kv_jobs = vec![("kv-server".to_owned(), "kv".to_owned())];
    let other_jobs = vec![("kv-smoke".to_owned(), "kv".to_owned())];
    let z1 = vec!["z1".to_owned()];
    let z3 = vec!["z3".to_owned()];

    let t = target(&kv_jobs, &z1);
    assert!(dns.applies_to(&t));
    assert!(monitoring.applies_to(&t));
    // Excluded deployment.
    assert!(!dns.applies_to(&PlacementTarget {
        deployment: "bosh-lite-cf",
        ..t
    }));
    // Any listed stemcell os matches; others don't.
    assert!(dns.applies_to(&PlacementTarget {
        stemcell_os: "ubuntu-noble",
        ..t
    }));
    assert!(!dns.applies_to(&PlacementTarget {
        stemcell_os: "windows2019",
        ..t
    }));
    // Every include kind must match: the job, the AZ and the lifecycle.
    assert!(!monitoring.applies_to(&target(&other_jobs, &z1)));
    assert!(!monitoring.applies_to(&target(&kv_jobs, &z3)));
    assert!(!monitoring.applies_to(&PlacementTarget {
        lifecycle: Lifecycle::Errand,
        ..t
    }));
    // Exclude needs all its kinds: the group name alone does not exclude (teams differ).
    assert!(monitoring.applies_to(&PlacementTarget {
        instance_group: "kv-canary",
        ..t
    }));
    let sandbox = vec!["sandbox".to_owned()];
    assert!(!monitoring.applies_to(&PlacementTarget {
        instance_group: "kv-canary",
        teams: &sandbox,
        ..t
    }));
}

#[test]
fn latest_versions_are_refused() {
    let src = "releases:\n- name: dns\n  version: latest\n- name: other\n  version: 3.latest\n";
    let errs = RuntimeConfig::parse(src).unwrap_err();
    let e = err_at(&errs, "releases[name=dns].version");
    assert!(e.message.contains("with version as 'latest'"), "{e}");
    assert_eq!(e.line, Some(3));
    err_at(&errs, "releases[name=other].version");
}

#[test]
fn addon_jobs_need_a_listed_release() {
    let src = "releases:\n- {name: dns, version: 1}\naddons:\n- name: a\n  jobs:\n  - name: j\n    release: missing\n";
    let errs = RuntimeConfig::parse(src).unwrap_err();
    let e = err_at(&errs, "addons[name=a].jobs[name=j].release");
    assert_eq!(e.line, Some(line_of(src, "release: missing")));
}

#[test]
fn filters_must_be_complete() {
    let src = "releases: [{name: r, version: 1}]\naddons:\n- name: a\n  jobs: [{name: j, release: r}]\n  include:\n    jobs:\n    - name: kv-server\n    stemcell:\n    - version: 1\n  exclude:\n    lifecycle: sometimes\n";
    let errs = RuntimeConfig::parse(src).unwrap_err();
    let e = err_at(&errs, "addons[name=a].include.jobs[0]");
    assert!(e.message.contains("both name and release"), "{e}");
    assert_eq!(e.line, Some(line_of(src, "- name: kv-server")));
    err_at(&errs, "addons[name=a].include.stemcell[0]");
    err_at(&errs, "addons[name=a].exclude.lifecycle");
}

#[test]
fn merged_configs_allow_tags_once() {
    let a = RuntimeConfig::parse("tags: {a: b}\nreleases: [{name: r, version: 1}]\n").unwrap();
    let b = RuntimeConfig::parse("releases: [{name: s, version: 2}]\n").unwrap();
    let merged = RuntimeConfig::merge(vec![a.clone(), b]).unwrap();
    assert_eq!(merged.releases.len(), 2);
    assert_eq!(merged.tags.len(), 1);
    let errs = RuntimeConfig::merge(vec![a.clone(), a]).unwrap_err();
    err_at(&errs, "tags");
}
