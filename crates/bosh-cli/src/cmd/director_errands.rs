//! `errands` and `run-errand` (director-api.md §5.10), with the official CLI's flags, result
//! table and exit status: an errand that exits non-zero fails the command.

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};

use super::{Out, Session, task_track};
use crate::GlobalOpts;
use crate::director::{DirectorClient, ReqBody};
use crate::ui::{Table, TableOptions};

#[derive(clap::Subcommand, Debug)]
pub enum ErrandsCommand {
    /// List errands
    #[command(name = "errands", alias = "es")]
    Errands,
    /// Run errand
    #[command(name = "run-errand")]
    RunErrand(RunErrandArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunErrandArgs {
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Instance or group the errand should run on (must specify errand by release job name)
    #[arg(long = "instance", value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
    pub instances: Vec<String>,
    /// Use existing VM to run an errand and keep it after completion
    #[arg(long = "keep-alive")]
    pub keep_alive: bool,
    /// Run errand only if errand configuration has changed or if the previous run was unsuccessful
    #[arg(long = "when-changed")]
    pub when_changed: bool,
    /// Print task state every N seconds while waiting (accepted; the event log is shown)
    #[arg(long = "with-heartbeat", value_name = "N", num_args = 0..=1, require_equals = true, default_missing_value = "30")]
    pub with_heartbeat: Option<u32>,
    /// Download logs
    #[arg(long = "download-logs")]
    pub download_logs: bool,
    /// Destination directory for logs
    #[arg(long = "logs-dir", value_name = "DIR", default_value = ".")]
    pub logs_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Errand {
    #[serde(default)]
    name: String,
}

/// One result line of a `run_errand` task; absent fields read as empty, as Go decodes them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrandResult {
    instance: ResultInstance,
    exit_code: i64,
    #[serde(deserialize_with = "null_string")]
    stdout: String,
    #[serde(deserialize_with = "null_string")]
    stderr: String,
    logs: ResultLogs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResultInstance {
    #[serde(deserialize_with = "null_string")]
    group: String,
    #[serde(deserialize_with = "null_string")]
    id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResultLogs {
    #[serde(deserialize_with = "null_string")]
    blobstore_id: String,
    #[serde(deserialize_with = "null_string")]
    sha1: String,
}

fn null_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

pub fn run(cmd: ErrandsCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        ErrandsCommand::Errands => errands(out, global),
        ErrandsCommand::RunErrand(args) => run_errand(out, global, args),
    }
}

fn errands(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    let list: Vec<Errand> = client
        .get_json(&format!("/deployments/{dep}/errands"))
        .context("Finding errands")?;
    out.table(
        &Table {
            content: "errands".into(),
            header: vec!["Name".into()],
            rows: list.into_iter().map(|e| vec![e.name]).collect(),
            notes: vec![],
        },
        &TableOptions {
            sort_by: vec![(0, true)],
            ..TableOptions::default()
        },
    );
    Ok(())
}

/// `name` or `name/id-or-index`, checked as the official CLI does.
fn slug_parse(s: &str) -> anyhow::Result<serde_json::Value> {
    let pieces: Vec<&str> = s.split('/').collect();
    if pieces.len() != 1 && pieces.len() != 2 {
        bail!("Expected pool or instance '{s}' to be in format 'name' or 'name/id-or-index'");
    }
    if pieces[0].is_empty() {
        bail!("Expected pool or instance '{s}' to specify non-empty name");
    }
    match pieces.get(1) {
        None => Ok(json!({"group": pieces[0]})),
        Some(&"") => {
            bail!("Expected instance '{s}' to specify non-empty ID or index")
        }
        Some(id) => Ok(json!({"group": pieces[0], "id": id})),
    }
}

fn run_errand(out: &mut Out, global: &GlobalOpts, args: RunErrandArgs) -> anyhow::Result<()> {
    let instances = args
        .instances
        .iter()
        .map(|s| slug_parse(s))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("Parsing --instance")?;
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    let name = &args.name;
    let body = json!({
        "keep-alive": args.keep_alive,
        "when-changed": args.when_changed,
        "instances": instances,
    });
    let results = (|| {
        let task = client.task_start(
            Method::POST,
            &format!("/deployments/{dep}/errands/{name}/runs"),
            ReqBody::Bytes(body.to_string().into_bytes(), "application/json".into()),
        )?;
        task_track(out, &client, &task, false)?;
        let bytes = client.task_result(task.id)?;
        results_parse(&bytes)
    })()
    .with_context(|| format!("Running errand '{name}'"))?;

    let errand_err = summarize(out, name, &results);
    if args.download_logs {
        for r in results.iter().filter(|r| !r.logs.blobstore_id.is_empty()) {
            logs_download(out, &client, &r.logs, name, &args.logs_dir)
                .context("Downloading errand logs")?;
        }
    }
    match errand_err {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(()),
    }
}

/// The task's result: a stream of JSON objects.
fn results_parse(bytes: &[u8]) -> anyhow::Result<Vec<ErrandResult>> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<ErrandResult>()
        .collect::<Result<Vec<_>, _>>()
        .context("Unmarshaling errand result")
}

/// Prints the result table; the error for the last non-zero exit, as the official CLI.
fn summarize(out: &mut Out, name: &str, results: &[ErrandResult]) -> Option<String> {
    let mut err = None;
    let mut rows = Vec::new();
    for r in results {
        let instance = match (r.instance.group.as_str(), r.instance.id.as_str()) {
            ("", _) => String::new(),
            (g, "") => g.to_owned(),
            (g, id) => format!("{g}/{id}"),
        };
        rows.push(vec![
            instance,
            r.exit_code.to_string(),
            r.stdout.clone(),
            r.stderr.clone(),
        ]);
        let prefix = format!("Errand '{name}'");
        let suffix = format!("(exit code {})", r.exit_code);
        match r.exit_code {
            0 => {}
            c if c > 128 => err = Some(format!("{prefix} was canceled {suffix}")),
            _ => err = Some(format!("{prefix} completed with error {suffix}")),
        }
    }
    out.table(
        &Table {
            content: "errand(s)".into(),
            header: vec![
                "Instance".into(),
                "Exit Code".into(),
                "Stdout".into(),
                "Stderr".into(),
            ],
            rows,
            notes: vec![],
        },
        &TableOptions {
            sort_by: vec![(0, true)],
            transpose: true,
            fill_first_column: true,
        },
    );
    err
}

/// `GET /resources/{id}` into `<dir>/<prefix>-<timestamp>.tgz`, digest-checked when the
/// director sent one.
fn logs_download(
    out: &mut Out,
    client: &DirectorClient,
    logs: &ResultLogs,
    prefix: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let now = chrono::Local::now();
    // Go's "20060102-150405.999999999" with '.' → '-': the fraction loses trailing zeros.
    let nanos = format!("{:09}", now.timestamp_subsec_nanos());
    let nanos = nanos.trim_end_matches('0');
    let mut stamp = now.format("%Y%m%d-%H%M%S").to_string();
    if !nanos.is_empty() {
        stamp = format!("{stamp}-{nanos}");
    }
    let dst = dir.join(format!("{prefix}-{stamp}.tgz"));
    out.line(format!(
        "Downloading resource '{}' to '{}'...",
        logs.blobstore_id,
        dst.display()
    ));
    let (_, bytes) = client.request_bytes(
        Method::GET,
        &format!("/resources/{}", logs.blobstore_id),
        ReqBody::Empty,
        &[],
    )?;
    if !logs.sha1.is_empty() {
        let digest = bosh_types::digest::DigestString::parse(&logs.sha1)?;
        digest.verify_bytes(&bytes)?;
    }
    std::fs::write(&dst, &bytes).context("Moving to final destination")?;
    Ok(())
}
