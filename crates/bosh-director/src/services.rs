//! What artifact tasks share: the data dir, the blobstore and the CPI.

use bosh_cpi::Cpi;
use std::path::PathBuf;
use std::sync::Arc;

use crate::blobstore::Blobstore;
use crate::tasks::runner::TaskError;

#[derive(Clone)]
pub struct Services {
    pub data_dir: PathBuf,
    pub blobstore: Arc<dyn Blobstore>,
    /// `None` when the `--cpi` value names a CPI this director cannot drive yet.
    pub cpi: Option<Arc<dyn Cpi>>,
    /// The `--cpi` value, for messages.
    pub cpi_name: String,
}

impl Services {
    pub fn cpi(&self) -> Result<&Arc<dyn Cpi>, TaskError> {
        self.cpi.as_ref().ok_or_else(|| {
            TaskError::failed(
                100,
                format!("CPI '{}' is not available in this director", self.cpi_name),
            )
        })
    }

    /// A fresh scratch path under `DIR/tmp`.
    pub fn tmp_path(&self, prefix: &str) -> PathBuf {
        self.data_dir
            .join("tmp")
            .join(format!("{prefix}-{}", uuid::Uuid::new_v4()))
    }
}

/// The error and its causes on one line, for task errors the user reads.
pub fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    crate::error::error_chain(err)
}
