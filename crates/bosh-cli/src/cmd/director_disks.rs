//! Day-2 commands: disks, orphaned VMs, clean-up and cancelling tasks (director-api.md
//! §5.11, §3.6). Flags, tables and messages follow the official CLI (cmd/disks.go,
//! delete_disk.go, orphan_disk.go, attach_disk.go, orphaned_vms.go, clean_up.go,
//! cancel_tasks.go).

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{Out, Session, confirm, form_escape, task_track};
use crate::GlobalOpts;
use crate::director::reporter::time_full;
use crate::director::{DirectorClient, ReqBody};
use crate::ui::{Table, TableOptions};

#[derive(clap::Subcommand, Debug)]
pub enum DisksCommand {
    /// List disks
    #[command(name = "disks")]
    Disks {
        /// List orphaned disks
        #[arg(short = 'o', long = "orphaned")]
        orphaned: bool,
    },
    /// Attach disk to an instance
    #[command(name = "attach-disk")]
    AttachDisk {
        #[arg(value_name = "INSTANCE-GROUP/INSTANCE-ID")]
        instance: String,
        #[arg(value_name = "DISK-CID")]
        disk_cid: String,
        /// Disk properties to use for the new disk. Use 'copy' to copy the properties from
        /// the currently attached disk
        #[arg(long = "disk-properties")]
        disk_properties: Option<String>,
    },
    /// Delete disk
    #[command(name = "delete-disk")]
    DeleteDisk {
        #[arg(value_name = "CID")]
        cid: String,
    },
    /// Orphan disk
    #[command(name = "orphan-disk")]
    OrphanDisk {
        #[arg(value_name = "CID")]
        cid: String,
    },
    /// List all the orphaned VMs in all deployments
    #[command(name = "orphaned-vms")]
    OrphanedVms,
    /// Clean up old unused resources except orphaned disks
    #[command(name = "clean-up")]
    CleanUp {
        /// Clean up all unused resources including all orphaned disks
        #[arg(long = "all")]
        all: bool,
        /// Print out the resources that will be deleted but does not delete anything
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Keep orphaned disks even with '--all'
        #[arg(long = "keep-orphaned-disks")]
        keep_orphaned_disks: bool,
    },
    /// Cancel tasks at their next checkpoints
    #[command(name = "cancel-tasks", visible_alias = "cts")]
    CancelTasks {
        /// task types to cancel (cck_scan_and_fix, cck_apply, update_release,
        /// update_deployment, vms, etc) (default is all types)
        #[arg(short = 't', long = "type")]
        types: Vec<String>,
        /// task states to cancel (queued, processing) (default: queued)
        #[arg(short = 's', long = "state")]
        states: Vec<String>,
    },
}

pub fn run(cmd: DisksCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        DisksCommand::Disks { orphaned } => disks(out, global, orphaned),
        DisksCommand::AttachDisk {
            instance,
            disk_cid,
            disk_properties,
        } => attach_disk(
            out,
            global,
            &instance,
            &disk_cid,
            disk_properties.as_deref(),
        ),
        DisksCommand::DeleteDisk { cid } => delete_disk(out, global, &cid),
        DisksCommand::OrphanDisk { cid } => orphan_disk(out, global, &cid),
        DisksCommand::OrphanedVms => orphaned_vms(out, global),
        DisksCommand::CleanUp {
            all,
            dry_run,
            keep_orphaned_disks,
        } => clean_up(out, global, all, dry_run, keep_orphaned_disks),
        DisksCommand::CancelTasks { types, states } => cancel_tasks(out, global, types, states),
    }
}

#[derive(Debug, Deserialize)]
struct OrphanDisk {
    disk_cid: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    deployment_name: String,
    #[serde(default)]
    instance_name: String,
    #[serde(default)]
    az: Option<String>,
    #[serde(default)]
    orphaned_at: String,
}

/// Times the director sends: `2016-01-09 06:23:25 +0000`, `… UTC` or RFC 3339, as Unix
/// seconds.
fn director_time(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S %z") {
        return Ok(d.timestamp());
    }
    if let Some(naive) = t.strip_suffix(" UTC")
        && let Ok(d) = chrono::NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S")
    {
        return Ok(d.and_utc().timestamp());
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp())
        .with_context(|| format!("Converting orphaned at '{text}' to time"))
}

/// Sizes in IEC units as Go's humanize.IBytes (the official CLI's `NewValueMegaBytes`).
fn bytes_iec(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let e = ((n as f64).ln() / 1024f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64) / 1024f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

fn orphan_disks_fetch(client: &DirectorClient) -> anyhow::Result<Vec<OrphanDisk>> {
    client.get_json("/disks").context("Finding orphaned disks")
}

fn disks(out: &mut Out, global: &GlobalOpts, orphaned: bool) -> anyhow::Result<()> {
    if !orphaned {
        bail!("Only --orphaned is supported");
    }
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let mut list = Vec::new();
    for d in orphan_disks_fetch(&client)? {
        let at = director_time(&d.orphaned_at)?;
        list.push((at, d));
    }
    // The official CLI sorts by "Orphaned At", newest first.
    list.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let rows = list
        .into_iter()
        .map(|(at, d)| {
            vec![
                d.disk_cid,
                bytes_iec(d.size.saturating_mul(1024 * 1024)),
                d.deployment_name,
                d.instance_name,
                d.az.unwrap_or_default(),
                time_full(at),
            ]
        })
        .collect();
    let table = Table {
        content: "disks".into(),
        header: [
            "Disk CID",
            "Size",
            "Deployment",
            "Instance",
            "AZ",
            "Orphaned At",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![],
    };
    out.table(&table, &TableOptions::default());
    Ok(())
}

/// `group/id` or `group/index`, as the official CLI's `InstanceSlug`.
fn instance_slug(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('/') {
        Some((group, id)) if !group.is_empty() && !id.is_empty() && !id.contains('/') => {
            Ok((group.to_owned(), id.to_owned()))
        }
        _ => bail!("Expected instance '{text}' to be in format 'name/id-or-index'"),
    }
}

fn attach_disk(
    out: &mut Out,
    global: &GlobalOpts,
    instance: &str,
    cid: &str,
    disk_properties: Option<&str>,
) -> anyhow::Result<()> {
    let (group, id) = instance_slug(instance)?;
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    // Go's url.Values.Encode: keys sorted.
    let mut query = vec![
        ("deployment", form_escape(&dep)),
        ("instance_id", form_escape(&id)),
        ("job", form_escape(&group)),
    ];
    if let Some(p) = disk_properties.filter(|p| !p.is_empty()) {
        query.push(("disk_properties", form_escape(p)));
    }
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = format!(
        "/disks/{}/attachments?{}",
        crate::director::artifacts::path_escape(cid),
        query.join("&")
    );
    let task = client.task_start(Method::PUT, &path, ReqBody::Empty)?;
    task_track(out, &client, &task, true)
}

fn delete_disk(out: &mut Out, global: &GlobalOpts, cid: &str) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    confirm(out, global)?;
    if cid.is_empty() {
        bail!("Expected non-empty orphaned disk CID");
    }
    let path = format!("/disks/{}", crate::director::artifacts::path_escape(cid));
    let res = client
        .task_start(Method::DELETE, &path, ReqBody::Empty)
        .map_err(anyhow::Error::from)
        .and_then(|t| task_track(out, &client, &t, true))
        .with_context(|| format!("Deleting orphaned disk '{cid}'"));
    if let Err(e) = res {
        // Gone anyway: the official CLI counts that as success.
        let still_there = orphan_disks_fetch(&client)
            .map(|l| l.iter().any(|d| d.disk_cid == cid))
            .unwrap_or(true);
        if still_there {
            return Err(e);
        }
    }
    Ok(())
}

fn orphan_disk(out: &mut Out, global: &GlobalOpts, cid: &str) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    confirm(out, global)?;
    if cid.is_empty() {
        bail!("Expected non-empty disk CID");
    }
    let path = format!(
        "/disks/{}?orphan=true",
        crate::director::artifacts::path_escape(cid)
    );
    client
        .task_start(Method::DELETE, &path, ReqBody::Empty)
        .map_err(anyhow::Error::from)
        .and_then(|t| task_track(out, &client, &t, true))
        .with_context(|| format!("Orphaning disk '{cid}'"))
}

#[derive(Debug, Deserialize)]
struct OrphanedVm {
    cid: String,
    #[serde(default)]
    deployment_name: String,
    #[serde(default)]
    instance_name: String,
    #[serde(default)]
    az: Option<String>,
    #[serde(default)]
    ip_addresses: Vec<String>,
    #[serde(default)]
    orphaned_at: String,
}

fn orphaned_vms(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let list: Vec<OrphanedVm> = client
        .get_json("/orphaned_vms")
        .context("Finding orphaned VMs")?;
    let mut rows = Vec::new();
    for vm in list {
        let at = director_time(&vm.orphaned_at)?;
        rows.push((
            at,
            vec![
                vm.cid,
                vm.deployment_name,
                vm.instance_name,
                vm.az.unwrap_or_default(),
                vm.ip_addresses.join("\n"),
                time_full(at),
            ],
        ));
    }
    rows.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let table = Table {
        content: "orphaned_vms".into(),
        header: [
            "VM CID",
            "Deployment",
            "Instance",
            "AZ",
            "IPs",
            "Orphaned At",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        notes: vec![],
    };
    out.table(&table, &TableOptions::default());
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct CleanableRelease {
    name: String,
    #[serde(default)]
    versions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CleanableStemcell {
    name: String,
    version: String,
}

#[derive(Debug, Default, Deserialize)]
struct CleanableCompiledPackage {
    package_name: String,
    stemcell_os: String,
    stemcell_version: String,
}

#[derive(Debug, Default, Deserialize)]
struct CleanUpResponse {
    #[serde(default)]
    releases: Option<Vec<CleanableRelease>>,
    #[serde(default)]
    stemcells: Option<Vec<CleanableStemcell>>,
    #[serde(default)]
    compiled_packages: Option<Vec<CleanableCompiledPackage>>,
    #[serde(default)]
    orphaned_disks: Option<Vec<OrphanDisk>>,
    #[serde(default)]
    orphaned_vms: Option<Vec<OrphanedVm>>,
    #[serde(default)]
    exported_releases: Option<Vec<String>>,
    #[serde(default)]
    dns_blobs: Option<Vec<String>>,
}

/// The dry run's tables, in the official CLI's order: each has a title and no count line.
fn clean_up_tables(resp: CleanUpResponse) -> Vec<(&'static str, Table)> {
    let table = |header: &[&str], rows: Vec<Vec<String>>| Table {
        content: String::new(),
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
        notes: vec![],
    };
    let strings = |items: Option<Vec<String>>| -> Vec<Vec<String>> {
        items
            .unwrap_or_default()
            .into_iter()
            .map(|s| vec![s])
            .collect()
    };
    let releases = resp
        .releases
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| {
            let name = r.name;
            r.versions.into_iter().map(move |v| vec![name.clone(), v])
        })
        .collect();
    let stemcells = resp
        .stemcells
        .unwrap_or_default()
        .into_iter()
        .map(|s| vec![s.name, s.version])
        .collect();
    let packages = resp
        .compiled_packages
        .unwrap_or_default()
        .into_iter()
        .map(|p| vec![p.package_name, p.stemcell_os, p.stemcell_version])
        .collect();
    let disks = resp
        .orphaned_disks
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            vec![
                d.disk_cid,
                d.deployment_name,
                d.instance_name,
                d.size.to_string(),
            ]
        })
        .collect();
    let vms = resp
        .orphaned_vms
        .unwrap_or_default()
        .into_iter()
        .map(|v| vec![v.cid, v.deployment_name, v.instance_name])
        .collect();
    vec![
        ("Unused Releases", table(&["Name", "Version"], releases)),
        ("Unused Stemcells", table(&["Name", "Version"], stemcells)),
        (
            "Unused Compiled Packages",
            table(&["Name", "Stemcell OS", "Stemcell Version"], packages),
        ),
        (
            "Exported Releases",
            table(&["Blob ID"], strings(resp.exported_releases)),
        ),
        (
            "Stale DNS Record Blobs",
            table(&["Blob ID"], strings(resp.dns_blobs)),
        ),
        (
            "Orphaned Disks",
            table(&["Disk CID", "Deployment", "Instance", "Size (mb)"], disks),
        ),
        (
            "Orphaned VMs",
            table(&["VM CID", "Deployment", "Instance"], vms),
        ),
    ]
}

fn clean_up(
    out: &mut Out,
    global: &GlobalOpts,
    all: bool,
    dry_run: bool,
    keep_orphaned_disks: bool,
) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    if dry_run {
        let path =
            format!("/cleanup/dryrun?keep_orphaned_disks={keep_orphaned_disks}&remove_all={all}");
        let resp: CleanUpResponse = client.get_json(&path).context("Cleaning up resources")?;
        let opts = TableOptions {
            sort_by: vec![(0, true)],
            ..TableOptions::default()
        };
        for (i, (title, table)) in clean_up_tables(resp).into_iter().enumerate() {
            // A titled table prints its title and a blank line first; tables are separated
            // by a blank line, as the official CLI's padding does.
            let sep = if i == 0 { "" } else { "\n" };
            out.raw(&format!(
                "{sep}{title}\n\n{}",
                crate::ui::render_table_with(&table, &opts)
            ));
        }
        return Ok(());
    }
    confirm(out, global)?;
    let body = json!({"config": {"remove_all": all, "keep_orphaned_disks": keep_orphaned_disks}});
    client
        .task_start(
            Method::POST,
            "/cleanup",
            ReqBody::Bytes(body.to_string().into_bytes(), "application/json".into()),
        )
        .map_err(anyhow::Error::from)
        .and_then(|t| task_track(out, &client, &t, true))
        .context("Cleaning up resources")
}

fn cancel_tasks(
    out: &mut Out,
    global: &GlobalOpts,
    types: Vec<String>,
    states: Vec<String>,
) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let mut body = serde_json::Map::new();
    if let Some(dep) = global.deployment.as_ref().filter(|d| !d.is_empty()) {
        body.insert("deployment".into(), json!(dep));
    }
    if !states.is_empty() {
        body.insert("states".into(), json!(states));
    }
    if !types.is_empty() {
        body.insert("types".into(), json!(types));
    }
    client
        .request_bytes(
            Method::POST,
            "/tasks/cancel",
            ReqBody::Bytes(
                serde_json::Value::Object(body).to_string().into_bytes(),
                "application/json".into(),
            ),
            &[],
        )
        .context("Cancelling tasks")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_like_go_humanize_ibytes() {
        assert_eq!(bytes_iec(0), "0 B");
        assert_eq!(bytes_iec(1024 * 1024 * 1024), "1.0 GiB");
        assert_eq!(bytes_iec(512 * 1024 * 1024), "512 MiB");
        assert_eq!(bytes_iec(10 * 1024 * 1024 * 1024), "10 GiB");
    }

    #[test]
    fn director_times_parse_in_every_form() {
        let want = 1_452_320_605;
        assert_eq!(director_time("2016-01-09 06:23:25 +0000").unwrap(), want);
        assert_eq!(director_time("2016-01-09 06:23:25 UTC").unwrap(), want);
        assert_eq!(director_time("2016-01-09T06:23:25Z").unwrap(), want);
        assert!(director_time("yesterday").is_err());
    }

    #[test]
    fn instance_slugs_need_a_group_and_an_id() {
        assert_eq!(
            instance_slug("web/abc").unwrap(),
            ("web".to_owned(), "abc".to_owned())
        );
        assert!(instance_slug("web").is_err());
        assert!(instance_slug("/0").is_err());
    }
}
