//! Opening stemcell tarballs (formats.md §8): `stemcell.MF` and an `image` regular file at
//! the root, with or without a `./` prefix. Links and other hostile entries are refused.

use crate::archive::{self, ArchiveError, EntryKind, ExtractLimits};
use bosh_types::stemcell::{StemcellInfo, StemcellManifest, StemcellManifestError};
use std::path::{Path, PathBuf};

const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Why a stemcell tarball was refused.
#[derive(Debug, thiserror::Error)]
pub enum StemcellTarballError {
    #[error("reading stemcell tarball {tarball}")]
    Archive {
        tarball: PathBuf,
        #[source]
        source: ArchiveError,
    },
    #[error("stemcell tarball {tarball} has no stemcell.MF")]
    MissingManifest { tarball: PathBuf },
    #[error("stemcell.MF in {tarball} is invalid")]
    Manifest {
        tarball: PathBuf,
        #[source]
        source: StemcellManifestError,
    },
    #[error("stemcell image not found in {tarball} (expected a regular file 'image')")]
    MissingImage { tarball: PathBuf },
}

/// What a stemcell tarball holds, read without extracting the image.
#[derive(Debug, Clone)]
pub struct StemcellTarball {
    pub manifest: StemcellManifest,
    /// The manifest with its required fields checked.
    pub info: StemcellInfo,
    /// `stemcell.MF` as it was in the tarball.
    pub manifest_text: String,
    pub image_size: u64,
}

/// Reads only `stemcell.MF` (what `inspect-local-stemcell` shows), without requiring its
/// fields or the image. Hostile entries are still refused.
pub fn read_stemcell_manifest(tarball: &Path) -> Result<StemcellManifest, StemcellTarballError> {
    let (text, _) = scan_stemcell(tarball, &ExtractLimits::default())?;
    let Some(text) = text else {
        return Err(StemcellTarballError::MissingManifest {
            tarball: tarball.to_path_buf(),
        });
    };
    StemcellManifest::parse(&text).map_err(|source| StemcellTarballError::Manifest {
        tarball: tarball.to_path_buf(),
        source,
    })
}

/// Reads `stemcell.MF` and checks for the image, streaming the tarball once.
pub fn read_stemcell_tarball(tarball: &Path) -> Result<StemcellTarball, StemcellTarballError> {
    read_stemcell_tarball_with(tarball, &ExtractLimits::default())
}

/// [`read_stemcell_tarball`] with explicit limits.
pub fn read_stemcell_tarball_with(
    tarball: &Path,
    limits: &ExtractLimits,
) -> Result<StemcellTarball, StemcellTarballError> {
    let (manifest_text, image_size) = scan_stemcell(tarball, limits)?;
    let Some(manifest_text) = manifest_text else {
        return Err(StemcellTarballError::MissingManifest {
            tarball: tarball.to_path_buf(),
        });
    };
    let manifest_err = |source| StemcellTarballError::Manifest {
        tarball: tarball.to_path_buf(),
        source,
    };
    let manifest = StemcellManifest::parse(&manifest_text).map_err(manifest_err)?;
    // The missing image is the more telling problem when the manifest is also incomplete.
    let Some(image_size) = image_size else {
        return Err(StemcellTarballError::MissingImage {
            tarball: tarball.to_path_buf(),
        });
    };
    let info = manifest.validate().map_err(manifest_err)?;
    Ok(StemcellTarball {
        manifest,
        info,
        manifest_text,
        image_size,
    })
}

/// Streams the tarball once: the manifest text and the image size, if present.
fn scan_stemcell(
    tarball: &Path,
    limits: &ExtractLimits,
) -> Result<(Option<String>, Option<u64>), StemcellTarballError> {
    let archive_err = |source| StemcellTarballError::Archive {
        tarball: tarball.to_path_buf(),
        source,
    };
    let reader = archive::open(tarball).map_err(archive_err)?;
    let mut manifest_bytes: Option<Vec<u8>> = None;
    let mut image_size: Option<u64> = None;
    archive::scan(reader, limits, |info, content| {
        if info.kind != EntryKind::File {
            return Ok(());
        }
        match info.path.as_str() {
            "stemcell.MF" => {
                if info.size > MAX_MANIFEST_BYTES {
                    return Err(ArchiveError::TooLarge {
                        entry: info.path.clone(),
                        limit: MAX_MANIFEST_BYTES,
                    });
                }
                let mut buf = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(content, MAX_MANIFEST_BYTES),
                    &mut buf,
                )
                .map_err(|source| ArchiveError::EntryRead {
                    entry: info.path.clone(),
                    source,
                })?;
                manifest_bytes = Some(buf);
            }
            "image" => image_size = Some(info.size),
            _ => {}
        }
        Ok(())
    })
    .map_err(archive_err)?;
    Ok((
        manifest_bytes.map(|b| String::from_utf8_lossy(&b).into_owned()),
        image_size,
    ))
}

/// Extracts a stemcell tarball (with the same checks) into `dest` and returns the path of
/// its image, for handing to a CPI's `create_stemcell`.
pub fn extract_stemcell_tarball(
    tarball: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<(StemcellTarball, PathBuf), StemcellTarballError> {
    let read = read_stemcell_tarball_with(tarball, limits)?;
    archive::extract(tarball, dest, limits).map_err(|source| StemcellTarballError::Archive {
        tarball: tarball.to_path_buf(),
        source,
    })?;
    Ok((read, dest.join("image")))
}
