//! `logs`, `ssh` and `scp` (director-api.md §5.8, §5.9), as the official CLI's `cmd/logs.go`,
//! `cmd/ssh.go`, `cmd/scp.go` and its `ssh` package: a `fetch_logs` task whose `result` is
//! the blobstore id of the tarball saved as `<dep>[.<group>[.<id>]]-<timestamp>.tgz`; an
//! `ssh` setup task that makes an ephemeral user `bosh_<15 hex>` with a fresh key pair, the
//! system `ssh`/`scp` run per host with that key and a known-hosts file holding the host keys
//! the agents reported, then always a cleanup task (not waited for).
//!
//! Not supported (clear errors): `logs -f`/`--num` (tailing over ssh), `ssh --results`,
//! `--private-key`, `--gw-socks5` and `--director`.

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{Out, Session, task_track};
use crate::GlobalOpts;
use crate::director::{DirectorClient, ReqBody};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GatewayFlags {
    /// Disable usage of gateway connection
    #[arg(long = "gw-disable", env = "BOSH_GW_DISABLE")]
    gw_disable: bool,
    /// Username for gateway connection
    #[arg(long = "gw-user", env = "BOSH_GW_USER", value_name = "GW-USER")]
    gw_user: Option<String>,
    /// Host for gateway connection
    #[arg(long = "gw-host", env = "BOSH_GW_HOST", value_name = "GW-HOST")]
    gw_host: Option<String>,
    /// Private key path for gateway connection
    #[arg(
        long = "gw-private-key",
        env = "BOSH_GW_PRIVATE_KEY",
        value_name = "GW-PRIVATE-KEY"
    )]
    gw_private_key: Option<String>,
    /// SOCKS5 URL
    #[arg(long = "gw-socks5", env = "BOSH_ALL_PROXY", value_name = "GW-SOCKS5")]
    gw_socks5: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum LogsCommand {
    /// Fetch logs from instance(s)
    Logs {
        /// INSTANCE-GROUP[/INSTANCE-ID]
        #[arg(value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
        slug: Option<String>,
        /// Destination directory
        #[arg(long = "dir", default_value = ".")]
        dir: PathBuf,
        /// Follow logs via SSH
        #[arg(short = 'f', long = "follow")]
        follow: bool,
        /// Last number of lines
        #[arg(long = "num", default_value_t = 0)]
        num: u32,
        /// Suppresses printing of headers when multiple files are being examined
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Limit to only specific jobs
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// Filter logs (comma-separated)
        #[arg(long = "only", value_delimiter = ',')]
        filters: Vec<String>,
        /// Include only agent logs
        #[arg(long = "agent")]
        agent: bool,
        /// Include only system logs
        #[arg(long = "system")]
        system: bool,
        /// Include all logs (agent, system, and job logs)
        #[arg(long = "all-logs")]
        all: bool,
        #[command(flatten)]
        gateway: GatewayFlags,
    },
    /// SSH into instance(s)
    Ssh {
        /// INSTANCE-GROUP[/INSTANCE-ID]
        #[arg(value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
        slug: Option<String>,
        /// Command
        #[arg(short = 'c', long = "command")]
        command: Vec<String>,
        /// Options to pass through to SSH
        #[arg(long = "opts", allow_hyphen_values = true)]
        opts: Vec<String>,
        /// Collect results into a table instead of streaming
        #[arg(short = 'r', long = "results")]
        results: bool,
        /// SSH using authorized key
        #[arg(short = 'i', long = "private-key")]
        private_key: Option<String>,
        /// Login name for authorized key
        #[arg(short = 'l', long = "username", default_value = "vcap")]
        username: String,
        #[command(flatten)]
        gateway: GatewayFlags,
    },
    /// Secure copy to/from instance(s)
    Scp {
        /// PATH (one of them INSTANCE-GROUP[/INSTANCE-ID]:PATH)
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<String>,
        /// Recursively copy entire directories. Note that symbolic links encountered are
        /// followed in the tree traversal
        #[arg(short = 'r', long = "recursive")]
        recursive: bool,
        /// SSH using authorized key
        #[arg(short = 'i', long = "private-key")]
        private_key: Option<String>,
        /// Login name for authorized key
        #[arg(short = 'l', long = "username", default_value = "vcap")]
        username: String,
        #[command(flatten)]
        gateway: GatewayFlags,
    },
}

pub fn run(cmd: LogsCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Logs {
            slug,
            dir,
            follow,
            num,
            quiet: _,
            jobs: _,
            filters,
            agent,
            system,
            all,
            gateway: _,
        } => {
            if follow || num > 0 {
                bail!("Following logs ('-f', '--num') is not supported by bosh-rs yet");
            }
            let types = log_types(agent, system, all);
            logs_fetch(out, global, slug.as_deref(), &dir, &filters, &types)
        }
        LogsCommand::Ssh {
            slug,
            command,
            opts,
            results,
            private_key,
            username: _,
            gateway,
        } => {
            if results {
                bail!("'--results' is not supported by bosh-rs yet");
            }
            if private_key.is_some() {
                bail!("'--private-key' is not supported by bosh-rs yet");
            }
            ssh(out, global, slug.as_deref(), &command, &opts, &gateway)
        }
        LogsCommand::Scp {
            paths,
            recursive,
            private_key,
            username: _,
            gateway,
        } => {
            if private_key.is_some() {
                bail!("'--private-key' is not supported by bosh-rs yet");
            }
            scp(out, global, &paths, recursive, &gateway)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Slugs

/// `INSTANCE-GROUP[/INSTANCE-ID]`, both parts possibly empty.
#[derive(Debug, Clone, Default, PartialEq)]
struct Slug {
    name: String,
    index_or_id: String,
}

fn slug_parse(text: Option<&str>) -> anyhow::Result<Slug> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Slug::default());
    };
    match text.split_once('/') {
        None => Ok(Slug {
            name: text.to_owned(),
            index_or_id: String::new(),
        }),
        Some((name, id)) if !name.is_empty() && !id.is_empty() && !id.contains('/') => Ok(Slug {
            name: name.to_owned(),
            index_or_id: id.to_owned(),
        }),
        Some(_) => bail!(
            "Expected instance group or instance '{text}' to be in format 'name' or 'name/id-or-index'"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// logs

/// The official CLI's `buildLogTypeArgument`.
fn log_types(agent: bool, system: bool, all: bool) -> String {
    if all {
        "agent,job,system".to_owned()
    } else if agent {
        "agent".to_owned()
    } else if system {
        "system".to_owned()
    } else {
        "job".to_owned()
    }
}

fn logs_fetch(
    out: &mut Out,
    global: &GlobalOpts,
    slug: Option<&str>,
    dir: &Path,
    filters: &[String],
    types: &str,
) -> anyhow::Result<()> {
    let slug = slug_parse(slug)?;
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    let mut name = dep.clone();
    if !slug.name.is_empty() {
        name = format!("{name}.{}", slug.name);
    }
    if !slug.index_or_id.is_empty() {
        name = format!("{name}.{}", slug.index_or_id);
    }
    let or_star = |s: &str| {
        if s.is_empty() {
            "*".to_owned()
        } else {
            s.to_owned()
        }
    };
    // Go's url.Values.Encode: keys sorted.
    let mut query = Vec::new();
    let filters: Vec<&str> = filters
        .iter()
        .map(|f| f.trim())
        .filter(|f| !f.is_empty())
        .collect();
    if !filters.is_empty() {
        query.push(format!(
            "filters={}",
            super::form_escape(&filters.join(","))
        ));
    }
    query.push(format!("type={}", super::form_escape(types)));
    let path = format!(
        "/deployments/{dep}/jobs/{}/{}/logs?{}",
        or_star(&slug.name),
        or_star(&slug.index_or_id),
        query.join("&")
    );
    let task = client
        .task_start(Method::GET, &path, ReqBody::Empty)
        .context("Fetching logs")?;
    task_track(out, &client, &task, true).context("Fetching logs")?;
    let blob = client.task(task.id)?.result;
    if blob.is_empty() {
        bail!("Fetching logs: the task named no blobstore id");
    }
    resource_download(out, &client, &blob, &name, dir).context("Downloading logs")
}

/// `GET /resources/{id}` streamed into `<dir>/<prefix>-<timestamp>.tgz` (Go's
/// `20060102-150405.999999999` with `.` → `-`: the fraction loses trailing zeros).
fn resource_download(
    out: &mut Out,
    client: &DirectorClient,
    id: &str,
    prefix: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let now = chrono::Local::now();
    let nanos = format!("{:09}", now.timestamp_subsec_nanos());
    let nanos = nanos.trim_end_matches('0');
    let mut stamp = now.format("%Y%m%d-%H%M%S").to_string();
    if !nanos.is_empty() {
        stamp = format!("{stamp}-{nanos}");
    }
    let dst = dir.join(format!("{prefix}-{stamp}.tgz"));
    out.line(format!(
        "Downloading resource '{id}' to '{}'...",
        dst.display()
    ));
    let mut resp = client.raw(
        Method::GET,
        &format!("/resources/{id}"),
        ReqBody::Empty,
        &[],
    )?;
    if !resp.status().is_success() {
        let mut body = String::new();
        let _ = resp.read_to_string(&mut body);
        bail!(
            "Director responded with non-successful status code '{}' response '{body}'",
            resp.status().as_u16()
        );
    }
    let part = dir.join(format!(".{prefix}-{stamp}.tgz.part"));
    let res = (|| -> anyhow::Result<()> {
        let mut file =
            std::fs::File::create(&part).with_context(|| format!("Creating {}", part.display()))?;
        std::io::copy(&mut resp, &mut file).context("Downloading the resource")?;
        std::fs::rename(&part, &dst).context("Moving to final destination")
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    res
}

// ---------------------------------------------------------------------------------------
// ssh / scp

/// One session of `POST /deployments/{dep}/ssh` setup (§5.9).
#[derive(Debug, Clone, Deserialize)]
struct SshResp {
    #[serde(default)]
    status: String,
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    index: Option<i64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    host_public_key: Option<String>,
    #[serde(default)]
    gateway_user: Option<String>,
    #[serde(default)]
    gateway_host: Option<String>,
}

#[derive(Debug, Clone)]
struct Host {
    job: String,
    index_or_id: String,
    username: String,
    host: String,
    host_public_key: String,
}

/// Temporary files of one session; removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("bosh-rs-ssh-{}", random_hex(16)?));
        std::fs::create_dir(&path).with_context(|| format!("Creating {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_hex(n: usize) -> anyhow::Result<String> {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("Reading random bytes")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex[..n].to_owned())
}

/// A session: the user, the key pair (files in `tmp`) and the setup result.
struct SshSession {
    tmp: TempDir,
    username: String,
    key_path: PathBuf,
    known_hosts: PathBuf,
    hosts: Vec<Host>,
    gw_user: String,
    gw_host: String,
}

/// `bosh_<15 hex>` and an RSA key pair from `ssh-keygen` (Debian's openssh-client).
fn key_pair(tmp: &TempDir) -> anyhow::Result<(String, PathBuf, String)> {
    let username = format!("bosh_{}", random_hex(15)?);
    let key = tmp.0.join("ssh-priv-key");
    let status = Command::new("ssh-keygen")
        .args([
            "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-C", "",
        ])
        .arg("-f")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("Generating SSH key pair: running ssh-keygen (install openssh-client)")?;
    if !status.success() {
        bail!("Generating SSH key pair: ssh-keygen exited with {status}");
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))
        .context("Generating SSH key pair: reading the public key")?;
    Ok((username, key, public))
}

fn ssh_body(dep: &str, slug: &Slug) -> serde_json::Map<String, serde_json::Value> {
    let mut target = serde_json::Map::new();
    if !slug.name.is_empty() {
        target.insert("job".into(), json!(slug.name));
    }
    let ids: Vec<&str> = if slug.index_or_id.is_empty() {
        vec![]
    } else {
        vec![slug.index_or_id.as_str()]
    };
    target.insert("indexes".into(), json!(ids));
    target.insert("ids".into(), json!(ids));
    let mut body = serde_json::Map::new();
    body.insert("deployment_name".into(), json!(dep));
    body.insert("target".into(), serde_json::Value::Object(target));
    body
}

/// Setup: the task, its result array, the known-hosts file.
fn ssh_setup(
    out: &mut Out,
    client: &DirectorClient,
    dep: &str,
    slug: &Slug,
) -> anyhow::Result<SshSession> {
    let tmp = TempDir::new()?;
    let (username, key_path, public_key) = key_pair(&tmp)?;
    let mut body = ssh_body(dep, slug);
    body.insert("command".into(), json!("setup"));
    body.insert(
        "params".into(),
        json!({"user": username, "password": "p", "public_key": public_key}),
    );
    let what = || format!("Setting up SSH in deployment '{dep}'");
    let task = client
        .task_start(
            Method::POST,
            &format!("/deployments/{dep}/ssh"),
            ReqBody::Bytes(serde_json::to_vec(&body)?, "application/json".to_owned()),
        )
        .with_context(what)?;
    task_track(out, client, &task, false).with_context(what)?;
    let bytes = client.task_result(task.id).with_context(what)?;
    let resps: Vec<SshResp> = serde_json::from_slice(&bytes).context("Unmarshaling SSH result")?;
    let mut sess = SshSession {
        known_hosts: tmp.0.join("ssh-known-hosts"),
        tmp,
        username,
        key_path,
        hosts: Vec::new(),
        gw_user: String::new(),
        gw_host: String::new(),
    };
    if resps.is_empty() {
        // Nothing was set up, but the cleanup is cheap and harmless.
        return Err(anyhow!("Did not create any SSH sessions for the instances"));
    }
    for r in &resps {
        if r.status != "success" {
            bail!("Failed to set up SSH session for one of the instances '{r:?}'");
        }
        let index_or_id = match (&r.id, r.index) {
            (Some(id), _) if !id.is_empty() => id.clone(),
            (_, Some(i)) => i.to_string(),
            _ => String::new(),
        };
        sess.hosts.push(Host {
            job: r.job.clone().unwrap_or_default(),
            index_or_id,
            username: sess.username.clone(),
            host: r.ip.clone().unwrap_or_default(),
            host_public_key: r.host_public_key.clone().unwrap_or_default(),
        });
    }
    sess.gw_user = resps[0].gateway_user.clone().unwrap_or_default();
    sess.gw_host = resps[0].gateway_host.clone().unwrap_or_default();
    let known: String = sess
        .hosts
        .iter()
        .filter(|h| !h.host_public_key.is_empty())
        .map(|h| format!("{} {}\n", h.host, h.host_public_key))
        .collect();
    std::fs::write(&sess.known_hosts, known).context("Writing SSH known hosts")?;
    Ok(sess)
}

/// Cleanup: started, not waited for (as the official CLI).
fn ssh_cleanup(client: &DirectorClient, dep: &str, slug: &Slug, username: &str) {
    let mut body = ssh_body(dep, slug);
    body.insert("command".into(), json!("cleanup"));
    body.insert(
        "params".into(),
        json!({"user_regex": format!("^{username}")}),
    );
    let Ok(bytes) = serde_json::to_vec(&body) else {
        return;
    };
    let res = client.raw(
        Method::POST,
        &format!("/deployments/{dep}/ssh"),
        ReqBody::Bytes(bytes, "application/json".to_owned()),
        &[],
    );
    if let Err(e) = res {
        tracing::warn!(error = %e, "cleaning up SSH");
    }
}

/// The options `ssh` and `scp` share (the official `SSHArgs.OptsForHost`).
fn host_opts(
    sess: &SshSession,
    host: &Host,
    gw: &GatewayFlags,
    force_tty: bool,
    raw: &[String],
) -> Vec<String> {
    let mut o: Vec<String> = Vec::new();
    if force_tty {
        o.push("-tt".into());
    }
    for opt in [
        "ServerAliveInterval=30".to_owned(),
        "ForwardAgent=no".to_owned(),
        "PasswordAuthentication=no".to_owned(),
        "IdentitiesOnly=yes".to_owned(),
        format!("IdentityFile={}", sess.key_path.display()),
        "StrictHostKeyChecking=yes".to_owned(),
        format!("UserKnownHostsFile={}", sess.known_hosts.display()),
    ] {
        o.push("-o".into());
        o.push(opt);
    }
    let (gw_user, gw_host) = if gw.gw_disable {
        (String::new(), String::new())
    } else {
        (
            gw.gw_user
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(sess.gw_user.clone()),
            gw.gw_host
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(sess.gw_host.clone()),
        )
    };
    if !gw_host.is_empty() {
        let mut g = vec![
            "-o ServerAliveInterval=30".to_owned(),
            "-o ForwardAgent=no".to_owned(),
            "-o ClearAllForwardings=yes".to_owned(),
            "-o StrictHostKeyChecking=no".to_owned(),
            "-o UserKnownHostsFile=/dev/null".to_owned(),
        ];
        if let Some(k) = gw.gw_private_key.as_ref().filter(|k| !k.is_empty()) {
            g.push("-o PasswordAuthentication=no".to_owned());
            g.push("-o IdentitiesOnly=yes".to_owned());
            g.push(format!("-o IdentityFile={k}"));
        }
        let hostport = if host.host.contains(':') {
            "[%h]:%p"
        } else {
            "%h:%p"
        };
        o.push("-o".into());
        o.push(format!(
            "ProxyCommand=ssh -tt -W {hostport} -l {gw_user} {gw_host} {}",
            g.join(" ")
        ));
    }
    o.extend(raw.iter().cloned());
    o
}

fn printable_host(host: &Host) -> String {
    if host.host.contains(':') {
        format!("[{}]", host.host)
    } else {
        host.host.clone()
    }
}

/// Runs one command per host at once, their output prefixed `<job>/<id>: stdout | ` line by
/// line (the official streaming writer); fails when any of them failed.
fn hosts_run(
    program: &str,
    cmds: Vec<(&Host, Vec<String>)>,
    interactive: bool,
) -> anyhow::Result<()> {
    if interactive {
        let (_, args) = &cmds[0];
        let status = Command::new(program)
            .args(args)
            .status()
            .with_context(|| format!("Running {program}"))?;
        if !status.success() {
            bail!("{}", exit_text(program, status));
        }
        return Ok(());
    }
    let lock = Arc::new(Mutex::new(()));
    let mut children = Vec::new();
    let mut errors = Vec::new();
    for (host, args) in cmds {
        let job = if host.job.is_empty() {
            "?".to_owned()
        } else {
            host.job.clone()
        };
        let prefix = format!("{job}/{}", host.index_or_id);
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("Running {program}: {e}"));
                continue;
            }
        };
        let mut readers = Vec::new();
        if let Some(s) = child.stdout.take() {
            readers.push(prefixed_copy(
                s,
                format!("{prefix}: stdout | "),
                lock.clone(),
            ));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(prefixed_copy(
                s,
                format!("{prefix}: stderr | "),
                lock.clone(),
            ));
        }
        children.push((child, readers));
    }
    for (mut child, readers) in children {
        for r in readers {
            let _ = r.join();
        }
        match child.wait() {
            Ok(s) if s.success() => {}
            Ok(s) => errors.push(exit_text(program, s)),
            Err(e) => errors.push(format!("Waiting for {program}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("\n"))
    }
}

fn exit_text(program: &str, status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(c) => format!("Running '{program}': exit status {c}"),
        None => format!("Running '{program}': {status}"),
    }
}

fn prefixed_copy(
    stream: impl Read + Send + 'static,
    prefix: String,
    lock: Arc<Mutex<()>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    let _guard = lock.lock();
                    crate::ui::stdout_write(&format!("{prefix}{text}\n"));
                }
            }
        }
    })
}

fn gateway_check(gw: &GatewayFlags) -> anyhow::Result<()> {
    if gw.gw_socks5.as_ref().is_some_and(|s| !s.is_empty()) {
        bail!("'--gw-socks5' is not supported by bosh-rs yet");
    }
    Ok(())
}

fn ssh(
    out: &mut Out,
    global: &GlobalOpts,
    slug: Option<&str>,
    command: &[String],
    raw_opts: &[String],
    gw: &GatewayFlags,
) -> anyhow::Result<()> {
    gateway_check(gw)?;
    if global.non_interactive && command.is_empty() {
        bail!("Non-interactive SSH requires non-empty command");
    }
    let slug = slug_parse(slug)?;
    let sess_cfg = Session::new(global)?;
    let (client, _) = sess_cfg.director(out)?;
    let dep = sess_cfg.deployment(out)?;
    let raw: Vec<String> = raw_opts.iter().map(|o| o.trim().to_owned()).collect();
    let res = ssh_setup(out, &client, &dep, &slug);
    let result = (|| -> anyhow::Result<()> {
        let sess = res.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        let interactive =
            !global.non_interactive && command.is_empty() && std::io::stdin().is_terminal();
        if command.is_empty() && !interactive {
            bail!("Non-interactive SSH requires non-empty command");
        }
        if interactive && sess.hosts.len() != 1 {
            bail!("Interactive SSH only works for a single host at a time");
        }
        let cmds = sess
            .hosts
            .iter()
            .map(|h| {
                let mut args = host_opts(sess, h, gw, true, &raw);
                args.extend(["-o".to_owned(), "StrictHostKeyChecking=yes".to_owned()]);
                args.push(printable_host(h));
                args.push("-l".into());
                args.push(h.username.clone());
                args.extend(command.iter().cloned());
                (h, args)
            })
            .collect();
        hosts_run("ssh", cmds, interactive).context("Running SSH")
    })();
    // Always clean up: the user was possibly made on some of the instances.
    let username = match &res {
        Ok(s) => Some(s.username.clone()),
        Err(_) => None,
    };
    if let Some(u) = username {
        ssh_cleanup(&client, &dep, &slug, &u);
    }
    drop(res.map(|s| s.tmp));
    result
}

/// The slug named by the first `GROUP[/ID]:path` argument.
fn scp_slug(paths: &[String]) -> anyhow::Result<Slug> {
    for p in paths {
        if let Some((host, _)) = p.split_once(':') {
            return slug_parse(Some(host));
        }
    }
    bail!("Missing remote host information in source/destination arguments")
}

/// The official `SCPArgs.ForHost`: the named host becomes `user@ip`, `((instance_id))` the
/// host's id.
fn scp_args_for(paths: &[String], recursive: bool, host: &Host) -> Vec<String> {
    let mut args = Vec::new();
    if recursive {
        args.push("-r".to_owned());
    }
    for p in paths {
        let mut pieces: Vec<String> = match p.split_once(':') {
            Some((_, rest)) => vec![format!("{}@{}", host.username, host.host), rest.to_owned()],
            None => vec![p.clone()],
        };
        for piece in &mut pieces {
            *piece = piece.replace("((instance_id))", &host.index_or_id);
        }
        args.push(pieces.join(":"));
    }
    args
}

fn scp(
    out: &mut Out,
    global: &GlobalOpts,
    paths: &[String],
    recursive: bool,
    gw: &GatewayFlags,
) -> anyhow::Result<()> {
    gateway_check(gw)?;
    let slug = scp_slug(paths)?;
    let sess_cfg = Session::new(global)?;
    let (client, _) = sess_cfg.director(out)?;
    let dep = sess_cfg.deployment(out)?;
    let res = ssh_setup(out, &client, &dep, &slug);
    let result = (|| -> anyhow::Result<()> {
        let sess = res.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        let raw = ["-o".to_owned(), "StrictHostKeyChecking=yes".to_owned()];
        let cmds = sess
            .hosts
            .iter()
            .map(|h| {
                let mut args = host_opts(sess, h, gw, false, &raw);
                args.extend(scp_args_for(paths, recursive, h));
                (h, args)
            })
            .collect();
        hosts_run("scp", cmds, false).context("Running SCP")
    })();
    if let Ok(s) = &res {
        ssh_cleanup(&client, &dep, &slug, &s.username);
    }
    drop(res.map(|s| s.tmp));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            job: "web".into(),
            index_or_id: "abc".into(),
            username: "bosh_1".into(),
            host: "10.0.0.5".into(),
            host_public_key: String::new(),
        }
    }

    #[test]
    fn slugs_parse_as_the_official_cli() {
        assert_eq!(slug_parse(None).unwrap(), Slug::default());
        let s = slug_parse(Some("web/0")).unwrap();
        assert_eq!((s.name.as_str(), s.index_or_id.as_str()), ("web", "0"));
        let s = slug_parse(Some("web")).unwrap();
        assert_eq!((s.name.as_str(), s.index_or_id.as_str()), ("web", ""));
        assert!(slug_parse(Some("web/")).is_err());
        assert!(slug_parse(Some("/0")).is_err());
    }

    #[test]
    fn log_types_follow_build_log_type_argument() {
        assert_eq!(log_types(false, false, false), "job");
        assert_eq!(log_types(true, false, false), "agent");
        assert_eq!(log_types(false, true, false), "system");
        assert_eq!(log_types(true, true, false), "agent");
        assert_eq!(log_types(false, false, true), "agent,job,system");
    }

    #[test]
    fn scp_arguments_name_the_host_and_instance() {
        let paths = vec![
            "web/abc:/var/vcap/sys/log/((instance_id)).log".to_owned(),
            "/tmp/x-((instance_id))".to_owned(),
        ];
        assert_eq!(scp_slug(&paths).unwrap().name, "web");
        assert_eq!(
            scp_args_for(&paths, true, &host()),
            vec![
                "-r",
                "bosh_1@10.0.0.5:/var/vcap/sys/log/abc.log",
                "/tmp/x-abc"
            ]
        );
        assert!(scp_slug(&["a".to_owned(), "b".to_owned()]).is_err());
    }
}
