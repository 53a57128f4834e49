//! `bosh clean-up` (director-api.md §5.11): what Ruby's CleanupArtifactManager removes, as a
//! dry run (`GET /cleanup/dryrun`) and as the `delete_artifacts` task (`POST /cleanup`).
//!
//! - releases: versions no deployment uses, keeping the newest two unused versions of each
//!   release unless `remove_all`;
//! - stemcells: unused ones, keeping the newest two of each name unless `remove_all`;
//! - compiled packages (`remove_all` only) compiled for a stemcell that is gone or going;
//! - orphaned disks (`remove_all` and not `keep_orphaned_disks`).
//!
//! Every deletion goes through the same path as `delete-release`, `delete-stemcell` and
//! `delete-disk`. We keep no orphaned VMs, exported releases or DNS blobs, so those lists are
//! always empty.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::db::{Db, DbError, now_secs};
use crate::disks::{OrphanDiskView, orphan_disk_delete, orphan_disk_list, ruby_time_text};
use crate::releases::{self, DeleteReleaseJob};
use crate::services::Services;
use crate::stemcells::{self, DeleteStemcellJob, StemcellView};
use crate::tasks::runner::{TaskContext, TaskError, TaskJob, TaskRegistry};

pub const DELETE_ARTIFACTS: &str = "delete_artifacts";

/// How many unused versions of each release and stemcell a plain clean-up keeps.
const VERSIONS_KEPT: usize = 2;

pub fn tasks_register(registry: &mut TaskRegistry, services: &Services) {
    registry.register(
        DELETE_ARTIFACTS,
        Arc::new(CleanupJob {
            services: services.clone(),
        }),
    );
}

/// The `config` of `POST /cleanup` and the query of the dry run.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
pub struct CleanupOptions {
    #[serde(default)]
    pub remove_all: bool,
    #[serde(default)]
    pub keep_orphaned_disks: bool,
}

impl CleanupOptions {
    /// Ruby's task description.
    pub fn description(&self) -> &'static str {
        if self.remove_all {
            "clean up all"
        } else {
            "clean up"
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CleanableRelease {
    pub name: String,
    pub versions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CleanableCompiledPackage {
    pub id: i64,
    pub package_name: String,
    pub stemcell_os: String,
    pub stemcell_version: String,
}

/// What a clean-up with given options removes.
#[derive(Debug, Clone)]
pub struct CleanupPlan {
    pub releases: Vec<CleanableRelease>,
    pub stemcells: Vec<StemcellView>,
    pub compiled_packages: Vec<CleanableCompiledPackage>,
    pub orphaned_disks: Vec<OrphanDiskView>,
}

impl CleanupPlan {
    /// The body of `GET /cleanup/dryrun`.
    pub fn dry_run_json(&self) -> Value {
        json!({
            "releases": self.releases,
            "stemcells": self.stemcells,
            "compiled_packages": self.compiled_packages.iter().map(|c| json!({
                "package_name": c.package_name,
                "stemcell_os": c.stemcell_os,
                "stemcell_version": c.stemcell_version,
            })).collect::<Vec<_>>(),
            "orphaned_disks": self.orphaned_disks,
            "orphaned_vms": [],
            "exported_releases": [],
            "dns_blobs": [],
        })
    }
}

fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use bosh_types::version::Version;
    match (Version::parse(a), Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Drops the newest `keep` of `versions` (sorted oldest first).
fn all_but_newest<T>(mut versions: Vec<T>, keep: usize) -> Vec<T> {
    versions.truncate(versions.len().saturating_sub(keep));
    versions
}

pub async fn cleanup_plan(db: &Db, opts: CleanupOptions) -> Result<CleanupPlan, DbError> {
    let keep = if opts.remove_all { 0 } else { VERSIONS_KEPT };

    let mut releases = Vec::new();
    for r in releases::release_view_list(db).await? {
        // Versions come oldest first (semi-semantic order).
        let unused: Vec<String> = r
            .release_versions
            .into_iter()
            .filter(|v| !v.currently_deployed)
            .map(|v| v.version)
            .collect();
        let versions = all_but_newest(unused, keep);
        if !versions.is_empty() {
            releases.push(CleanableRelease {
                name: r.name,
                versions,
            });
        }
    }

    let mut by_name: BTreeMap<String, Vec<StemcellView>> = BTreeMap::new();
    let all_stemcells = stemcells::stemcell_view_list(db).await?;
    for s in all_stemcells.iter().filter(|s| s.deployments.is_empty()) {
        by_name.entry(s.name.clone()).or_default().push(s.clone());
    }
    let mut doomed = Vec::new();
    for (_, mut list) in by_name {
        list.sort_by(|a, b| version_cmp(&a.version, &b.version));
        doomed.extend(all_but_newest(list, keep));
    }

    let compiled_packages = if opts.remove_all {
        let staying: BTreeSet<(String, String)> = all_stemcells
            .iter()
            .filter(|s| !doomed.iter().any(|d| d.id == s.id))
            .map(|s| (s.operating_system.clone(), s.version.clone()))
            .collect();
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT c.id, p.name, c.stemcell_os, c.stemcell_version FROM compiled_packages c \
             JOIN packages p ON p.id = c.package_id ORDER BY c.id",
        )
        .fetch_all(db.pool())
        .await?;
        rows.into_iter()
            .filter(|(_, _, os, version)| !staying.contains(&(os.clone(), version.clone())))
            .map(
                |(id, package_name, stemcell_os, stemcell_version)| CleanableCompiledPackage {
                    id,
                    package_name,
                    stemcell_os,
                    stemcell_version,
                },
            )
            .collect()
    } else {
        Vec::new()
    };

    let orphaned_disks = if opts.remove_all && !opts.keep_orphaned_disks {
        orphan_disk_list(db).await?
    } else {
        Vec::new()
    };

    Ok(CleanupPlan {
        releases,
        stemcells: doomed,
        compiled_packages,
        orphaned_disks,
    })
}

/// `delete_artifacts`: payload `{"remove_all", "keep_orphaned_disks"}` (`bosh clean-up`).
pub struct CleanupJob {
    pub services: Services,
}

#[async_trait]
impl TaskJob for CleanupJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let opts: CleanupOptions = serde_json::from_value(payload).unwrap_or_default();
        let plan = cleanup_plan(ctx.db(), opts).await?;

        let releases = DeleteReleaseJob {
            services: self.services.clone(),
        };
        let mut release_count = 0;
        for r in &plan.releases {
            ctx.lock(&releases::release_lock(&r.name)).await?;
            for v in &r.versions {
                ctx.checkpoint().await?;
                releases.delete(ctx, &r.name, Some(v)).await?;
                release_count += 1;
            }
        }

        let stemcells = DeleteStemcellJob {
            services: self.services.clone(),
        };
        for s in &plan.stemcells {
            ctx.checkpoint().await?;
            ctx.lock(&stemcells::stemcell_lock(&s.name)).await?;
            stemcells.delete(ctx, &s.name, &s.version, false).await?;
        }

        // Deleting a release version may have taken some of these with their package.
        let mut remaining = Vec::new();
        for c in &plan.compiled_packages {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT blobstore_id FROM compiled_packages WHERE id = $1")
                    .bind(c.id)
                    .fetch_optional(ctx.db().pool())
                    .await
                    .map_err(DbError::from)?;
            if let Some((blob,)) = row {
                remaining.push((c, blob));
            }
        }
        let stage = ctx.events().stage(
            "Deleting compiled packages",
            &[],
            Some(remaining.len() as u32),
        );
        for (c, blob) in &remaining {
            ctx.checkpoint().await?;
            let t = stage.task(&format!(
                "{} for {}/{}",
                c.package_name, c.stemcell_os, c.stemcell_version
            ));
            sqlx::query("DELETE FROM compiled_packages WHERE id = $1")
                .bind(c.id)
                .execute(ctx.db().pool())
                .await
                .map_err(DbError::from)?;
            releases::blobs_collect(
                ctx.db(),
                self.services.blobstore.as_ref(),
                BTreeSet::from([blob.clone()]),
            )
            .await?;
            t.finished();
        }

        let stage = ctx.events().stage(
            "Deleting orphaned disks",
            &[],
            Some(plan.orphaned_disks.len() as u32),
        );
        for d in &plan.orphaned_disks {
            ctx.checkpoint().await?;
            let t = stage.task(&d.disk_cid);
            match orphan_disk_delete(ctx, &self.services, &d.disk_cid).await {
                Ok(_) => t.finished(),
                Err(e) => {
                    t.failed(&e.to_string());
                    return Err(e);
                }
            }
        }

        let cutoff = now_secs() - if opts.remove_all { 0 } else { 3600 };
        Ok(format!(
            "Deleted {release_count} release(s), {} stemcell(s), {} extra compiled package(s), \
             {} orphaned disk(s), 0 orphaned vm(s), 0 exported release(s), Deleted 0 dns \
             blob(s) created before {}",
            plan.stemcells.len(),
            remaining.len(),
            plan.orphaned_disks.len(),
            ruby_time_text(cutoff)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_but_newest_keeps_the_last_entries() {
        assert_eq!(all_but_newest(vec![1, 2, 3, 4], 2), vec![1, 2]);
        assert_eq!(all_but_newest(vec![1], 2), Vec::<i32>::new());
        assert_eq!(all_but_newest(vec![1, 2], 0), vec![1, 2]);
    }

    #[test]
    fn versions_sort_semi_semantically() {
        let mut v = vec!["10", "9", "0+dev.10", "0+dev.2"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, vec!["0+dev.2", "0+dev.10", "9", "10"]);
    }
}
