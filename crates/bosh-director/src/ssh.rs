//! `bosh ssh`/`scp` (director-api.md §5.9): the `ssh` task. `setup` asks every selected
//! instance's agent to create an ephemeral user with the CLI's public key and writes one JSON
//! array of sessions to the result output; `cleanup` asks them to delete the users matching
//! `user_regex`. Each instance gets a `setup ssh`/`cleanup ssh` event, as Ruby's `Jobs::Ssh`.

use async_trait::async_trait;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::events::{NewEvent, event_create};
use crate::repair::{self, Instance};
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError, TaskJob, TaskRegistry};

pub const SSH: &str = "ssh";

/// Ruby's `RpcTimeout`.
const AGENT_TIMEOUT: u32 = 450002;

/// The request body of `POST /deployments/{dep}/ssh`, and the task payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshPayload {
    #[serde(default)]
    pub deployment: String,
    pub command: String,
    #[serde(default)]
    pub target: SshTarget,
    /// `{user, public_key}` for setup, `{user_regex}` for cleanup; passed to the agent as is.
    #[serde(default)]
    pub params: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SshTarget {
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub indexes: Vec<Value>,
    #[serde(default)]
    pub ids: Vec<Value>,
}

impl SshTarget {
    /// Whether `inst` is one of the instances this target names: the group when given, then
    /// `ids` (digits = an index, else a uuid), or `indexes` when no ids were sent (old CLIs).
    pub fn selects(&self, inst: &Instance) -> bool {
        if self.job.as_deref().is_some_and(|j| j != inst.record.group) {
            return false;
        }
        let values = if self.ids.is_empty() {
            &self.indexes
        } else {
            &self.ids
        };
        values.is_empty()
            || values.iter().any(|v| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                    text.parse::<i64>().ok() == Some(inst.record.index)
                } else {
                    text == inst.record.uuid
                }
            })
    }

    /// As the task description shows it.
    pub fn describe(&self) -> String {
        let list = |v: &[Value]| {
            v.iter()
                .map(|x| match x {
                    Value::String(s) => format!("\"{s}\""),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if let Some(j) = &self.job {
            parts.push(format!("\"job\" => \"{j}\""));
        }
        parts.push(format!("\"indexes\" => [{}]", list(&self.indexes)));
        parts.push(format!("\"ids\" => [{}]", list(&self.ids)));
        format!("{{{}}}", parts.join(", "))
    }
}

pub fn tasks_register(registry: &mut TaskRegistry, services: &Services) {
    registry.register(
        SSH,
        Arc::new(SshJob {
            services: services.clone(),
        }),
    );
}

struct SshJob {
    services: Services,
}

#[async_trait]
impl TaskJob for SshJob {
    async fn run(&self, ctx: &TaskContext, payload: Value) -> Result<String, TaskError> {
        let p: SshPayload = serde_json::from_value(payload)
            .map_err(|e| TaskError::failed(40000, format!("Invalid ssh payload: {e}")))?;
        if p.command != "setup" && p.command != "cleanup" {
            return Err(TaskError::failed(
                40000,
                format!("Unknown ssh command '{}'", p.command),
            ));
        }
        let instances: Vec<Instance> = repair::instance_list(ctx.db(), &p.deployment)
            .await?
            .into_iter()
            .filter(|i| i.vm.is_some() && p.target.selects(i))
            .collect();
        if instances.is_empty() {
            return Err(TaskError::failed(
                100,
                format!(
                    "No instance with a VM in deployment '{}' matched filter {}",
                    p.deployment,
                    p.target.describe()
                ),
            ));
        }
        let results = join_all(instances.iter().map(|i| self.instance_ssh(ctx, &p, i))).await;
        let mut sessions = Vec::new();
        for r in results {
            sessions.push(r?);
        }
        if p.command == "setup" {
            let mut text = serde_json::to_vec(&sessions).unwrap_or_default();
            text.push(b'\n');
            ctx.result_output().append(&text);
        }
        Ok(String::new())
    }
}

impl SshJob {
    /// One agent's `ssh` call, with its event; the session object for the result.
    async fn instance_ssh(
        &self,
        ctx: &TaskContext,
        p: &SshPayload,
        inst: &Instance,
    ) -> Result<Value, TaskError> {
        let res = self.agent_ssh(p, inst).await;
        let user = p
            .params
            .get("user_regex")
            .or_else(|| p.params.get("user"))
            .cloned()
            .unwrap_or(Value::Null);
        let mut context = Map::new();
        context.insert("user".into(), user);
        let event = NewEvent {
            parent_id: None,
            user: ctx.user.clone(),
            action: format!("{} ssh", p.command),
            object_type: "instance".into(),
            object_name: Some(inst.name()),
            task: Some(ctx.id.to_string()),
            deployment: Some(p.deployment.clone()),
            instance: Some(inst.name()),
            context,
            error: res.as_ref().err().map(|e| e.to_string()),
        };
        if let Err(e) = event_create(ctx.db(), &event).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "recording an ssh event");
        }
        res
    }

    async fn agent_ssh(&self, p: &SshPayload, inst: &Instance) -> Result<Value, TaskError> {
        let agent = inst
            .agent()
            .ok_or_else(|| TaskError::failed(100, format!("'{}' has no VM", inst.display())))?;
        if !repair::agent_responsive(&self.services, &agent).await {
            return Err(TaskError::failed(
                AGENT_TIMEOUT,
                format!(
                    "Timed out sending 'ssh' to instance: '{}', agent-id: '{agent}' after {} seconds",
                    inst.name(),
                    repair::PING_TIMEOUT.as_secs()
                ),
            ));
        }
        let reply = self
            .services
            .agents()?
            .client()
            .call(
                &agent,
                "ssh",
                vec![json!(p.command), Value::Object(p.params.clone())],
            )
            .await
            .map_err(|e| {
                repair::agent_failed(
                    &format!("Running ssh {} on '{}'", p.command, inst.display()),
                    &e,
                )
            })?;
        let mut session = match reply {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("status".into(), other);
                m
            }
        };
        session.insert("id".into(), json!(inst.record.uuid));
        session.insert("index".into(), json!(inst.record.index));
        session.insert("job".into(), json!(inst.record.group));
        // No gateway is configured in this director; the CLI reads empty values as none.
        session.entry("gateway_host").or_insert(Value::Null);
        session.entry("gateway_user").or_insert(Value::Null);
        Ok(Value::Object(session))
    }
}
