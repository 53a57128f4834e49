//! Shared test fixtures: the common cloud config, releases and stemcells, and a way to
//! "apply" a plan so that a redeploy can be planned over it.
#![allow(dead_code)]

use bosh_planner::{
    DeploymentPlan, ExistingInstance, PlanErrors, PlanInput, PlanOptions, ReleaseInput,
    SequentialIds, StemcellInput, plan,
};
use bosh_types::cloud_config::CloudConfig;
use bosh_types::manifest::Manifest;
use bosh_types::runtime_config::RuntimeConfig;
use std::path::{Path, PathBuf};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn releases() -> Vec<ReleaseInput> {
    let v = bosh_yaml::parse(&read(&golden_dir().join("common/releases.yml"))).unwrap();
    bosh_yaml::from_value(&v).unwrap()
}

pub fn stemcells() -> Vec<StemcellInput> {
    let v = bosh_yaml::parse(&read(&golden_dir().join("common/stemcells.yml"))).unwrap();
    bosh_yaml::from_value(&v).unwrap()
}

pub fn cloud_config() -> CloudConfig {
    CloudConfig::parse(&read(&golden_dir().join("common/cloud-config.yml"))).unwrap()
}

pub fn manifest(src: &str) -> Manifest {
    Manifest::parse(src).unwrap_or_else(|e| panic!("manifest: {e}"))
}

pub fn input(manifest_src: &str) -> PlanInput {
    PlanInput {
        manifest: manifest(manifest_src),
        cloud_config: cloud_config(),
        runtime_configs: Vec::new(),
        releases: releases(),
        stemcells: stemcells(),
        current: Vec::new(),
        other_reservations: Vec::new(),
        options: PlanOptions::default(),
    }
}

/// Cids minted in order, as a CPI would.
pub struct Cids(u32);

impl Cids {
    pub fn new() -> Self {
        Cids(0)
    }
    pub fn mint(&mut self, kind: &str) -> String {
        self.0 += 1;
        format!("{kind}-{}", self.0)
    }
}

/// Plans, then returns the plan and the instances as they are after the update.
pub fn deploy(
    input: &PlanInput,
    ids: &mut SequentialIds,
    cids: &mut Cids,
) -> Result<(DeploymentPlan, Vec<ExistingInstance>), PlanErrors> {
    let p = plan(input, ids)?;
    let after = p.instances_after_apply(|k| cids.mint(k));
    Ok((p, after))
}

pub fn runtime_config(src: &str) -> RuntimeConfig {
    RuntimeConfig::parse(src).unwrap_or_else(|e| panic!("runtime config: {e}"))
}
