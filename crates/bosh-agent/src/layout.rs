//! The on-VM directory layout (§7.1) under a configurable base dir, so that several agents
//! can share one host (`-b`).

use std::path::{Path, PathBuf};

/// The real agent's base dir; paths in rendered templates and monit files start with it.
pub const DEFAULT_BASE: &str = "/var/vcap";

#[derive(Debug, Clone)]
pub struct Layout {
    base: PathBuf,
}

impl Layout {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Layout { base: base.into() }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn bosh_dir(&self) -> PathBuf {
        self.base.join("bosh")
    }
    pub fn default_agent_config(&self) -> PathBuf {
        self.bosh_dir().join("agent.json")
    }
    pub fn settings_cache(&self) -> PathBuf {
        self.bosh_dir().join("settings.json")
    }
    pub fn update_settings(&self) -> PathBuf {
        self.bosh_dir().join("update_settings.json")
    }
    pub fn spec(&self) -> PathBuf {
        self.bosh_dir().join("spec.json")
    }
    /// Persistent task records (`update_settings`) resumed on boot.
    pub fn task_info(&self) -> PathBuf {
        self.bosh_dir().join("tasks.json")
    }
    pub fn data(&self) -> PathBuf {
        self.base.join("data")
    }
    pub fn tmp(&self) -> PathBuf {
        self.data().join("tmp")
    }
    pub fn jobs(&self) -> PathBuf {
        self.base.join("jobs")
    }
    pub fn job(&self, job: &str) -> PathBuf {
        self.jobs().join(job)
    }
    pub fn job_bundles(&self, job: &str) -> PathBuf {
        self.data().join("jobs").join(job)
    }
    pub fn packages(&self) -> PathBuf {
        self.base.join("packages")
    }
    pub fn package_bundles(&self, package: &str) -> PathBuf {
        self.data().join("packages").join(package)
    }
    pub fn sys(&self) -> PathBuf {
        self.base.join("sys")
    }
    pub fn data_sys(&self) -> PathBuf {
        self.data().join("sys")
    }
    pub fn job_log_dir(&self, job: &str) -> PathBuf {
        self.data_sys().join("log").join(job)
    }
    pub fn job_run_dir(&self, job: &str) -> PathBuf {
        self.data_sys().join("run").join(job)
    }
    pub fn monit(&self) -> PathBuf {
        self.base.join("monit")
    }
    pub fn monit_jobs(&self) -> PathBuf {
        self.monit().join("job")
    }
    /// Written by `stop`, removed by `start` (§6.3).
    pub fn stopped_marker(&self) -> PathBuf {
        self.monit().join("stopped")
    }
    pub fn instance(&self) -> PathBuf {
        self.base.join("instance")
    }
    pub fn store(&self) -> PathBuf {
        self.base.join("store")
    }
    pub fn store_migration_target(&self) -> PathBuf {
        self.base.join("store_migration_target")
    }
    /// Compilation workspace of a package (§9).
    pub fn compile_dir(&self, package: &str) -> PathBuf {
        self.data().join("compile").join(package)
    }
    /// Blobs delivered over NATS by `upload_blob`.
    pub fn sensitive_blobs(&self) -> PathBuf {
        self.data().join("sensitive_blobs")
    }
    /// Agent-local blobs, read before the real blobstore.
    pub fn local_blobs(&self) -> PathBuf {
        self.data().join("blobs")
    }
    /// The agent's own logs (`fetch_logs` type `agent`).
    pub fn agent_log_dir(&self) -> PathBuf {
        self.bosh_dir().join("log")
    }
    pub fn persistent_disk_hints(&self) -> PathBuf {
        self.bosh_dir().join("persistent_disk_hints.json")
    }
    pub fn dns_records(&self) -> PathBuf {
        self.instance().join("dns").join("records.json")
    }
    /// Homes of ephemeral ssh users.
    pub fn bosh_ssh(&self) -> PathBuf {
        self.base.join("bosh_ssh")
    }

    /// Maps a `/var/vcap/...` path written in a release (monit files, pidfiles) onto this
    /// base dir; identity when the base is `/var/vcap`.
    pub fn rewrite(&self, text: &str) -> String {
        let base = self.base.to_string_lossy();
        if base == DEFAULT_BASE {
            return text.to_owned();
        }
        text.replace(DEFAULT_BASE, base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_maps_var_vcap_onto_the_base() {
        let l = Layout::new("/tmp/b1");
        assert_eq!(
            l.rewrite("/var/vcap/jobs/x/bin/ctl start"),
            "/tmp/b1/jobs/x/bin/ctl start"
        );
        assert_eq!(
            Layout::new("/var/vcap").rewrite("/var/vcap/x"),
            "/var/vcap/x"
        );
        assert_eq!(l.job("j"), PathBuf::from("/tmp/b1/jobs/j"));
    }
}
