//! The sim stemcell: a light stemcell (empty `image`) naming the formats the sim CPI accepts.
//! The sim CPI runs agents as host processes, so there is no image to ship.

use crate::pack::{sha1_file, write_stemcell_tarball};
use crate::{BuiltStemcell, SIM_STEMCELL_FORMATS, StemcellBuildError, io_err};
use bosh_types::stemcell::StemcellManifest;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct SimStemcellOptions {
    pub output: PathBuf,
    pub name: String,
    pub version: String,
    pub operating_system: String,
}

impl SimStemcellOptions {
    pub fn new(output: impl Into<PathBuf>) -> Self {
        Self {
            output: output.into(),
            name: "bosh-sim-debian-bookworm-go_agent".to_owned(),
            version: "1".to_owned(),
            operating_system: "debian-bookworm".to_owned(),
        }
    }
}

pub fn build_sim_stemcell(opts: &SimStemcellOptions) -> Result<BuiltStemcell, StemcellBuildError> {
    let work = tempfile::tempdir().map_err(io_err("creating a temporary dir", "/tmp"))?;
    let image = work.path().join("image");
    std::fs::write(&image, b"").map_err(io_err("writing", &image))?;
    let sha1 = sha1_file(&image)?;
    let manifest = StemcellManifest {
        name: Some(opts.name.clone()),
        version: Some(opts.version.clone()),
        operating_system: Some(opts.operating_system.clone()),
        sha1: Some(sha1.clone()),
        bosh_protocol: None,
        api_version: Some(3),
        stemcell_formats: SIM_STEMCELL_FORMATS.iter().map(|s| s.to_string()).collect(),
        cloud_properties: bosh_yaml::Mapping::new(),
    };
    write_stemcell_tarball(&opts.output, &manifest, &image)?;
    Ok(BuiltStemcell {
        path: opts.output.clone(),
        name: opts.name.clone(),
        version: opts.version.clone(),
        sha1,
        cache_hit: false,
    })
}
