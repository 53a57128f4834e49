//! `deploy`, `instances`, `vms` and `variables`: the deployment commands of the official CLI
//! (`director-api.md` §5.3, §5.5, §5.6), with its flags, query parameters and table layouts.

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::{Out, Session, confirm, form_escape, task_track};
use crate::GlobalOpts;
use crate::cmd::interpolate::{TemplateFlags, ops_read, read_manifest, var_sources};
use crate::director::{DirectorClient, DirectorError, ReqBody};
use crate::ui::{Table, TableOptions};

#[derive(clap::Subcommand, Debug)]
pub enum DeployCommand {
    /// Update deployment
    #[command(name = "deploy", visible_alias = "d")]
    Deploy(Box<DeployArgs>),
    /// List all instances in a deployment
    #[command(name = "instances", visible_alias = "is")]
    Instances {
        /// Show details including VM CID, persistent disk CID, etc.
        #[arg(short = 'i', long = "details")]
        details: bool,
        /// Show DNS A records
        #[arg(long = "dns")]
        dns: bool,
        /// Show vitals
        #[arg(long = "vitals")]
        vitals: bool,
        /// Show processes
        #[arg(short = 'p', long = "ps")]
        ps: bool,
        /// Only show failing instances
        #[arg(short = 'f', long = "failing")]
        failing: bool,
    },
    /// List all VMs in all deployments
    #[command(name = "vms")]
    Vms {
        /// Show details including VM CID, persistent disk CID, etc.
        #[arg(short = 'i', long = "details")]
        details: bool,
        /// Show DNS A records
        #[arg(long = "dns")]
        dns: bool,
        /// Show vitals
        #[arg(long = "vitals")]
        vitals: bool,
    },
    /// List variables
    #[command(name = "variables", visible_alias = "vars")]
    Variables,
}

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Path to a manifest file
    #[arg(value_name = "PATH")]
    manifest: String,
    #[command(flatten)]
    template: TemplateFlags,
    /// Don't redact manifest diff
    #[arg(long = "no-redact")]
    no_redact: bool,
    /// Recreate all VMs in deployment
    #[arg(long)]
    recreate: bool,
    /// Recreate all persistent disks in deployment
    #[arg(long = "recreate-persistent-disks")]
    recreate_persistent_disks: bool,
    /// Fix unresponsive VMs
    #[arg(long)]
    fix: bool,
    /// Skip running drain and pre-stop scripts for specific instance groups
    #[arg(long = "skip-drain", value_name = "INSTANCE-GROUP", num_args = 0..=1, require_equals = true, default_missing_value = "*")]
    skip_drain: Vec<String>,
    /// Override manifest values for canaries
    #[arg(long)]
    canaries: Option<String>,
    /// Override manifest values for max_in_flight
    #[arg(long = "max-in-flight")]
    max_in_flight: Option<String>,
    /// Renders job templates without altering deployment
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Retrieve the latest variable values from the config server
    #[arg(long = "force-latest-variables")]
    force_latest_variables: bool,
}

pub fn run(cmd: DeployCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        DeployCommand::Deploy(args) => deploy(out, global, *args),
        DeployCommand::Instances {
            details,
            dns,
            vitals,
            ps,
            failing,
        } => {
            let columns = Columns {
                processes: ps,
                vm_details: false,
                details,
                dns,
                vitals,
            };
            listing(out, global, Listing::Instances { failing }, &columns)
        }
        DeployCommand::Vms {
            details,
            dns,
            vitals,
        } => {
            let columns = Columns {
                processes: false,
                vm_details: true,
                details,
                dns,
                vitals,
            };
            listing(out, global, Listing::Vms, &columns)
        }
        DeployCommand::Variables => variables(out, global),
    }
}

// ---------------------------------------------------------------------------------------
// deploy

#[derive(Debug, Deserialize)]
struct ManifestDiff {
    #[serde(default)]
    context: serde_json::Value,
    #[serde(default)]
    diff: Vec<(serde_json::Value, serde_json::Value)>,
    #[serde(default)]
    error: Option<String>,
}

fn deploy(out: &mut Out, global: &GlobalOpts, args: DeployArgs) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;

    let raw = read_manifest(&args.manifest)?;
    let sources = var_sources(&args.template)?;
    let op = ops_read(&args.template)?;
    let manifest =
        bosh_interpolate::template::evaluate(&raw, &sources, Some(&op), &Default::default())
            .context("Evaluating manifest")?;
    let name = manifest_name(&manifest).context("Parsing manifest")?;
    if name != dep {
        bail!("Expected manifest to specify deployment name '{dep}' but was '{name}'");
    }

    let redact = if args.no_redact { "false" } else { "true" };
    let diff: ManifestDiff = client
        .send_json(
            Method::POST,
            &format!("/deployments/{dep}/diff?redact={redact}"),
            ReqBody::Bytes(manifest.clone().into_bytes(), "text/yaml".into()),
        )
        .context("Fetching diff result")
        .context("Diffing manifest")?;
    if let Some(error) = diff.error.as_deref().filter(|e| !e.is_empty()) {
        out.line(format!("Error computing the diff: {error}"));
    }
    let lines: Vec<String> = diff
        .diff
        .iter()
        .map(|(text, status)| {
            let text = text.as_str().unwrap_or_default();
            match status.as_str() {
                Some("added") => format!("+ {text}"),
                Some("removed") => format!("- {text}"),
                _ => format!("  {text}"),
            }
        })
        .collect();
    if !lines.is_empty() {
        out.raw(&(lines.join("\n") + "\n"));
    }
    confirm(out, global)?;

    let mut query: Vec<(&str, String)> = Vec::new();
    if args.recreate {
        query.push(("recreate", "true".into()));
    }
    if args.recreate_persistent_disks {
        query.push(("recreate_persistent_disks", "true".into()));
    }
    if args.fix {
        query.push(("fix", "true".into()));
    }
    if !args.skip_drain.is_empty() {
        query.push(("skip_drain", args.skip_drain.join(",")));
    }
    if let Some(c) = &args.canaries {
        query.push(("canaries", c.clone()));
    }
    if let Some(m) = &args.max_in_flight {
        query.push(("max_in_flight", m.clone()));
    }
    if args.dry_run {
        query.push(("dry_run", "true".into()));
    }
    if args.force_latest_variables {
        query.push(("force_latest_variables", "true".into()));
    }
    let context_set = diff.context.as_object().is_some_and(|o| !o.is_empty());
    if context_set {
        query.push(("context", diff.context.to_string()));
    }
    // Go's url.Values encoding: keys sorted.
    query.sort_by(|a, b| a.0.cmp(b.0));
    let qs = query
        .iter()
        .map(|(k, v)| format!("{k}={}", form_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
    let task = client
        .task_start(
            Method::POST,
            &format!("/deployments?{qs}"),
            ReqBody::Bytes(manifest.into_bytes(), "text/yaml".into()),
        )
        .context("Updating deployment")?;
    task_track(out, &client, &task, true).context("Updating deployment")
}

/// The `name` of a manifest, as the official CLI checks it against `-d`.
fn manifest_name(manifest: &str) -> anyhow::Result<String> {
    let doc = bosh_yaml::parse(manifest)?;
    Ok(doc
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned())
}

// ---------------------------------------------------------------------------------------
// instances / vms

enum Listing {
    Instances { failing: bool },
    Vms,
}

/// Which column groups the table shows (the official CLI's `InstanceTable`).
struct Columns {
    processes: bool,
    vm_details: bool,
    details: bool,
    dns: bool,
    vitals: bool,
}

/// One line of the result output of `GET .../instances?format=full` or `.../vms?format=full`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VmInfo {
    agent_id: Option<String>,
    job_name: Option<String>,
    id: Option<String>,
    index: Option<i64>,
    job_state: Option<String>,
    state: Option<String>,
    bootstrap: bool,
    ignore: bool,
    ips: Vec<String>,
    dns: Vec<String>,
    az: Option<String>,
    vm_cid: Option<String>,
    vm_type: Option<String>,
    resource_pool: Option<String>,
    disk_cids: Vec<String>,
    resurrection_paused: bool,
    processes: Vec<ProcessInfo>,
    vitals: Vitals,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessInfo {
    name: String,
    state: String,
    uptime: Uptime,
    mem: ProcessMem,
    cpu: ProcessCpu,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Uptime {
    secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessMem {
    kb: Option<u64>,
    percent: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessCpu {
    total: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Vitals {
    cpu: VitalsCpu,
    mem: MemSize,
    swap: MemSize,
    load: Vec<String>,
    disk: BTreeMap<String, DiskSize>,
    uptime: Uptime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VitalsCpu {
    sys: String,
    user: String,
    wait: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MemSize {
    kb: String,
    percent: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DiskSize {
    percent: String,
    inode_percent: String,
}

impl VmInfo {
    fn is_running(&self) -> bool {
        self.job_state.as_deref() == Some("running")
    }

    fn name(&self) -> String {
        let mut name = self
            .job_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "?".into());
        if let Some(id) = self.id.as_deref().filter(|i| !i.is_empty()) {
            name = format!("{name}/{id}");
        }
        name
    }
}

fn listing(
    out: &mut Out,
    global: &GlobalOpts,
    what: Listing,
    columns: &Columns,
) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let deployments: Vec<String> = match &global.deployment {
        Some(_) => vec![sess.deployment(out)?],
        None => client
            .get_json::<Vec<crate::director::Deployment>>("/deployments")
            .context("Finding deployments")?
            .into_iter()
            .map(|d| d.name)
            .collect(),
    };
    for dep in deployments {
        let (path, content) = match what {
            Listing::Instances { .. } => ("instances", "instances"),
            Listing::Vms => ("vms", "vms"),
        };
        let infos = infos_fetch(&client, &dep, path)
            .with_context(|| format!("Listing {path} of deployment '{dep}'"))?;
        let failing = matches!(what, Listing::Instances { failing: true });
        let mut rows = Vec::new();
        for info in &infos {
            if failing && info.is_running() {
                continue;
            }
            rows.push(vm_row(info, columns));
            if columns.processes {
                for p in &info.processes {
                    if failing && p.state == "running" {
                        continue;
                    }
                    rows.push(process_row(info, p, columns));
                }
            }
        }
        let table = Table {
            content: content.into(),
            header: header(columns),
            rows,
            notes: vec![],
        };
        out.line(format!("Deployment '{dep}'"));
        out.table(
            &table,
            &TableOptions {
                sort_by: if columns.processes {
                    vec![(0, true), (1, true)]
                } else {
                    vec![(0, true)]
                },
                ..TableOptions::default()
            },
        );
    }
    Ok(())
}

/// The instances/VMs of one deployment: a GET task endpoint whose result is JSON lines.
fn infos_fetch(client: &DirectorClient, dep: &str, what: &str) -> anyhow::Result<Vec<VmInfo>> {
    let task = client.task_start(
        Method::GET,
        &format!("/deployments/{dep}/{what}?format=full"),
        ReqBody::Empty,
    )?;
    let task = client.task_follow(task.id, "event", &mut |_| {})?;
    if task.state != "done" {
        return Err(DirectorError::TaskFailed {
            id: task.id,
            state: task.state,
        }
        .into());
    }
    let result = client.task_result(task.id)?;
    let mut infos = Vec::new();
    for (n, line) in String::from_utf8_lossy(&result).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let info: VmInfo = serde_json::from_str(line)
            .with_context(|| format!("Unmarshaling line {} of the task result", n + 1))?;
        infos.push(info);
    }
    Ok(infos)
}

fn header(c: &Columns) -> Vec<String> {
    let mut h = vec!["Instance"];
    if c.processes {
        h.push("Process");
    }
    h.extend(["Process State", "AZ", "IPs"]);
    if c.details {
        h.extend([
            "State",
            "VM CID",
            "VM Type",
            "Disk CIDs",
            "Agent ID",
            "Index",
            "Resurrection\nPaused",
            "Bootstrap",
            "Ignore",
        ]);
    } else if c.vm_details {
        h.extend(["VM CID", "VM Type"]);
    }
    if c.dns {
        h.push("DNS A Records");
    }
    if c.vitals {
        h.extend([
            "Uptime",
            "Load\n(1m, 5m, 15m)",
            "CPU\nTotal",
            "CPU\nUser",
            "CPU\nSys",
            "CPU\nWait",
            "Memory\nUsage",
            "Swap\nUsage",
            "System\nDisk Usage",
            "Ephemeral\nDisk Usage",
            "Persistent\nDisk Usage",
        ]);
    }
    h.into_iter().map(String::from).collect()
}

fn vm_row(i: &VmInfo, c: &Columns) -> Vec<String> {
    let mut row = vec![i.name()];
    if c.processes {
        row.push(String::new());
    }
    row.push(i.job_state.clone().unwrap_or_default());
    row.push(i.az.clone().unwrap_or_default());
    row.push(i.ips.join("\n"));
    let vm_type = i
        .vm_type
        .clone()
        .filter(|t| !t.is_empty())
        .or_else(|| i.resource_pool.clone())
        .unwrap_or_default();
    if c.details {
        row.extend([
            i.state.clone().unwrap_or_default(),
            i.vm_cid.clone().unwrap_or_default(),
            vm_type,
            i.disk_cids.join("\n"),
            i.agent_id.clone().unwrap_or_default(),
            i.index.map(|n| n.to_string()).unwrap_or_default(),
            i.resurrection_paused.to_string(),
            i.bootstrap.to_string(),
            i.ignore.to_string(),
        ]);
    } else if c.vm_details {
        row.extend([i.vm_cid.clone().unwrap_or_default(), vm_type]);
    }
    if c.dns {
        row.push(i.dns.join("\n"));
    }
    if c.vitals {
        let v = &i.vitals;
        let disk = |k: &str| v.disk.get(k).map(disk_size).unwrap_or_default();
        row.extend([
            uptime(v.uptime.secs),
            v.load.join(", "),
            String::new(),
            percent(&v.cpu.user),
            percent(&v.cpu.sys),
            percent(&v.cpu.wait),
            mem_size(&v.mem),
            mem_size(&v.swap),
            disk("system"),
            disk("ephemeral"),
            disk("persistent"),
        ]);
    }
    row
}

fn process_row(i: &VmInfo, p: &ProcessInfo, c: &Columns) -> Vec<String> {
    // Process rows sort under their instance: the same first column, the process name
    // after the instance's own (empty) one.
    let mut row = vec![
        i.name(),
        p.name.clone(),
        p.state.clone(),
        String::new(),
        String::new(),
    ];
    if c.details {
        row.extend(std::iter::repeat_n(String::new(), 9));
    } else if c.vm_details {
        row.extend([String::new(), String::new()]);
    }
    if c.dns {
        row.push(String::new());
    }
    if c.vitals {
        let mem = match (p.mem.percent, p.mem.kb) {
            (Some(pct), Some(kb)) => format!("{pct:.1}% ({})", bytes_si(kb * 1000)),
            _ => String::new(),
        };
        row.extend([
            uptime(p.uptime.secs),
            String::new(),
            p.cpu.total.map(|t| format!("{t:.1}%")).unwrap_or_default(),
            String::new(),
            String::new(),
            String::new(),
            mem,
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    row
}

fn uptime(secs: Option<u64>) -> String {
    match secs {
        Some(s) => format!(
            "{}d {}h {}m {}s",
            s / 86_400,
            s / 3_600 % 24,
            s / 60 % 60,
            s % 60
        ),
        None => String::new(),
    }
}

fn percent(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        format!("{value}%")
    }
}

fn mem_size(m: &MemSize) -> String {
    if m.percent.is_empty() || m.kb.is_empty() {
        return String::new();
    }
    match m.kb.parse::<u64>() {
        Ok(kb) => format!("{}% ({})", m.percent, bytes_si(kb * 1000)),
        Err(_) => String::new(),
    }
}

fn disk_size(d: &DiskSize) -> String {
    if d.percent.is_empty() || d.inode_percent.is_empty() {
        String::new()
    } else {
        format!("{}% ({}i%)", d.percent, d.inode_percent)
    }
}

/// Sizes in SI units with one decimal below 10, as the official CLI's humanize.Bytes.
fn bytes_si(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

// ---------------------------------------------------------------------------------------
// variables

#[derive(Debug, Deserialize)]
struct Variable {
    id: String,
    name: String,
}

fn variables(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    let vars: Vec<Variable> = client
        .get_json(&format!("/deployments/{dep}/variables"))
        .context("Listing variables")?;
    let rows = vars.into_iter().map(|v| vec![v.id, v.name]).collect();
    out.table(
        &Table {
            content: "variables".into(),
            header: vec!["ID".into(), "Name".into()],
            rows,
            notes: vec![],
        },
        &TableOptions {
            sort_by: vec![(1, true)],
            ..TableOptions::default()
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_humanize() {
        assert_eq!(bytes_si(5), "5 B");
        assert_eq!(bytes_si(1_500), "1.5 kB");
        assert_eq!(bytes_si(12_345_678), "12 MB");
        assert_eq!(bytes_si(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn uptime_splits_days_hours_minutes() {
        assert_eq!(uptime(Some(90_061)), "1d 1h 1m 1s");
        assert_eq!(uptime(None), "");
    }

    #[test]
    fn vitals_strings_and_process_numbers_decode() {
        let line = r#"{"agent_id":"a","job_name":"web","id":"u1","index":0,"job_state":"running","state":"started","bootstrap":true,"ignore":false,"ips":["10.0.0.2"],"az":"z1","vm_cid":"vm-1","vm_type":"small","disk_cids":[],"vm_created_at":null,"cloud_properties":{},"stemcell":{"name":"s","version":"1","api_version":2},"processes":[{"name":"greeterd","state":"running","uptime":{"secs":5},"mem":{"kb":1024,"percent":0.1},"cpu":{"total":0.5}}],"vitals":{"cpu":{"sys":"1.0","user":"2.0","wait":"0.0"},"mem":{"kb":"2048","percent":"10"},"swap":{"kb":"0","percent":"0"},"load":["0.1","0.2","0.3"],"disk":{"system":{"percent":"40","inode_percent":"10"}},"uptime":{"secs":61}}}"#;
        let info: VmInfo = serde_json::from_str(line).unwrap();
        let cols = Columns {
            processes: true,
            vm_details: false,
            details: false,
            dns: false,
            vitals: true,
        };
        let row = vm_row(&info, &cols);
        assert_eq!(row[0], "web/u1");
        assert_eq!(row.len(), header(&cols).len());
        assert!(row.contains(&"10% (2.0 MB)".to_string()), "{row:?}");
        assert!(row.contains(&"40% (10i%)".to_string()), "{row:?}");
        let prow = process_row(&info, &info.processes[0], &cols);
        assert_eq!(prow.len(), row.len());
        assert!(prow.contains(&"0.5%".to_string()));
    }
}
