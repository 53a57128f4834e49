//! Golden plans: each `tests/golden/<case>/` holds a `manifest.yml` (optionally a
//! `redeploy.yml` planned over the first deploy's result, `runtime-config.yml`,
//! `options.yml`, `other-reservations.yml`) and `expected.json`, the last plan.
//! Regenerate with `BOSH_UPDATE_GOLDEN=1 cargo test -p bosh-planner --test golden`.

mod common;

use bosh_planner::{IpReservation, PlanOptions, SequentialIds};
use common::*;
use std::path::Path;

fn opt_read(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok()
}

fn run_case(dir: &Path) -> String {
    let mut input = input(&opt_read(dir, "manifest.yml").expect("manifest.yml"));
    if let Some(rc) = opt_read(dir, "runtime-config.yml") {
        input.runtime_configs = vec![runtime_config(&rc)];
    }
    if let Some(o) = opt_read(dir, "other-reservations.yml") {
        let v = bosh_yaml::parse(&o).unwrap();
        input.other_reservations = bosh_yaml::from_value::<Vec<IpReservation>>(&v).unwrap();
    }
    let options: PlanOptions = match opt_read(dir, "options.yml") {
        Some(o) => bosh_yaml::from_value(&bosh_yaml::parse(&o).unwrap()).unwrap(),
        None => PlanOptions::default(),
    };
    let mut ids = SequentialIds::default();
    let mut cids = Cids::new();
    let result = match opt_read(dir, "redeploy.yml") {
        None => {
            input.options = options;
            deploy(&input, &mut ids, &mut cids).map(|(p, _)| p)
        }
        Some(second) => {
            let (_, after) = deploy(&input, &mut ids, &mut cids)
                .unwrap_or_else(|e| panic!("{}: first deploy: {e}", dir.display()));
            input.manifest = manifest(&second);
            input.current = after;
            input.options = options;
            deploy(&input, &mut ids, &mut cids).map(|(p, _)| p)
        }
    };
    match result {
        Ok(p) => serde_json::to_string_pretty(&p).unwrap() + "\n",
        Err(e) => format!("error:\n{e}\n"),
    }
}

#[test]
fn golden_plans() {
    let update = std::env::var_os("BOSH_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "common")
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failed = Vec::new();
    for dir in &cases {
        let got = run_case(dir);
        let path = dir.join("expected.json");
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            eprintln!("--- {}", dir.display());
            eprintln!("{}", pretty_assertions::StrComparison::new(&want, &got));
            failed.push(dir.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "golden plans differ: {failed:?} (BOSH_UPDATE_GOLDEN=1 regenerates)"
    );
}
