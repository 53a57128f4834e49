//! `apply(spec)` (async): records the spec; installs and enables jobs and packages only when
//! `configuration_hash` is set (§3.1, §10.5). Starts nothing.

use super::{ActionDef, ActionError, ActionFuture, Invocation, not_sync};
use crate::agent::{Agent, decode_spec};
use crate::applier;
use bosh_agent_protocol::ApplySpec;
use serde_json::Value;
use std::sync::Arc;

pub const ACTION: ActionDef = ActionDef {
    name: "apply",
    asynchronous: not_sync,
    cancellable: false,
    persistent: false,
    run,
};

fn run(agent: Arc<Agent>, inv: Invocation) -> ActionFuture {
    Box::pin(async move {
        let mut spec = decode_spec(&inv.args, 0, 1)?;
        let _guard = agent.spec_lock.lock().await;
        resolve_networks(&agent, &mut spec)?;
        if spec.has_configuration() {
            // As monit restarted without job files: services are forgotten until `start`.
            let _ = std::fs::remove_dir_all(agent.layout.monit_jobs());
            agent.supervisor.clear();
            let blobstore = agent.blobstore()?;
            applier::apply(&agent.layout, blobstore.as_ref(), &spec).await?;
        }
        agent.save_spec(&spec)?;
        write_instance_files(&agent, &spec)?;
        Ok("applied".into())
    })
}

/// Every spec network must exist in settings; addresses the settings know (DHCP-style
/// networks) fill in what the spec lacks.
fn resolve_networks(agent: &Agent, spec: &mut ApplySpec) -> Result<(), ActionError> {
    let settings = agent.settings();
    for (name, net) in spec.networks.iter_mut() {
        let Some(known) = settings.networks.get(name) else {
            return Err(ActionError::msg(format!(
                "Network '{name}' is not found in settings"
            )));
        };
        if name == "local" && net.get("ip").and_then(Value::as_str) == Some("127.0.0.1") {
            continue;
        }
        let Some(obj) = net.as_object_mut() else {
            continue;
        };
        let missing_ip = obj
            .get("ip")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if missing_ip {
            for key in ["ip", "netmask", "gateway"] {
                if let Some(v) = known.get(key) {
                    obj.insert(key.to_owned(), v.clone());
                }
            }
        }
    }
    Ok(())
}

fn write_instance_files(agent: &Agent, spec: &ApplySpec) -> Result<(), ActionError> {
    let dir = agent.layout.instance();
    let io = |e: std::io::Error| ActionError::msg(format!("Writing instance files: {e}"));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let files = [
        ("id", spec.id.clone().unwrap_or_default()),
        ("az", spec.az.clone().unwrap_or_default()),
        ("name", spec.name.clone().unwrap_or_default()),
        ("deployment", spec.deployment.clone()),
    ];
    for (file, content) in files {
        std::fs::write(dir.join(file), content).map_err(io)?;
    }
    Ok(())
}
