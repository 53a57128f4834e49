//! Commands that talk to a director: environments and login, tasks, locks, deployments,
//! `curl`, and (in `director_configs.rs`) configs. Names, flags, output and messages follow
//! the official CLI (`director-api.md` §6, §7).

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use std::io::{BufRead, Write};

use crate::GlobalOpts;
use crate::config_file::ConfigFile;
use crate::director::reporter::{Sink, TaskReporter, time_full};
use crate::director::{
    DirectorClient, DirectorConfig, DirectorError, Info, ReqBody, Task, ca_cert_content,
};
use crate::ui::{Table, TableOptions, Ui};

#[path = "director_configs.rs"]
mod configs;

#[path = "director_artifacts.rs"]
mod artifacts;

#[path = "director_deploy.rs"]
mod deploy;

#[path = "director_events.rs"]
mod events;

#[path = "director_cck.rs"]
mod cck;

#[path = "director_instance_ops.rs"]
mod instance_ops;

#[path = "director_disks.rs"]
mod disks;

#[path = "director_logs.rs"]
mod logs;

#[path = "director_errands.rs"]
mod errands;

#[path = "director_resurrection.rs"]
mod resurrection;

#[derive(clap::Subcommand, Debug)]
pub enum DirectorCommand {
    /// Show director details
    #[command(name = "environment", visible_alias = "env")]
    Environment,
    /// List environments
    #[command(name = "environments", visible_alias = "envs")]
    Environments,
    /// Alias environment to save URL and CA certificate
    #[command(name = "alias-env")]
    AliasEnv {
        /// Environment alias
        #[arg(value_name = "ALIAS")]
        alias: String,
    },
    /// Log in
    #[command(name = "log-in", visible_aliases = ["l", "login"])]
    LogIn,
    /// Log out
    #[command(name = "log-out", visible_alias = "logout")]
    LogOut,
    /// List running or recent tasks
    #[command(name = "tasks", visible_alias = "ts")]
    Tasks {
        /// Number of tasks to show
        #[arg(short = 'r', long = "recent", num_args = 0..=1, require_equals = true, default_missing_value = "30")]
        recent: Option<u32>,
        /// Include all task types (ssh, logs, vms, etc)
        #[arg(short = 'a', long = "all")]
        all: bool,
    },
    /// Show task status and start tracking its output
    #[command(name = "task", visible_alias = "t")]
    Task {
        /// Task ID
        #[arg(value_name = "ID")]
        id: Option<i64>,
        /// Track event log
        #[arg(long)]
        event: bool,
        /// Track CPI log
        #[arg(long)]
        cpi: bool,
        /// Track debug log
        #[arg(long)]
        debug: bool,
        /// Track result log
        #[arg(long)]
        result: bool,
        /// Include all task types (ssh, logs, vms, etc)
        #[arg(short = 'a', long = "all")]
        all: bool,
    },
    /// Cancel task at its next checkpoint
    #[command(name = "cancel-task", visible_alias = "ct")]
    CancelTask {
        #[arg(value_name = "ID")]
        id: i64,
    },
    /// List current locks
    #[command(name = "locks")]
    Locks,
    /// List deployments
    #[command(name = "deployments", visible_alias = "ds")]
    Deployments,
    /// Show deployment manifest
    #[command(name = "manifest", visible_alias = "man")]
    Manifest,
    /// Delete deployment
    #[command(name = "delete-deployment", visible_alias = "deld")]
    DeleteDeployment {
        /// Ignore errors
        #[arg(long)]
        force: bool,
    },
    /// Make an HTTP request to the Director
    #[command(name = "curl")]
    Curl {
        /// URL path which can include query string
        #[arg(value_name = "PATH")]
        path: String,
        /// HTTP method
        #[arg(short = 'X', long = "method", default_value = "GET")]
        method: String,
        /// HTTP header in 'name: value' format
        #[arg(short = 'H', long = "header")]
        header: Vec<String>,
        /// HTTP request body (path)
        #[arg(long = "body", value_name = "PATH")]
        body: Option<std::path::PathBuf>,
        /// Show HTTP headers
        #[arg(short = 'i', long = "show-headers")]
        show_headers: bool,
    },
    #[command(flatten)]
    Configs(configs::ConfigCommand),
    #[command(flatten)]
    Artifacts(artifacts::ArtifactCommand),
    #[command(flatten)]
    Deploy(deploy::DeployCommand),
    #[command(flatten)]
    Events(events::EventCommand),
    #[command(flatten)]
    Cck(cck::CckCommand),
    #[command(flatten)]
    InstanceOps(instance_ops::InstanceOpsCommand),
    #[command(flatten)]
    Disks(disks::DisksCommand),
    #[command(flatten)]
    Logs(logs::LogsCommand),
    #[command(flatten)]
    Errands(errands::ErrandsCommand),
    #[command(flatten)]
    Resurrection(resurrection::ResurrectionCommand),
}

pub fn run(cmd: DirectorCommand, global: &GlobalOpts, ui: &mut Ui) -> anyhow::Result<()> {
    let mut out = Out::new(ui);
    match cmd {
        DirectorCommand::Environments => environments(&mut out),
        DirectorCommand::AliasEnv { alias } => alias_env(&mut out, global, &alias),
        DirectorCommand::LogIn => log_in(&mut out, global),
        DirectorCommand::LogOut => log_out(&mut out, global),
        DirectorCommand::Environment => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(&mut out)?;
            let info = client.info().context("Fetching info")?;
            info_table(&mut out, &info);
            Ok(())
        }
        DirectorCommand::Tasks { recent, all } => tasks(&mut out, global, recent, all),
        DirectorCommand::Task {
            id,
            event,
            cpi,
            debug,
            result,
            all,
        } => {
            let kind = match (event, cpi, debug, result) {
                (true, ..) => Some("event"),
                (_, true, ..) => Some("cpi"),
                (_, _, true, _) => Some("debug"),
                (.., true) => Some("result"),
                _ => None,
            };
            task(&mut out, global, id, kind, all)
        }
        DirectorCommand::CancelTask { id } => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(&mut out)?;
            client
                .task(id)
                .with_context(|| format!("Finding task '{id}'"))?;
            client
                .request_bytes(Method::DELETE, &format!("/task/{id}"), ReqBody::Empty, &[])
                .with_context(|| format!("Cancelling task '{id}'"))?;
            Ok(())
        }
        DirectorCommand::Locks => locks(&mut out, global),
        DirectorCommand::Deployments => deployments(&mut out, global),
        DirectorCommand::Manifest => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(&mut out)?;
            let dep = sess.deployment(&mut out)?;
            let m: crate::director::DeploymentManifest = client
                .get_json(&format!("/deployments/{dep}"))
                .context("Fetching manifest")?;
            out.raw(&m.manifest);
            Ok(())
        }
        DirectorCommand::DeleteDeployment { force } => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(&mut out)?;
            let dep = sess.deployment(&mut out)?;
            confirm(&mut out, global)?;
            let path = if force {
                format!("/deployments/{dep}?force=true")
            } else {
                format!("/deployments/{dep}?")
            };
            let res = client
                .task_start(Method::DELETE, &path, ReqBody::Empty)
                .map_err(anyhow::Error::from)
                .and_then(|t| task_track(&mut out, &client, &t, true));
            if let Err(e) = res {
                // Gone anyway: the official CLI counts that as success.
                let still_there = client
                    .get_json::<Vec<crate::director::Deployment>>("/deployments")
                    .map(|ds| ds.iter().any(|d| d.name == dep))
                    .unwrap_or(true);
                if still_there {
                    return Err(e).with_context(|| format!("Deleting deployment '{dep}'"));
                }
            }
            Ok(())
        }
        DirectorCommand::Curl {
            path,
            method,
            header,
            body,
            show_headers,
        } => curl(
            &mut out,
            global,
            &path,
            &method,
            &header,
            body,
            show_headers,
        ),
        DirectorCommand::Configs(c) => configs::run(c, global, &mut out),
        DirectorCommand::Artifacts(c) => artifacts::run(c, global, &mut out),
        DirectorCommand::Deploy(c) => deploy::run(c, global, &mut out),
        DirectorCommand::Events(c) => events::run(c, global, &mut out),
        DirectorCommand::Cck(c) => cck::run(c, global, &mut out),
        DirectorCommand::InstanceOps(c) => instance_ops::run(c, global, &mut out),
        DirectorCommand::Disks(c) => disks::run(c, global, &mut out),
        DirectorCommand::Logs(c) => logs::run(c, global, &mut out),
        DirectorCommand::Errands(c) => errands::run(c, global, &mut out),
        DirectorCommand::Resurrection(c) => resurrection::run(c, global, &mut out),
    }
}

// ---------------------------------------------------------------------------------------
// Output with the official CLI's padding: a blank line between outputs of different kinds.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    None,
    Auto,
    Raw,
    Table,
}

pub struct Out<'a> {
    ui: &'a mut Ui,
    prev: Mode,
}

impl<'a> Out<'a> {
    fn new(ui: &'a mut Ui) -> Out<'a> {
        Out {
            ui,
            prev: Mode::None,
        }
    }

    pub fn line(&mut self, text: impl Into<String>) {
        if !self.ui.is_json() && matches!(self.prev, Mode::Auto | Mode::Raw) {
            self.ui.line("");
        }
        self.ui.line(text);
        self.prev = Mode::Auto;
    }

    pub fn raw(&mut self, text: &str) {
        if !self.ui.is_json() && self.prev == Mode::Auto {
            self.ui.line("");
        }
        self.ui.block(text);
        self.prev = Mode::Raw;
    }

    pub fn table(&mut self, table: &Table, opts: &TableOptions) {
        self.ui.table_with(table, opts);
        self.prev = Mode::Table;
    }
}

impl Sink for Out<'_> {
    fn raw(&mut self, text: &str) {
        Out::raw(self, text);
    }
}

/// `Continue? [yN]:`; `-n` answers yes.
pub fn confirm(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    if global.non_interactive {
        return Ok(());
    }
    out.raw("Continue? [yN]: ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("Asking for confirmation")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("Stopped"),
    }
}

// ---------------------------------------------------------------------------------------
// Session: which director, with which CA and credentials.

pub struct Session {
    /// The environment as the config names it (its URL), or as typed.
    environment: String,
    config: ConfigFile,
    ca_cert: String,
    client: String,
    client_secret: String,
    deployment: Option<String>,
}

impl Session {
    pub fn new(global: &GlobalOpts) -> anyhow::Result<Session> {
        let config = ConfigFile::load_default()?;
        let typed = global.environment.clone().unwrap_or_default();
        if typed.is_empty() {
            return Err(DirectorError::EmptyUrl.into());
        }
        let saved = config.find(&typed).cloned().unwrap_or_default();
        let environment = if saved.url.is_empty() {
            typed
        } else {
            saved.url.clone()
        };
        let ca_cert = match &global.ca_cert {
            Some(v) if !v.is_empty() => ca_cert_content(v)?,
            _ => saved.ca_cert.clone(),
        };
        let (client, client_secret) = match &global.client {
            Some(c) if !c.is_empty() => {
                (c.clone(), global.client_secret.clone().unwrap_or_default())
            }
            _ => (saved.username.clone(), saved.password.clone()),
        };
        Ok(Session {
            environment,
            config,
            ca_cert,
            client,
            client_secret,
            deployment: global.deployment.clone().filter(|d| !d.is_empty()),
        })
    }

    fn client_with(&self, client: &str, secret: &str) -> anyhow::Result<DirectorClient> {
        Ok(DirectorClient::new(&DirectorConfig {
            url: self.environment.clone(),
            ca_cert: self.ca_cert.clone(),
            client: client.to_string(),
            client_secret: secret.to_string(),
        })?)
    }

    fn creds_description(&self) -> String {
        if self.client.is_empty() {
            "anonymous user".to_string()
        } else {
            format!("client '{}'", self.client)
        }
    }

    /// The anonymous `/info` every command starts with, then the authenticated client.
    pub fn director(&self, out: &mut Out) -> anyhow::Result<(DirectorClient, Info)> {
        let client = self.client_with(&self.client, &self.client_secret)?;
        let info = client.anonymous().info().context("Fetching info")?;
        if info.user_authentication.kind == "uaa" {
            bail!("UAA authentication is not supported by bosh-rs yet");
        }
        out.line(format!(
            "Using environment '{}' as {}",
            self.environment,
            self.creds_description()
        ));
        Ok((client, info))
    }

    /// `-d`, printed as the official CLI does.
    pub fn deployment(&self, out: &mut Out) -> anyhow::Result<String> {
        let dep = self
            .deployment
            .clone()
            .ok_or_else(|| anyhow!("Expected non-empty deployment name"))?;
        out.line(format!("Using deployment '{dep}'"));
        Ok(dep)
    }
}

// ---------------------------------------------------------------------------------------
// Environments and login

fn environments(out: &mut Out) -> anyhow::Result<()> {
    let config = ConfigFile::load_default()?;
    let table = Table {
        content: "environments".into(),
        header: vec!["URL".into(), "Alias".into()],
        rows: config
            .environments()
            .iter()
            .map(|e| vec![e.url.clone(), e.alias.clone()])
            .collect(),
        notes: vec![],
    };
    out.table(
        &table,
        &TableOptions {
            sort_by: vec![(0, true)],
            ..TableOptions::default()
        },
    );
    Ok(())
}

fn alias_env(out: &mut Out, global: &GlobalOpts, alias: &str) -> anyhow::Result<()> {
    let url = global.environment.clone().unwrap_or_default();
    let ca = match &global.ca_cert {
        Some(v) => ca_cert_content(v)?,
        None => String::new(),
    };
    let mut config = ConfigFile::load_default()?;
    config.alias_environment(&url, alias, &ca)?;
    let sess = Session {
        environment: url.clone(),
        config: config.clone(),
        ca_cert: ca,
        client: global.client.clone().unwrap_or_default(),
        client_secret: global.client_secret.clone().unwrap_or_default(),
        deployment: None,
    };
    let (client, _) = sess.director(out)?;
    let info = client.info().context("Fetching info")?;
    config.save()?;
    info_table(out, &info);
    Ok(())
}

fn info_table(out: &mut Out, info: &Info) {
    let mut header = vec!["Name".to_string(), "UUID".into(), "Version".into()];
    let mut row = vec![info.name.clone(), info.uuid.clone(), info.version.clone()];
    if !info.stemcell_os.is_empty() {
        header.push("Director Stemcell".into());
        row.push(format!("{}/{}", info.stemcell_os, info.stemcell_version));
    }
    if !info.cpi.is_empty() {
        header.push("CPI".into());
        row.push(info.cpi.clone());
    }
    if !info.features.is_empty() {
        let mut feats: Vec<String> = info
            .features
            .iter()
            .map(|(name, f)| format!("{name}: {}", if f.status { "enabled" } else { "disabled" }))
            .collect();
        feats.sort();
        header.push("Features".into());
        row.push(feats.join("\n"));
    }
    header.push("User".into());
    row.push(if info.user.is_empty() {
        "(not logged in)".into()
    } else {
        info.user.clone()
    });
    out.table(
        &Table {
            content: String::new(),
            header,
            rows: vec![row],
            notes: vec![],
        },
        &TableOptions {
            transpose: true,
            ..TableOptions::default()
        },
    );
}

fn log_in(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let anon = sess.client_with("", "")?;
    let info = anon.info().context("Fetching info")?;
    match info.user_authentication.kind.as_str() {
        "basic" => {}
        "uaa" => bail!("UAA authentication is not supported by bosh-rs yet"),
        other => bail!("Unknown auth type '{other}'"),
    }
    out.line(format!("Using environment '{}'", sess.environment));
    let complete = !sess.client.is_empty() && !sess.client_secret.is_empty();
    loop {
        let mut username = sess.client.clone();
        let mut password = sess.client_secret.clone();
        if username.is_empty() {
            username = ask(out, global, "Username", false)?;
        }
        if password.is_empty() {
            password = ask(out, global, "Password", true)?;
        }
        let client = sess.client_with(&username, &password)?;
        let info = client.info().context("Fetching info")?;
        if !info.user.is_empty() {
            let mut config = sess.config.clone();
            config.set_credentials(&sess.environment, &username, &password);
            config.save()?;
            out.line(format!("Logged in to '{}'", sess.environment));
            return Ok(());
        }
        eprintln!("Failed to login to '{}'", sess.environment);
        if complete {
            bail!("Invalid credentials");
        }
    }
}

/// Prompts on the terminal; a password is read with echo off when stdin is a terminal.
fn ask(out: &mut Out, global: &GlobalOpts, label: &str, secret: bool) -> anyhow::Result<String> {
    if global.non_interactive {
        bail!("Cannot ask for input in non-interactive UI");
    }
    out.raw(&format!("{label}: "));
    let echo_off = secret && stty(&["-echo"]);
    let mut answer = String::new();
    let res = std::io::stdin().lock().read_line(&mut answer);
    if echo_off {
        stty(&["echo"]);
        crate::ui::stdout_write("\n");
    }
    let n = res.with_context(|| format!("Asking for {}", label.to_lowercase()))?;
    if n == 0 {
        bail!("Asking for {}: no input", label.to_lowercase());
    }
    Ok(answer.trim_end_matches(['\n', '\r']).to_string())
}

/// Runs `stty` on the controlling terminal; false when there is none.
fn stty(args: &[&str]) -> bool {
    let Ok(tty) = std::fs::File::open("/dev/tty") else {
        return false;
    };
    std::process::Command::new("stty")
        .args(args)
        .stdin(tty)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn log_out(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let mut config = sess.config.clone();
    config.unset_credentials(&sess.environment);
    config.save()?;
    out.line(format!("Logged out from '{}'", sess.environment));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tasks

/// Follows a task's event log the way the official CLI does, then (when the command
/// started the task) fetches its result output. A task that did not end `done` fails.
pub fn task_track(
    out: &mut Out,
    client: &DirectorClient,
    task: &Task,
    fetch_result: bool,
) -> anyhow::Result<()> {
    task_follow(out, client, task.id, None)?;
    if fetch_result {
        client.task_result(task.id)?;
    }
    Ok(())
}

/// `plain: None` shows the event log as stage lines; `Some(kind)` prints that log's bytes as
/// they are, as the reference CLI does for `task N --event|--cpi|--debug|--result`.
fn task_follow(
    out: &mut Out,
    client: &DirectorClient,
    id: i64,
    plain: Option<&str>,
) -> anyhow::Result<()> {
    let mut reporter = TaskReporter::new(plain.is_none());
    reporter.task_started(out, id);
    let mut on_chunk = |chunk: &[u8]| reporter.task_output(out, id, chunk);
    let res = client.task_follow(id, plain.unwrap_or("event"), &mut on_chunk);
    let state = match &res {
        Ok(t) => t.state.clone(),
        Err(_) => String::new(),
    };
    reporter.task_finished(out, id, &state);
    let task = res.context("Getting task state")?;
    if task.state != "done" {
        return Err(DirectorError::TaskFailed {
            id: task.id,
            state: task.state,
        }
        .into());
    }
    Ok(())
}

fn tasks_query(state: Option<&str>, verbose: u8, limit: Option<u32>, dep: Option<&str>) -> String {
    // Go's form encoder: keys sorted, `,` escaped.
    let mut q: Vec<(String, String)> = Vec::new();
    if let Some(d) = dep {
        q.push(("deployment".into(), form_escape(d)));
    }
    if let Some(l) = limit {
        q.push(("limit".into(), l.to_string()));
    }
    if let Some(s) = state {
        q.push(("state".into(), form_escape(s)));
    }
    q.push(("verbose".into(), verbose.to_string()));
    q.sort();
    let parts: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("/tasks?{}", parts.join("&"))
}

/// `application/x-www-form-urlencoded` escaping as Go's `url.QueryEscape`.
pub fn form_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const CURRENT_STATES: &str = "processing,cancelling,queued";

fn tasks(out: &mut Out, global: &GlobalOpts, recent: Option<u32>, all: bool) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment.as_deref();
    let (path, what) = match recent {
        Some(n) => (
            tasks_query(None, if all { 2 } else { 1 }, Some(n), dep),
            "Finding recent tasks",
        ),
        // Current tasks always include every type.
        None => (
            tasks_query(Some(CURRENT_STATES), 2, None, dep),
            "Finding current tasks",
        ),
    };
    let mut list: Vec<Task> = client.get_json(&path).context(what)?;
    list.sort_by_key(|t| std::cmp::Reverse(t.id));
    let time = |secs: i64| {
        if secs == 0 {
            String::new()
        } else {
            time_full(secs)
        }
    };
    let rows = list
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.state.clone(),
                time(t.started_at),
                if recent.is_some() {
                    time(t.timestamp)
                } else {
                    "-".into()
                },
                t.user.clone(),
                t.deployment.clone(),
                t.description.clone(),
                t.result.clone(),
            ]
        })
        .collect();
    out.table(
        &Table {
            content: "tasks".into(),
            header: [
                "ID",
                "State",
                "Started At",
                "Finished At",
                "User",
                "Deployment",
                "Description",
                "Result",
            ]
            .map(String::from)
            .to_vec(),
            rows,
            notes: vec![],
        },
        &TableOptions::default(),
    );
    Ok(())
}

fn task(
    out: &mut Out,
    global: &GlobalOpts,
    id: Option<i64>,
    kind: Option<&str>,
    all: bool,
) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let task = match id {
        Some(id) if id != 0 => client
            .task(id)
            .with_context(|| format!("Finding task '{id}'"))?,
        _ => {
            let path = tasks_query(
                Some(CURRENT_STATES),
                if all { 2 } else { 1 },
                None,
                sess.deployment.as_deref(),
            );
            let list: Vec<Task> = client.get_json(&path).context("Finding current tasks")?;
            list.into_iter()
                .next()
                .ok_or_else(|| anyhow!("No task found"))?
        }
    };
    task_follow(out, &client, task.id, kind)
        .with_context(|| format!("Capturing task '{}' output", task.id))
}

// ---------------------------------------------------------------------------------------
// Locks, deployments, curl

fn locks(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let list: Vec<crate::director::Lock> = client.get_json("/locks").context("Finding locks")?;
    let mut rows = Vec::new();
    for l in &list {
        let secs: f64 = l
            .timeout
            .parse()
            .with_context(|| format!("Converting timeout '{}' to float", l.timeout))?;
        rows.push(vec![
            l.kind.clone(),
            l.resource.join(":"),
            l.task_id.clone(),
            time_full(secs as i64),
        ]);
    }
    out.table(
        &Table {
            content: "locks".into(),
            header: ["Type", "Resource", "Task ID", "Expires at"]
                .map(String::from)
                .to_vec(),
            rows,
            notes: vec![],
        },
        &TableOptions {
            sort_by: vec![(2, true)],
            ..TableOptions::default()
        },
    );
    Ok(())
}

fn deployments(out: &mut Out, global: &GlobalOpts) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let list: Vec<crate::director::Deployment> = client
        .get_json("/deployments?exclude_configs=true")
        .context("Finding deployments")?;
    let join = |nvs: &[crate::director::NameVersion]| {
        nvs.iter()
            .map(|nv| format!("{}/{}", nv.name, nv.version))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let rows = list
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                join(&d.releases),
                join(&d.stemcells),
                d.teams.join("\n"),
            ]
        })
        .collect();
    out.table(
        &Table {
            content: "deployments".into(),
            header: ["Name", "Release(s)", "Stemcell(s)", "Team(s)"]
                .map(String::from)
                .to_vec(),
            rows,
            notes: vec![],
        },
        &TableOptions {
            sort_by: vec![(0, true)],
            ..TableOptions::default()
        },
    );
    Ok(())
}

fn curl(
    out: &mut Out,
    global: &GlobalOpts,
    path: &str,
    method: &str,
    headers: &[String],
    body: Option<std::path::PathBuf>,
    show_headers: bool,
) -> anyhow::Result<()> {
    let mut hs = Vec::new();
    for h in headers {
        let (name, value) = h.split_once(':').ok_or_else(|| {
            anyhow!("Expected header '{h}' to be specified in 'name: value' format")
        })?;
        hs.push((name.trim().to_string(), value.trim().to_string()));
    }
    let method = match method {
        "GET" | "POST" | "PUT" | "DELETE" => Method::from_bytes(method.as_bytes())?,
        other => bail!("Unknown method '{other}'"),
    };
    if method == Method::DELETE && !hs.is_empty() {
        bail!("Expected no headers");
    }
    let body = match body {
        Some(p) if method == Method::POST || method == Method::PUT => {
            let bytes =
                std::fs::read(&p).with_context(|| format!("Reading file '{}'", p.display()))?;
            // A Content-Type given with -H wins over the default.
            let ct = match hs
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                Some(i) => hs.remove(i).1,
                None => "application/json".to_string(),
            };
            ReqBody::Bytes(bytes, ct)
        }
        _ => ReqBody::Empty,
    };
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let resp = client.raw(method, path, body, &hs)?;
    let status = resp.status();
    if show_headers {
        let mut text = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        );
        for (k, v) in resp.headers() {
            text.push_str(&format!(
                "{}: {}\r\n",
                canonical_header(k.as_str()),
                v.to_str().unwrap_or_default()
            ));
        }
        text.push_str("\r\n");
        out.raw(&text);
    }
    let bytes = resp
        .bytes()
        .map_err(|e| anyhow!(e))
        .context("Reading Director response")?;
    out.raw(&String::from_utf8_lossy(&bytes));
    if !matches!(status.as_u16(), 200 | 201 | 204 | 206 | 302) {
        let err = DirectorError::Status {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        return Err(anyhow::Error::from(err).context("Executing HTTP request"));
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// `content-type` → `Content-Type`, as Go prints header names.
fn canonical_header(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_queries_match_the_official_cli() {
        assert_eq!(
            tasks_query(Some(CURRENT_STATES), 2, None, None),
            "/tasks?state=processing%2Ccancelling%2Cqueued&verbose=2"
        );
        assert_eq!(
            tasks_query(None, 1, Some(30), None),
            "/tasks?limit=30&verbose=1"
        );
        assert_eq!(
            tasks_query(None, 2, Some(5), Some("a b")),
            "/tasks?deployment=a+b&limit=5&verbose=2"
        );
    }
}
