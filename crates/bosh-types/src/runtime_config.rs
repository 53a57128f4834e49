//! Runtime config (formats.md §10.2) and addons, which deployment manifests share.

use crate::manifest::{
    Lifecycle, ReleaseRef, Variable, parse_lifecycle, parse_releases, parse_variables,
};
use crate::validate::{Doc, Field, Loc, SourceLines, ValidationErrors};
use bosh_yaml::{Mapping, Value};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub releases: Vec<ReleaseRef>,
    #[serde(default)]
    pub addons: Vec<Addon>,
    #[serde(default)]
    pub tags: IndexMap<String, String>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    #[serde(skip)]
    pub(crate) lines: SourceLines,
}

/// Jobs colocated onto every instance group that the placement rules select.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addon {
    pub name: String,
    pub jobs: Vec<AddonJob>,
    /// Deprecated addon-level properties, used by jobs that have none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<PlacementRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<PlacementRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddonJob {
    pub name: String,
    pub release: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
    #[serde(default)]
    pub consumes: Value,
    #[serde(default)]
    pub provides: Value,
}

/// One `include` or `exclude` block. Within a kind any entry may match; every kind given
/// must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementRule {
    #[serde(default)]
    pub stemcell: Vec<StemcellFilter>,
    #[serde(default)]
    pub deployments: Vec<String>,
    #[serde(default)]
    pub jobs: Vec<JobFilter>,
    #[serde(default)]
    pub instance_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub azs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StemcellFilter {
    pub os: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    pub name: String,
    pub release: String,
}

/// What placement rules look at when deciding whether an addon goes on an instance group.
#[derive(Debug, Clone, Copy)]
pub struct PlacementTarget<'a> {
    pub deployment: &'a str,
    pub teams: &'a [String],
    pub instance_group: &'a str,
    pub lifecycle: Lifecycle,
    /// `(job name, release name)` of the group's jobs.
    pub jobs: &'a [(String, String)],
    pub stemcell_os: &'a str,
    pub networks: &'a [String],
    pub azs: &'a [String],
}

impl PlacementRule {
    /// No kind given: an empty include selects everything, an empty exclude nothing.
    pub fn is_empty(&self) -> bool {
        self.stemcell.is_empty()
            && self.deployments.is_empty()
            && self.jobs.is_empty()
            && self.instance_groups.is_empty()
            && self.lifecycle.is_none()
            && self.networks.is_empty()
            && self.teams.is_empty()
            && self.azs.is_empty()
    }

    /// Whether every kind this rule gives matches the target.
    pub fn matches(&self, t: &PlacementTarget<'_>) -> bool {
        fn any_of<T>(list: &[T], f: impl Fn(&T) -> bool) -> bool {
            list.is_empty() || list.iter().any(f)
        }
        self.lifecycle.is_none_or(|l| l == t.lifecycle)
            && any_of(&self.azs, |a| t.azs.contains(a))
            && any_of(&self.teams, |team| t.teams.contains(team))
            && any_of(&self.stemcell, |s| s.os == t.stemcell_os)
            && any_of(&self.networks, |n| t.networks.contains(n))
            && any_of(&self.instance_groups, |g| g == t.instance_group)
            && any_of(&self.deployments, |d| d == t.deployment)
            && any_of(&self.jobs, |j| {
                t.jobs.iter().any(|(n, r)| *n == j.name && *r == j.release)
            })
    }
}

impl Addon {
    /// Whether this addon's jobs go on the target instance group.
    pub fn applies_to(&self, t: &PlacementTarget<'_>) -> bool {
        let included = self
            .include
            .as_ref()
            .is_none_or(|r| r.is_empty() || r.matches(t));
        let excluded = self
            .exclude
            .as_ref()
            .is_some_and(|r| !r.is_empty() && r.matches(t));
        included && !excluded
    }
}

/// Where an addon is declared: deployment-level addons may not filter by deployment and
/// have no teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddonLevel {
    Runtime,
    Deployment,
}

fn parse_rule(doc: &mut Doc, v: &Value, loc: &Loc, level: AddonLevel) -> Option<PlacementRule> {
    let m = doc.map(v, loc);
    m?;
    let mut rule = PlacementRule {
        deployments: doc.strings(m, loc, "deployments"),
        instance_groups: doc.strings(m, loc, "instance_groups"),
        networks: doc.strings(m, loc, "networks"),
        teams: doc.strings(m, loc, "teams"),
        azs: doc.strings(m, loc, "azs"),
        lifecycle: parse_lifecycle(doc, m, loc),
        ..PlacementRule::default()
    };
    if level == AddonLevel::Deployment {
        if !rule.deployments.is_empty() {
            doc.error(
                &loc.key("deployments"),
                "deployment filter is not allowed for deployment level addons",
            );
        }
        // The director ignores teams on deployment-level addons.
        rule.teams.clear();
    }
    if let Field::Present(items) = doc.seq(m, loc, "jobs") {
        for (i, j) in items.iter().enumerate() {
            let at = loc.key("jobs").index(i);
            let jm = doc.map(j, &at);
            if jm.is_none() {
                continue;
            }
            let name = doc.opt_string(jm, &at, "name").unwrap_or_default();
            let release = doc.opt_string(jm, &at, "release").unwrap_or_default();
            if name.is_empty() || release.is_empty() {
                doc.error(&at, "job filter must have both name and release");
            }
            rule.jobs.push(JobFilter { name, release });
        }
    }
    if let Field::Present(items) = doc.seq(m, loc, "stemcell") {
        for (i, s) in items.iter().enumerate() {
            let at = loc.key("stemcell").index(i);
            let sm = doc.map(s, &at);
            if sm.is_none() {
                continue;
            }
            let os = doc.opt_string(sm, &at, "os").unwrap_or_default();
            if os.is_empty() {
                doc.error(&at, "stemcell filter must have an os name");
            }
            rule.stemcell.push(StemcellFilter { os });
        }
    }
    Some(rule)
}

/// Parses `addons`, checking each job's release against `releases` (names of the releases
/// the same document declares).
pub(crate) fn parse_addons(
    doc: &mut Doc,
    m: Option<&Mapping>,
    top: &Loc,
    level: AddonLevel,
    releases: &[String],
) -> Vec<Addon> {
    let mut out = Vec::new();
    let Field::Present(items) = doc.seq(m, top, "addons") else {
        return out;
    };
    let mut names = Vec::new();
    for (at, v) in Doc::items(items, &top.key("addons"), "name") {
        let am = doc.map(v, &at);
        if am.is_none() {
            continue;
        }
        let name = doc.req_string(am, &at, "name");
        let mut jobs = Vec::new();
        if let Field::Present(list) = doc.seq(am, &at, "jobs") {
            let mut job_names = Vec::new();
            for (jat, jv) in Doc::items(list, &at.key("jobs"), "name") {
                let jm = doc.map(jv, &jat);
                if jm.is_none() {
                    continue;
                }
                let job = AddonJob {
                    name: doc.req_string(jm, &jat, "name"),
                    release: doc.req_string(jm, &jat, "release"),
                    properties: Doc::get(jm, "properties")
                        .map(|_| doc.raw_map(jm, &jat, "properties")),
                    consumes: doc.raw_map(jm, &jat, "consumes"),
                    provides: doc.raw_map(jm, &jat, "provides"),
                };
                if !job.release.is_empty() && !releases.contains(&job.release) {
                    doc.error(
                        &jat.key("release"),
                        format!(
                            "addon job '{}' references release '{}' which is not listed in releases",
                            job.name, job.release
                        ),
                    );
                }
                job_names.push((job.name.clone(), jat));
                jobs.push(job);
            }
            doc.unique(
                job_names.iter().map(|(n, l)| (n.as_str(), l.clone())),
                "addon job",
                "name",
            );
        }
        let properties = Doc::get(am, "properties").map(|_| doc.raw_map(am, &at, "properties"));
        let include =
            Doc::get(am, "include").and_then(|v| parse_rule(doc, v, &at.key("include"), level));
        let exclude =
            Doc::get(am, "exclude").and_then(|v| parse_rule(doc, v, &at.key("exclude"), level));
        names.push((name.clone(), at));
        out.push(Addon {
            name,
            jobs,
            properties,
            include,
            exclude,
        });
    }
    doc.unique(
        names.iter().map(|(n, l)| (n.as_str(), l.clone())),
        "addon name",
        "name",
    );
    out
}

impl RuntimeConfig {
    pub fn parse(src: &str) -> Result<RuntimeConfig, ValidationErrors> {
        let (root, mut doc) = Doc::parse(src)?;
        let top = Loc::root();
        let m = doc.map(&root, &top);
        let releases = parse_releases(&mut doc, m, &top, false);
        for (i, r) in releases.iter().enumerate() {
            if r.version
                .as_deref()
                .is_some_and(|v| v == "latest" || v.ends_with(".latest"))
            {
                let at = top.key("releases").named(i, "name", &r.name).key("version");
                let at = if releases.iter().filter(|o| o.name == r.name).count() == 1 {
                    at
                } else {
                    top.key("releases").index(i).key("version")
                };
                doc.error(
                    &at,
                    format!(
                        "runtime config contains the release '{}' with version as 'latest'; please specify the actual version string",
                        r.name
                    ),
                );
            }
        }
        let release_names: Vec<String> = releases.iter().map(|r| r.name.clone()).collect();
        let addons = parse_addons(&mut doc, m, &top, AddonLevel::Runtime, &release_names);
        let tags = doc.string_map(m, &top, "tags");
        let variables = parse_variables(&mut doc, m, &top);
        let lines = doc.lines();
        doc.finish(RuntimeConfig {
            releases,
            addons,
            tags,
            variables,
            lines,
        })
    }

    /// Combines several runtime configs: releases, addons and variables concatenated, `tags`
    /// allowed in only one.
    pub fn merge(configs: Vec<RuntimeConfig>) -> Result<RuntimeConfig, ValidationErrors> {
        let mut doc = Doc::with_lines(SourceLines::default());
        let mut out = RuntimeConfig {
            releases: Vec::new(),
            addons: Vec::new(),
            tags: IndexMap::new(),
            variables: Vec::new(),
            lines: SourceLines::default(),
        };
        for rc in configs {
            if !rc.tags.is_empty() && !out.tags.is_empty() {
                doc.error(
                    &Loc::root().key("tags"),
                    "may be specified in only one runtime config",
                );
            }
            if out.tags.is_empty() {
                out.tags = rc.tags;
            }
            out.releases.extend(rc.releases);
            out.addons.extend(rc.addons);
            out.variables.extend(rc.variables);
        }
        doc.finish(out)
    }
}
