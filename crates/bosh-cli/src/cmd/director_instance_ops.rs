//! Day-2 commands: `start`, `stop`, `restart`, `recreate`, `ignore`, `unignore` and
//! `delete-vm` (director-api.md §5.4, §5.11), with the official CLI's flags, confirmation,
//! request paths and query strings (`cmd/start.go`, `stop.go`, `restart.go`, `recreate.go`,
//! `ignore.go`, `delete_vm.go`; `director/deployment.go`).

use anyhow::{Context, anyhow, bail};
use reqwest::Method;

use super::{Out, Session, confirm, form_escape, task_track};
use crate::GlobalOpts;
use crate::director::{DirectorClient, ReqBody};

#[derive(clap::Subcommand, Debug)]
pub enum InstanceOpsCommand {
    /// Start instance(s)
    #[command(name = "start")]
    Start {
        #[arg(value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
        slug: Option<String>,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Stop instance(s)
    #[command(name = "stop")]
    Stop {
        #[arg(value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
        slug: Option<String>,
        /// Stop process only (default)
        #[arg(long)]
        soft: bool,
        /// Delete VM (but keep persistent disk)
        #[arg(long)]
        hard: bool,
        /// Skip running drain and pre-stop scripts
        #[arg(long = "skip-drain")]
        skip_drain: bool,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Restart instance(s)
    #[command(name = "restart")]
    Restart {
        #[arg(value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
        slug: Option<String>,
        /// Skip running drain and pre-stop scripts
        #[arg(long = "skip-drain")]
        skip_drain: bool,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Recreate instance(s)
    #[command(name = "recreate")]
    Recreate {
        #[arg(value_name = "INSTANCE-GROUP[/INSTANCE-ID]")]
        slug: Option<String>,
        /// Skip running drain and pre-stop scripts
        #[arg(long = "skip-drain")]
        skip_drain: bool,
        /// Recreate an instance with an unresponsive agent instead of erroring
        #[arg(long)]
        fix: bool,
        /// Renders job templates without altering deployment
        #[arg(long = "dry-run")]
        dry_run: bool,
        #[command(flatten)]
        rollout: Rollout,
    },
    /// Ignore an instance
    #[command(name = "ignore")]
    Ignore {
        #[arg(value_name = "INSTANCE-GROUP/INSTANCE-ID")]
        slug: String,
    },
    /// Unignore an instance
    #[command(name = "unignore")]
    Unignore {
        #[arg(value_name = "INSTANCE-GROUP/INSTANCE-ID")]
        slug: String,
    },
    /// Delete VM
    #[command(name = "delete-vm")]
    DeleteVm {
        #[arg(value_name = "CID")]
        cid: String,
    },
}

/// The rollout flags every state change shares.
#[derive(clap::Args, Debug, Default)]
pub struct Rollout {
    /// Override manifest values for canaries
    #[arg(long)]
    canaries: Option<String>,
    /// Override manifest values for max_in_flight
    #[arg(long = "max-in-flight")]
    max_in_flight: Option<String>,
    /// Converge the deployment state before running action (default)
    #[arg(long)]
    converge: bool,
    /// Act only on specified instance
    #[arg(long = "no-converge")]
    no_converge: bool,
}

/// `INSTANCE-GROUP[/INSTANCE-ID]`, as `AllOrInstanceGroupOrInstanceSlug`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Slug {
    name: String,
    index_or_id: String,
}

impl Slug {
    fn parse(s: Option<&str>) -> anyhow::Result<Slug> {
        let Some(s) = s.filter(|s| !s.is_empty()) else {
            return Ok(Slug::default());
        };
        let pieces: Vec<&str> = s.split('/').collect();
        if pieces.len() > 2 {
            bail!("Expected pool or instance '{s}' to be in format 'name' or 'name/id-or-index'");
        }
        if pieces[0].is_empty() {
            bail!("Expected pool or instance '{s}' to specify non-empty name");
        }
        let index_or_id = match pieces.get(1) {
            Some(&"") => {
                bail!("Expected instance '{s}' to specify non-empty ID or index")
            }
            Some(p) => (*p).to_owned(),
            None => String::new(),
        };
        Ok(Slug {
            name: pieces[0].to_owned(),
            index_or_id,
        })
    }

    /// `INSTANCE-GROUP/INSTANCE-ID`, as `InstanceSlug`.
    fn parse_instance(s: &str) -> anyhow::Result<Slug> {
        let pieces: Vec<&str> = s.split('/').collect();
        if pieces.len() != 2 {
            bail!("Expected instance '{s}' to be in format 'name/index-or-id'");
        }
        if pieces[0].is_empty() {
            bail!("Expected instance '{s}' to specify non-empty name");
        }
        if pieces[1].is_empty() {
            bail!("Expected instance '{s}' to specify non-empty index or ID");
        }
        Ok(Slug {
            name: pieces[0].to_owned(),
            index_or_id: pieces[1].to_owned(),
        })
    }

    fn is_instance(&self) -> bool {
        !self.name.is_empty() && !self.index_or_id.is_empty()
    }
}

/// What a state change sends.
#[derive(Debug, Default)]
struct Change {
    state: &'static str,
    skip_drain: bool,
    fix: bool,
    dry_run: bool,
    canaries: String,
    max_in_flight: String,
}

/// `PUT /deployments/{dep}/jobs/{group|*}[/{id}]?…`, the query in Go's `url.Values` order.
fn change_path(dep: &str, slug: &Slug, c: &Change) -> String {
    let mut q: Vec<(&str, String)> = vec![("state", c.state.to_owned())];
    if c.skip_drain {
        q.push(("skip_drain", "true".into()));
    }
    if c.fix {
        q.push(("fix", "true".into()));
    }
    if c.dry_run {
        q.push(("dry_run", "true".into()));
    }
    if !c.canaries.is_empty() {
        q.push(("canaries", c.canaries.clone()));
    }
    if !c.max_in_flight.is_empty() {
        q.push(("max_in_flight", c.max_in_flight.clone()));
    }
    let mut path = format!("/deployments/{dep}/jobs");
    if slug.name.is_empty() {
        path.push_str("/*");
    } else {
        path.push('/');
        path.push_str(&slug.name);
        if !slug.index_or_id.is_empty() {
            path.push('/');
            path.push_str(&slug.index_or_id);
        }
    }
    format!("{path}?{}", query_encode(q))
}

/// `POST /deployments/{dep}/instance_groups/{g}/{id}/actions/{action}?…`
fn action_path(
    dep: &str,
    slug: &Slug,
    action: &str,
    skip_drain: bool,
    hard: bool,
    ignore_unresponsive_agent: bool,
) -> String {
    let mut q: Vec<(&str, String)> = Vec::new();
    if skip_drain {
        q.push(("skip_drain", "true".into()));
    }
    if hard {
        q.push(("hard", "true".into()));
    }
    if ignore_unresponsive_agent {
        q.push(("ignore_unresponsive_agent", "true".into()));
    }
    format!(
        "/deployments/{dep}/instance_groups/{}/{}/actions/{action}?{}",
        slug.name,
        slug.index_or_id,
        query_encode(q)
    )
}

/// Go's `url.Values.Encode`: keys sorted, values form-escaped.
fn query_encode(mut q: Vec<(&str, String)>) -> String {
    q.sort_by(|a, b| a.0.cmp(b.0));
    q.iter()
        .map(|(k, v)| format!("{k}={}", form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `--no-converge` checks the official CLI makes before anything is sent.
fn no_converge_check(
    what: &str,
    slug: &Slug,
    rollout: &Rollout,
    dry_run: bool,
) -> anyhow::Result<()> {
    if rollout.converge {
        bail!("Can't set converge and no-converge");
    }
    if rollout.canaries.as_deref().is_some_and(|c| !c.is_empty()) {
        bail!("Can't set canaries and no-converge");
    }
    if rollout
        .max_in_flight
        .as_deref()
        .is_some_and(|c| !c.is_empty())
    {
        bail!("Can't set max-in-flight and no-converge");
    }
    if dry_run {
        bail!("Can't set dry-run and no-converge");
    }
    if !slug.is_instance() {
        bail!(
            "You are trying to run {what} with --no-converge on an entire instance group. \
             This operation is not allowed. Trying using the --converge flag or running it \
             against a specific instance."
        );
    }
    Ok(())
}

pub fn run(cmd: InstanceOpsCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        InstanceOpsCommand::Start { slug, rollout } => {
            let slug = Slug::parse(slug.as_deref())?;
            state_change(out, global, "start", &slug, &rollout, false, false, |_| {
                Change {
                    state: "started",
                    ..Change::default()
                }
            })
        }
        InstanceOpsCommand::Stop {
            slug,
            soft: _,
            hard,
            skip_drain,
            rollout,
        } => {
            let slug = Slug::parse(slug.as_deref())?;
            state_change(
                out,
                global,
                "stop",
                &slug,
                &rollout,
                skip_drain,
                hard,
                |_| Change {
                    state: if hard { "detached" } else { "stopped" },
                    skip_drain,
                    ..Change::default()
                },
            )
        }
        InstanceOpsCommand::Restart {
            slug,
            skip_drain,
            rollout,
        } => {
            let slug = Slug::parse(slug.as_deref())?;
            state_change(
                out,
                global,
                "restart",
                &slug,
                &rollout,
                skip_drain,
                false,
                |_| Change {
                    state: "restart",
                    skip_drain,
                    ..Change::default()
                },
            )
        }
        InstanceOpsCommand::Recreate {
            slug,
            skip_drain,
            fix,
            dry_run,
            rollout,
        } => {
            let slug = Slug::parse(slug.as_deref())?;
            state_change(
                out,
                global,
                "recreate",
                &slug,
                &rollout,
                skip_drain,
                fix,
                |_| Change {
                    state: "recreate",
                    skip_drain,
                    fix,
                    dry_run,
                    ..Change::default()
                },
            )
        }
        InstanceOpsCommand::Ignore { slug } => ignore(out, global, &slug, true),
        InstanceOpsCommand::Unignore { slug } => ignore(out, global, &slug, false),
        InstanceOpsCommand::DeleteVm { cid } => delete_vm(out, global, &cid),
    }
}

/// One state change: converging (`PUT …/jobs/…`) or, with `--no-converge`, the action on one
/// instance. `flag` is `--hard` for stop and `--fix` (ignore an unresponsive agent) for
/// recreate.
#[allow(clippy::too_many_arguments)]
fn state_change(
    out: &mut Out,
    global: &GlobalOpts,
    action: &str,
    slug: &Slug,
    rollout: &Rollout,
    skip_drain: bool,
    flag: bool,
    change: impl FnOnce(&Slug) -> Change,
) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    confirm(out, global)?;
    let mut c = change(slug);
    if rollout.no_converge {
        no_converge_check(action, slug, rollout, c.dry_run)?;
        let (hard, ignore_unresponsive) = match action {
            "stop" => (flag, false),
            "recreate" => (false, flag),
            _ => (false, false),
        };
        // The official CLI sends no skip_drain for start.
        let skip_drain = skip_drain && action != "start";
        let path = action_path(&dep, slug, action, skip_drain, hard, ignore_unresponsive);
        return task_run(out, &client, Method::POST, &path).context("Non-converging action failed");
    }
    c.canaries = rollout.canaries.clone().unwrap_or_default();
    c.max_in_flight = rollout.max_in_flight.clone().unwrap_or_default();
    let path = change_path(&dep, slug, &c);
    task_run(out, &client, Method::PUT, &path).context("Changing state")
}

/// Starts a task with an empty text/yaml body and follows it.
fn task_run(
    out: &mut Out,
    client: &DirectorClient,
    method: Method,
    path: &str,
) -> anyhow::Result<()> {
    let task = client.task_start(
        method,
        path,
        ReqBody::Bytes(Vec::new(), "text/yaml".to_owned()),
    )?;
    task_track(out, client, &task, true)
}

fn ignore(out: &mut Out, global: &GlobalOpts, slug: &str, enabled: bool) -> anyhow::Result<()> {
    let slug = Slug::parse_instance(slug)?;
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let dep = sess.deployment(out)?;
    let path = format!(
        "/deployments/{dep}/instance_groups/{}/{}/ignore",
        slug.name, slug.index_or_id
    );
    let body = serde_json::to_vec(&serde_json::json!({ "ignore": enabled }))?;
    client
        .request_bytes(
            Method::PUT,
            &path,
            ReqBody::Bytes(body, "application/json".to_owned()),
            &[],
        )
        .with_context(|| {
            format!(
                "Changing ignore state for '{}/{}' in deployment '{dep}'",
                slug.name, slug.index_or_id
            )
        })?;
    Ok(())
}

fn delete_vm(out: &mut Out, global: &GlobalOpts, cid: &str) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let _dep = sess.deployment(out)?;
    confirm(out, global)?;
    if cid.is_empty() {
        return Err(anyhow!("Expected non-empty VM CID"));
    }
    let path = format!("/vms/{}", crate::director::artifacts::path_escape(cid));
    client
        .task_start(Method::DELETE, &path, ReqBody::Empty)
        .map_err(anyhow::Error::from)
        .and_then(|t| task_track(out, &client, &t, true))
        .with_context(|| format!("Deleting VM '{cid}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_parse_as_the_official_cli() {
        assert_eq!(Slug::parse(None).unwrap(), Slug::default());
        let s = Slug::parse(Some("web")).unwrap();
        assert_eq!((s.name.as_str(), s.index_or_id.as_str()), ("web", ""));
        let s = Slug::parse(Some("web/0")).unwrap();
        assert!(s.is_instance());
        assert!(Slug::parse(Some("web/")).is_err());
        assert!(Slug::parse(Some("/0")).is_err());
        assert!(Slug::parse(Some("a/b/c")).is_err());
        assert!(Slug::parse_instance("web").is_err());
    }

    #[test]
    fn paths_match_the_official_cli() {
        let all = Slug::default();
        let c = Change {
            state: "recreate",
            ..Change::default()
        };
        assert_eq!(
            change_path("dep1", &all, &c),
            "/deployments/dep1/jobs/*?state=recreate"
        );
        let one = Slug::parse(Some("web/abc")).unwrap();
        let c = Change {
            state: "recreate",
            skip_drain: true,
            fix: true,
            canaries: "2".into(),
            max_in_flight: "50%".into(),
            ..Change::default()
        };
        assert_eq!(
            change_path("dep1", &one, &c),
            "/deployments/dep1/jobs/web/abc?canaries=2&fix=true&max_in_flight=50%25&skip_drain=true&state=recreate"
        );
        assert_eq!(
            action_path("dep1", &one, "stop", true, true, false),
            "/deployments/dep1/instance_groups/web/abc/actions/stop?hard=true&skip_drain=true"
        );
        assert_eq!(
            action_path("dep1", &one, "start", false, false, false),
            "/deployments/dep1/instance_groups/web/abc/actions/start?"
        );
    }
}
