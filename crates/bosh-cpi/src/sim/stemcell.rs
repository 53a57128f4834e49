//! Stemcells are directories recording where the image was and its cloud properties; the
//! image itself is not needed because VMs are host processes. Light stemcells work too.

use super::store::{io_error, write_json};
use super::{SimCpi, check_cid, new_cid};
use crate::error::CpiError;
use bosh_cpi_protocol::methods::{CloudProperties, CreateStemcellArgs};
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::StemcellCid;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Serialize, Deserialize)]
struct StemcellRecord {
    image_path: String,
    cloud_properties: CloudProperties,
}

pub(super) fn create(sim: &SimCpi, args: CreateStemcellArgs) -> Result<StemcellCid, CpiError> {
    let m = Method::CreateStemcell;
    if !Path::new(&args.image_path).exists() {
        return Err(CpiError::cloud(
            CpiErrorKind::CloudError,
            m,
            format!(
                "Importing stemcell from '{}': no such file or directory",
                args.image_path
            ),
        ));
    }
    let cid = StemcellCid::new(new_cid("sc")).expect("generated cids are not empty");
    let dir = sim.stemcell_dir(&cid);
    std::fs::create_dir_all(&dir).map_err(|e| io_error(m, "Creating", &dir, e))?;
    let record = StemcellRecord {
        image_path: args.image_path,
        cloud_properties: args.cloud_properties,
    };
    write_json(m, &dir.join("stemcell.json"), &record)?;
    tracing::info!(%cid, "stemcell created");
    Ok(cid)
}

pub(super) fn delete(sim: &SimCpi, cid: &StemcellCid) -> Result<(), CpiError> {
    let m = Method::DeleteStemcell;
    check_cid(m, cid.as_str())?;
    let dir = sim.stemcell_dir(cid);
    // Deleting a missing stemcell succeeds, as with the docker CPI's forced image removal.
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(m, "Removing", &dir, e)),
        _ => Ok(()),
    }
}

pub(super) fn exists(sim: &SimCpi, cid: &StemcellCid) -> bool {
    sim.stemcell_dir(cid).join("stemcell.json").is_file()
}
