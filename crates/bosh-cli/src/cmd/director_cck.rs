//! Day-2 commands: `cloud-check`/`cck` (director-api.md §5.7), as the official CLI's
//! `cmd/cloud_check.go`: scan (a task), list the problems, then ask for, take from
//! `--resolution`, or (`--auto`) leave to the director each problem's resolution.

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;

use super::{Out, Session, confirm, task_track};
use crate::GlobalOpts;
use crate::director::{DirectorClient, ReqBody};
use crate::ui::{Table, TableOptions};

#[derive(clap::Subcommand, Debug)]
pub enum CckCommand {
    /// Cloud consistency check and interactive repair
    #[command(name = "cloud-check", visible_alias = "cck")]
    CloudCheck {
        /// Resolve problems automatically
        #[arg(short = 'a', long = "auto")]
        auto: bool,
        /// Apply resolution of given type
        #[arg(long = "resolution", value_name = "RESOLUTION")]
        resolution: Vec<String>,
        /// Only generate report; don't attempt to resolve problems
        #[arg(short = 'r', long = "report")]
        report: bool,
    },
}

/// A problem as `GET /deployments/{dep}/problems` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub resolutions: Vec<ProblemResolution>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProblemResolution {
    pub name: Option<String>,
    #[serde(default)]
    pub plan: String,
}

pub fn run(cmd: CckCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        CckCommand::CloudCheck {
            auto,
            resolution,
            report,
        } => cloud_check(out, global, auto, &resolution, report),
    }
}

fn cloud_check(
    out: &mut Out,
    global: &GlobalOpts,
    auto: bool,
    resolutions: &[String],
    report: bool,
) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;

    let probs = problems_scan(out, &client, &dep)?;
    problems_table(out, &probs);
    if probs.is_empty() {
        return Ok(());
    }
    if report {
        bail!("{} problem(s) found", probs.len());
    }

    // Problem id → resolution name; `None` asks the director for its automatic one.
    let answers: Vec<(i64, Option<String>)> = if auto {
        probs.iter().map(|p| (p.id, None)).collect()
    } else if !resolutions.is_empty() {
        probs
            .iter()
            .map(|p| {
                let chosen = resolutions.iter().find_map(|r| {
                    p.resolutions
                        .iter()
                        .find(|res| res.name.as_deref() == Some(r.as_str()))
                        .and_then(|res| res.name.clone())
                });
                (p.id, Some(chosen.unwrap_or_else(|| "ignore".to_owned())))
            })
            .collect()
    } else {
        let mut answers = Vec::new();
        for p in &probs {
            let plans: Vec<&str> = p.resolutions.iter().map(|r| r.plan.as_str()).collect();
            let chosen = choice_ask(out, global, &p.description, &plans)?;
            answers.push((p.id, p.resolutions[chosen].name.clone()));
        }
        answers
    };

    confirm(out, global)?;
    problems_resolve(out, &client, &dep, &answers)
}

/// `POST …/scans` (empty JSON body) and its task, then the open problems.
fn problems_scan(
    out: &mut Out,
    client: &DirectorClient,
    dep: &str,
) -> anyhow::Result<Vec<Problem>> {
    let task = client
        .task_start(
            Method::POST,
            &format!("/deployments/{dep}/scans"),
            ReqBody::Bytes(Vec::new(), "application/json".to_owned()),
        )
        .with_context(|| format!("Performing a scan on deployment '{dep}'"))?;
    task_track(out, client, &task, true)
        .with_context(|| format!("Performing a scan on deployment '{dep}'"))?;
    client
        .get_json(&format!("/deployments/{dep}/problems"))
        .with_context(|| format!("Listing problems for deployment '{dep}'"))
}

fn problems_table(out: &mut Out, probs: &[Problem]) {
    let mut sorted: Vec<&Problem> = probs.iter().collect();
    sorted.sort_by_key(|p| p.id);
    let table = Table {
        content: "problems".into(),
        header: vec!["#".into(), "Type".into(), "Description".into()],
        rows: sorted
            .iter()
            .map(|p| vec![p.id.to_string(), p.kind.clone(), p.description.clone()])
            .collect(),
        notes: vec![],
    };
    out.table(&table, &TableOptions::default());
}

/// `PUT …/problems` with `{"resolutions": {"<id>": name | null}}` and its task.
fn problems_resolve(
    out: &mut Out,
    client: &DirectorClient,
    dep: &str,
    answers: &[(i64, Option<String>)],
) -> anyhow::Result<()> {
    let resolutions: BTreeMap<String, Option<&str>> = answers
        .iter()
        .map(|(id, name)| (id.to_string(), name.as_deref()))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "resolutions": resolutions }))?;
    let task = client
        .task_start(
            Method::PUT,
            &format!("/deployments/{dep}/problems"),
            ReqBody::Bytes(body, "application/json".to_owned()),
        )
        .with_context(|| format!("Resolving problems for deployment '{dep}'"))?;
    task_track(out, client, &task, true)
        .with_context(|| format!("Resolving problems for deployment '{dep}'"))
}

/// Asks for one of `options` (numbered from 1); there is nobody to ask with `-n`.
fn choice_ask(
    out: &mut Out,
    global: &GlobalOpts,
    label: &str,
    options: &[&str],
) -> anyhow::Result<usize> {
    if global.non_interactive {
        bail!("Cannot ask for a choice in non-interactive UI");
    }
    if options.is_empty() {
        bail!("No resolutions offered for '{label}'");
    }
    let mut text = format!("{label}\n\n");
    for (i, o) in options.iter().enumerate() {
        text.push_str(&format!("{}: {o}\n", i + 1));
    }
    out.raw(&text);
    let stdin = std::io::stdin();
    loop {
        out.raw("\nChoose: ");
        let mut line = String::new();
        let n = stdin
            .lock()
            .read_line(&mut line)
            .context("Asking for a choice")?;
        if n == 0 {
            bail!("Asking for a choice: no more input");
        }
        match line.trim().parse::<usize>() {
            Ok(k) if (1..=options.len()).contains(&k) => return Ok(k - 1),
            _ => out.raw("invalid selection\n"),
        }
    }
}
