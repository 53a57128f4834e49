//! Stemcells are images. A full stemcell's `image` is a (gzipped) rootfs tarball streamed
//! into `docker import` as `<repo>:img-<uuid>`. A light stemcell names an image in
//! `cloud_properties.image_reference`; it is used when present locally (else pulled) and
//! tagged `<repo>:img-<uuid>`, so deleting the stemcell removes only our tag.

use super::{DockerCpi, cloud_error, is_not_found};
use crate::error::CpiError;
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions, TagImageOptions};
use bosh_cpi_protocol::methods::CreateStemcellArgs;
use bosh_cpi_protocol::{CpiErrorKind, Method};
use bosh_types::ids::StemcellCid;
use futures::TryStreamExt;
use serde_json::Value;
use std::path::{Path, PathBuf};

const M: Method = Method::CreateStemcell;

fn import_error(image_path: &str, message: impl std::fmt::Display) -> CpiError {
    CpiError::cloud(
        CpiErrorKind::CloudError,
        M,
        format!("Importing stemcell from '{image_path}': {message}"),
    )
}

pub(super) async fn create(
    cpi: &DockerCpi,
    args: CreateStemcellArgs,
) -> Result<StemcellCid, CpiError> {
    let tag = cpi.new_name("img");
    let repo = cpi.config().stemcell_repo.clone();
    let cid = format!("{repo}:{tag}");
    match args.cloud_properties.get("image_reference") {
        Some(Value::String(reference)) if !reference.is_empty() => {
            import_light(cpi, &args.image_path, reference, &repo, &tag).await?;
        }
        _ => import_full(cpi, &args.image_path, &repo, &tag).await?,
    }
    tracing::info!(%cid, "stemcell created");
    StemcellCid::new(cid).map_err(|e| import_error(&args.image_path, e))
}

/// The `image` file: the path itself, or `image` inside it when it is a directory.
fn image_file(image_path: &str) -> PathBuf {
    let p = Path::new(image_path);
    if p.is_dir() {
        p.join("image")
    } else {
        p.to_path_buf()
    }
}

async fn import_full(
    cpi: &DockerCpi,
    image_path: &str,
    repo: &str,
    tag: &str,
) -> Result<(), CpiError> {
    let path = image_file(image_path);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| import_error(image_path, format!("{}: {e}", path.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Err(import_error(
            image_path,
            "the image is empty and cloud_properties has no 'image_reference' (light stemcell)",
        ));
    }
    let docker = cpi.docker(M).await?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
    let options = CreateImageOptions {
        from_src: Some("-".to_owned()),
        repo: Some(repo.to_owned()),
        tag: Some(tag.to_owned()),
        ..Default::default()
    };
    docker
        .create_image(Some(options), Some(body), None)
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(|e| import_error(image_path, format!("docker import: {e}")))?;
    // The import stream can end without an error yet leave no image (e.g. a bad tarball).
    docker
        .inspect_image(&format!("{repo}:{tag}"))
        .await
        .map_err(|e| import_error(image_path, format!("inspecting imported image: {e}")))?;
    Ok(())
}

async fn import_light(
    cpi: &DockerCpi,
    image_path: &str,
    reference: &str,
    repo: &str,
    tag: &str,
) -> Result<(), CpiError> {
    let docker = cpi.docker(M).await?;
    match docker.inspect_image(reference).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {
            tracing::info!(%reference, "pulling light stemcell image");
            let options = CreateImageOptions {
                from_image: Some(reference.to_owned()),
                ..Default::default()
            };
            docker
                .create_image(Some(options), None, None)
                .try_for_each(|_| async { Ok(()) })
                .await
                .map_err(|e| import_error(image_path, format!("pulling '{reference}': {e}")))?;
        }
        Err(e) => return Err(cloud_error(M, &format!("Inspecting '{reference}'"), e)),
    }
    docker
        .tag_image(
            reference,
            Some(TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await
        .map_err(|e| import_error(image_path, format!("tagging '{reference}': {e}")))
}

pub(super) async fn delete(cpi: &DockerCpi, cid: &StemcellCid) -> Result<(), CpiError> {
    let m = Method::DeleteStemcell;
    let docker = cpi.docker(m).await?;
    let options = RemoveImageOptions {
        force: true,
        noprune: false,
    };
    match docker.remove_image(cid.as_str(), Some(options), None).await {
        Ok(_) => Ok(()),
        // Already gone: deleting is idempotent, as the real CPI's forced removal.
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(cloud_error(m, &format!("Deleting image '{cid}'"), e)),
    }
}
