//! Plan errors: each names the manifest node at fault (selector paths as `bosh-types`
//! validation uses, like `instance_groups[name=web].networks[0].name`) and its line.

use bosh_types::manifest::Manifest;
use bosh_types::validate::ValidationErrors;
use bosh_yaml::Path;
use std::fmt;

/// One reason the deployment cannot be planned: the same shape as a validation error (a
/// selector path, a line, a message), so both print alike.
pub use bosh_types::validate::ValidationError as PlanError;

/// Every problem found before planning stopped, one per line when displayed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanErrors(pub Vec<PlanError>);

impl PlanErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, PlanError> {
        self.0.iter()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// The first error at exactly `path`.
    pub fn at(&self, path: &str) -> Option<&PlanError> {
        self.0.iter().find(|e| e.path == path)
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.0.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

impl From<ValidationErrors> for PlanErrors {
    fn from(v: ValidationErrors) -> Self {
        PlanErrors(
            v.into_iter()
                .map(|e| PlanError {
                    path: e.path,
                    line: e.line,
                    message: e.message,
                })
                .collect(),
        )
    }
}

impl From<PlanError> for PlanErrors {
    fn from(e: PlanError) -> Self {
        PlanErrors(vec![e])
    }
}

/// A manifest location, kept both as a selector (for people) and an index path (for lines).
#[derive(Debug, Clone, Default)]
pub(crate) struct At {
    sel: String,
    path: Path,
}

impl At {
    pub(crate) fn root() -> Self {
        At::default()
    }
    pub(crate) fn key(&self, k: &str) -> At {
        At {
            sel: if self.sel.is_empty() {
                k.to_owned()
            } else {
                format!("{}.{k}", self.sel)
            },
            path: self.path.key(k),
        }
    }
    pub(crate) fn index(&self, i: usize) -> At {
        At {
            sel: format!("{}[{i}]", self.sel),
            path: self.path.index(i),
        }
    }
    pub(crate) fn named(&self, i: usize, field: &str, value: &str) -> At {
        At {
            sel: format!("{}[{field}={value}]", self.sel),
            path: self.path.index(i),
        }
    }
    /// An error at this node of `manifest`.
    pub(crate) fn error(&self, manifest: &Manifest, message: impl Into<String>) -> PlanError {
        PlanError {
            path: self.sel.clone(),
            line: manifest.line_of(&self.path),
            message: message.into(),
        }
    }
}

/// `instance_groups[name=<g>]` (or `[i]` when the name is not unique).
pub(crate) fn group_at(manifest: &Manifest, gi: usize) -> At {
    let list = At::root().key("instance_groups");
    let name = &manifest.instance_groups[gi].name;
    let unique = manifest
        .instance_groups
        .iter()
        .filter(|g| &g.name == name)
        .count()
        == 1;
    if unique {
        list.named(gi, "name", name)
    } else {
        list.index(gi)
    }
}

/// `…jobs[name=<j>]` of a group.
pub(crate) fn job_at(manifest: &Manifest, gi: usize, ji: usize) -> At {
    let g = &manifest.instance_groups[gi];
    let name = &g.jobs[ji].name;
    let list = group_at(manifest, gi).key("jobs");
    if g.jobs.iter().filter(|j| &j.name == name).count() == 1 {
        list.named(ji, "name", name)
    } else {
        list.index(ji)
    }
}
