//! Hashes of rendered templates and the archive delivered to the agent (formats.md §7.2),
//! computed as the director's `RenderedJobInstance` / `RenderedJobTemplate` do.

use crate::render::{RenderedFile, RenderedInstance, RenderedJob};
use indexmap::IndexMap;
use sha1::{Digest, Sha1};

impl RenderedJob {
    /// `template_hashes[<job>]`: SHA-1 of the monit file then every file's contents in
    /// source-path order.
    pub fn template_hash(&self) -> String {
        let mut digest = Sha1::new();
        digest.update(self.monit.as_bytes());
        for f in files_by_source(&self.files) {
            digest.update(f.content.as_bytes());
        }
        hex::encode(digest.finalize())
    }
}

impl RenderedInstance {
    /// The instance's `configuration_hash`: one SHA-1 over, per job sorted by name, its
    /// monit, its name, then per file sorted by source path the contents and destination.
    pub fn configuration_hash(&self) -> String {
        let mut jobs: Vec<&RenderedJob> = self.jobs.iter().collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut digest = Sha1::new();
        for job in jobs {
            digest.update(job.monit.as_bytes());
            digest.update(job.name.as_bytes());
            for f in files_by_source(&job.files) {
                digest.update(f.content.as_bytes());
                digest.update(f.destination.as_bytes());
            }
        }
        hex::encode(digest.finalize())
    }

    /// Job name → [`RenderedJob::template_hash`], in job order.
    pub fn template_hashes(&self) -> IndexMap<String, String> {
        self.jobs
            .iter()
            .map(|j| (j.name.clone(), j.template_hash()))
            .collect()
    }
}

fn files_by_source(files: &[RenderedFile]) -> Vec<&RenderedFile> {
    let mut sorted: Vec<&RenderedFile> = files.iter().collect();
    // Stable, so equal source paths keep their order as Ruby's sort of distinct keys would.
    sorted.sort_by(|a, b| a.source.cmp(&b.source));
    sorted
}

/// The rendered-templates archive: bytes of the `.tgz` and their SHA-1 (the apply spec's
/// `rendered_templates_archive.sha1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedArchive {
    pub bytes: Vec<u8>,
    pub sha1: String,
}

/// Writing the archive failed (an unrepresentable path).
#[derive(Debug, thiserror::Error)]
#[error("adding '{path}' of job '{job}' to the rendered templates archive")]
pub struct ArchiveError {
    pub job: String,
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

/// Packs `instance` the way the director sends it through the agent: a gzipped tar with
/// `<job>/monit` and `<job>/<destination>` entries of mode 0644, no directory entries. The
/// agent unpacks it and moves each `<job>/` directory into place. Timestamps are zero so
/// the same rendering always gives the same bytes and SHA-1.
pub fn rendered_templates_archive(
    instance: &RenderedInstance,
) -> Result<RenderedArchive, ArchiveError> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for job in &instance.jobs {
        let entries = std::iter::once(("monit", job.monit.as_str())).chain(
            job.files
                .iter()
                .map(|f| (f.destination.as_str(), f.content.as_str())),
        );
        for (dest, content) in entries {
            let path = format!("{}/{}", job.name, dest);
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(content.len() as u64);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, &path, content.as_bytes())
                .map_err(|source| ArchiveError {
                    job: job.name.clone(),
                    path: dest.to_owned(),
                    source,
                })?;
        }
    }
    let finish = |source| ArchiveError {
        job: String::new(),
        path: String::new(),
        source,
    };
    let gz = tar.into_inner().map_err(finish)?;
    let bytes = gz.finish().map_err(finish)?;
    let sha1 = hex::encode(Sha1::digest(&bytes));
    Ok(RenderedArchive { bytes, sha1 })
}
