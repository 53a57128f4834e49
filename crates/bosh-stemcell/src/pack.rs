//! Writing a stemcell tarball: `stemcell.MF` then `image`, gzipped.

use crate::{StemcellBuildError, io_err};
use bosh_types::stemcell::StemcellManifest;
use sha1::{Digest, Sha1};
use std::io::{Read, Write};
use std::path::Path;

/// SHA-1 of a file, streamed.
pub(crate) fn sha1_file(path: &Path) -> Result<String, StemcellBuildError> {
    let mut file = std::fs::File::open(path).map_err(io_err("opening", path))?;
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn manifest_text(manifest: &StemcellManifest) -> String {
    bosh_yaml::to_string(&bosh_yaml::to_value(manifest))
}

/// Writes `dest` (via a temporary file beside it, renamed at the end so a failed build never
/// leaves a half tarball). The image is already compressed, so the outer gzip only stores.
pub(crate) fn write_stemcell_tarball(
    dest: &Path,
    manifest: &StemcellManifest,
    image: &Path,
) -> Result<(), StemcellBuildError> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err("creating a file in", dir))?;
    {
        let gz = flate2::write::GzEncoder::new(tmp.as_file(), flate2::Compression::none());
        let mut tar = tar::Builder::new(gz);
        let text = manifest_text(manifest);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(text.len() as u64);
        h.set_mtime(now());
        tar.append_data(&mut h, "stemcell.MF", text.as_bytes())
            .map_err(io_err("writing", dest))?;
        let mut file = std::fs::File::open(image).map_err(io_err("opening", image))?;
        let size = file.metadata().map_err(io_err("reading", image))?.len();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(now());
        tar.append_data(&mut h, "image", &mut file)
            .map_err(io_err("writing", dest))?;
        tar.into_inner()
            .and_then(|gz| gz.finish())
            .and_then(|mut f| f.flush())
            .map_err(io_err("writing", dest))?;
    }
    // Temporary files are 0600; a stemcell is an ordinary shareable file.
    let mut perms = perms_of(tmp.as_file(), dest)?;
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    tmp.as_file()
        .set_permissions(perms)
        .map_err(io_err("writing", dest))?;
    tmp.persist(dest).map_err(|e| StemcellBuildError::Io {
        doing: "writing",
        path: dest.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn perms_of(file: &std::fs::File, dest: &Path) -> Result<std::fs::Permissions, StemcellBuildError> {
    Ok(file
        .metadata()
        .map_err(io_err("writing", dest))?
        .permissions())
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
