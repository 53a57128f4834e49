//! `ssh("setup", {user, public_key})` / `ssh("cleanup", {user_regex})` (sync): ephemeral
//! users with homes under `bosh_ssh/` and the key in `<home>/.ssh/authorized_keys`.
//! Setup returns `{command, status, ip, host_public_key}`; cleanup `{command, status}`.

use super::{ActionDef, ActionError, ActionFuture, Invocation, sync};
use crate::agent::Agent;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "ssh",
    asynchronous: sync,
    cancellable: false,
    persistent: false,
    run,
};

#[derive(Debug, Default, Deserialize)]
struct SshParams {
    #[serde(default)]
    user: String,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    user_regex: String,
}

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let cmd: String = inv.args.get(0, 2)?;
        let params: SshParams = inv
            .args
            .get_folded::<Option<SshParams>>(
                1,
                2,
                &["user", "public_key", "user_regex", "password"],
            )?
            .unwrap_or_default();
        match cmd.as_str() {
            "setup" => setup(&agent, &params),
            "cleanup" => cleanup(&agent, &params),
            other => Err(ActionError::msg(format!("Unknown command {other}"))),
        }
    })
}

fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 32
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn setup(agent: &Agent, params: &SshParams) -> Result<serde_json::Value, ActionError> {
    if !valid_user(&params.user) {
        return Err(ActionError::msg(format!(
            "Setting up ssh: invalid user name '{}'",
            params.user
        )));
    }
    let home = agent.layout.bosh_ssh().join(&params.user);
    let io = |e: std::io::Error| ActionError::msg(format!("Setting up ssh: {e}"));
    if !home.is_dir() {
        agent
            .platform
            .create_user(&params.user, &home)
            .map_err(io)?;
    }
    let ssh_dir = home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).map_err(io)?;
    let key = format!("{}\n", params.public_key.trim());
    std::fs::write(ssh_dir.join("authorized_keys"), key).map_err(io)?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::set_permissions(
            ssh_dir.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o600),
        );
    }
    Ok(json!({
        "command": "setup",
        "status": "success",
        "ip": agent.settings().default_ip().unwrap_or_default(),
        "host_public_key": agent.platform.host_public_key(),
    }))
}

/// The subset of regular expressions the director sends: an optional `^` anchor followed by
/// a literal; without the anchor the literal may occur anywhere.
fn matches(regex: &str, name: &str) -> bool {
    match regex.strip_prefix('^') {
        Some(prefix) => name.starts_with(prefix),
        None => name.contains(regex),
    }
}

fn cleanup(agent: &Agent, params: &SshParams) -> Result<serde_json::Value, ActionError> {
    let root = agent.layout.bosh_ssh();
    let io = |e: std::io::Error| ActionError::msg(format!("Cleaning up ssh: {e}"));
    if let Ok(rd) = std::fs::read_dir(&root) {
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Only ephemeral users are ever removed.
            if !name.starts_with("bosh_") || !matches(&params.user_regex, &name) {
                continue;
            }
            agent
                .platform
                .delete_user(&name, &entry.path())
                .map_err(io)?;
        }
    }
    Ok(json!({"command": "cleanup", "status": "success"}))
}
