//! CPI config (formats.md §10.3): the CPIs a director can use; AZs select one by name.

use crate::validate::{Doc, Field, Loc, SourceLines, ValidationErrors};
use bosh_yaml::Value;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpiConfig {
    pub cpis: Vec<Cpi>,
    #[serde(skip)]
    pub(crate) lines: SourceLines,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cpi {
    pub name: String,
    /// The executable is `<type>_cpi` unless `exec_path` says otherwise.
    #[serde(rename = "type")]
    pub cpi_type: String,
    /// CPI global configuration, passed through.
    #[serde(default)]
    pub properties: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_path: Option<String>,
    /// Names of CPIs whose VMs and disks this one takes over.
    #[serde(default)]
    pub migrated_from: Vec<String>,
}

impl Cpi {
    /// The executable name the director runs for this CPI.
    pub fn executable(&self) -> String {
        self.exec_path
            .clone()
            .unwrap_or_else(|| format!("{}_cpi", self.cpi_type))
    }
}

impl CpiConfig {
    pub fn parse(src: &str) -> Result<CpiConfig, ValidationErrors> {
        let (root, mut doc) = Doc::parse(src)?;
        let top = Loc::root();
        let m = doc.map(&root, &top);
        let mut cpis = Vec::new();
        let mut names = Vec::new();
        if let Field::Present(items) = doc.req_seq(m, &top, "cpis") {
            for (at, v) in Doc::items(items, &top.key("cpis"), "name") {
                let cm = doc.map(v, &at);
                if cm.is_none() {
                    continue;
                }
                let name = doc.req_string(cm, &at, "name");
                let cpi_type = doc.req_string(cm, &at, "type");
                let mut migrated_from = Vec::new();
                if let Field::Present(list) = doc.seq(cm, &at, "migrated_from") {
                    for (i, mv) in list.iter().enumerate() {
                        let mat = at.key("migrated_from").index(i);
                        let mm = doc.map(mv, &mat);
                        if mm.is_some() {
                            migrated_from.push(doc.req_string(mm, &mat, "name"));
                        }
                    }
                }
                names.push((name.clone(), at.clone()));
                cpis.push(Cpi {
                    name,
                    cpi_type,
                    properties: doc.raw_map(cm, &at, "properties"),
                    exec_path: doc.opt_string(cm, &at, "exec_path"),
                    migrated_from,
                });
            }
        }
        doc.unique(
            names.iter().map(|(n, at)| (n.as_str(), at.clone())),
            "cpi name",
            "name",
        );
        let lines = doc.lines();
        doc.finish(CpiConfig { cpis, lines })
    }

    /// Concatenates several CPI configs; names must stay unique.
    pub fn merge(configs: Vec<CpiConfig>) -> Result<CpiConfig, ValidationErrors> {
        let cpis: Vec<Cpi> = configs.into_iter().flat_map(|c| c.cpis).collect();
        let mut doc = Doc::with_lines(SourceLines::default());
        let at = |i: usize| Loc::root().key("cpis").index(i);
        doc.unique(
            cpis.iter()
                .enumerate()
                .map(|(i, c)| (c.name.as_str(), at(i))),
            "cpi name",
            "name",
        );
        doc.finish(CpiConfig {
            cpis,
            lines: SourceLines::default(),
        })
    }

    pub fn cpi(&self, name: &str) -> Option<&Cpi> {
        self.cpis.iter().find(|c| c.name == name)
    }
}
