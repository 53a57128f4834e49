//! `update_settings(obj)` (async, persistent): stores the object; when mbus or blobstores
//! changed the agent restarts to use them, and the recorded task answers `"ok"` after the
//! restart (§2.3, §3.1).

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::{Agent, ExitRequest};
use crate::config;
use bosh_agent_protocol::UpdateSettings;
use serde_json::Value;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "update_settings",
    asynchronous: not_sync,
    cancellable: false,
    persistent: true,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let new: UpdateSettings = inv.args.get(0, 1)?;
        let old = agent.current_update_settings();
        let settings = agent.settings();
        let mbus_changed = new.mbus.as_ref().is_some_and(|m| {
            (!m.cert.ca.is_empty() || !m.urls.is_empty())
                && (settings.mbus_cert(old.as_ref()) != settings.mbus_cert(Some(&new))
                    || settings.mbus_urls(old.as_ref()) != settings.mbus_urls(Some(&new)))
        });
        let blobstores_changed = new.blobstores.is_some()
            && new.blobstores != old.as_ref().and_then(|o| o.blobstores.clone());

        config::write_json(&agent.layout.update_settings(), &new)?;
        if !new.trusted_certs.is_empty() {
            // The dummy platform has no OS trust store to install into; keep the bundle.
            let path = agent.layout.bosh_dir().join("trusted_certs.pem");
            std::fs::write(&path, &new.trusted_certs)
                .map_err(|e| ActionError::msg(format!("Writing {}: {e}", path.display())))?;
        }
        link_disk_associations(&agent, &new)?;
        *agent
            .update_settings
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(new);

        if mbus_changed || blobstores_changed {
            tracing::info!(
                mbus_changed,
                blobstores_changed,
                "settings changed; restarting agent"
            );
            // The task record stays so that the restarted agent answers `get_task` with "ok".
            agent.request_exit(ExitRequest::Restart);
        } else {
            let _ = std::fs::remove_file(agent.layout.task_info());
        }
        Ok("ok".into())
    })
}

/// `instance/disks/<name>` → the disk's device path from settings.
fn link_disk_associations(agent: &Agent, new: &UpdateSettings) -> Result<(), ActionError> {
    if new.disk_associations.is_empty() {
        return Ok(());
    }
    let settings = agent.settings();
    let dir = agent.layout.instance().join("disks");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ActionError::msg(format!("Creating {}: {e}", dir.display())))?;
    let persistent = settings.disks.get("persistent").and_then(Value::as_object);
    for assoc in &new.disk_associations {
        let hint = persistent.and_then(|p| p.get(&assoc.cid));
        let path = match hint {
            Some(Value::String(s)) => s.clone(),
            Some(obj) => obj
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            None => {
                return Err(ActionError::msg(format!(
                    "Persistent disk with volume id '{}' could not be found",
                    assoc.cid
                )));
            }
        };
        crate::applier::replace_symlink(std::path::Path::new(&path), &dir.join(&assoc.name))?;
    }
    Ok(())
}
