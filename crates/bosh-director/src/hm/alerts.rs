//! Alerts and their plugins: the log, webhooks (a JSON POST per alert) and the events table
//! (as BOSH HM's event logger: action `create`, object type `alert`).

use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::db::Db;
use crate::events::{NewEvent, event_create};

/// Alert severities, as the agent and HM number them.
pub const SEVERITY_ALERT: u8 = 1;
pub const SEVERITY_CRITICAL: u8 = 2;
pub const SEVERITY_WARNING: u8 = 4;

/// The category of alerts about a VM's health (what the meltdown guard counts).
pub const CATEGORY_VM_HEALTH: &str = "vm_health";

/// One alert, from an agent or from the health monitor itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    pub severity: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub title: String,
    pub summary: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The instance group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The instance uuid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl Alert {
    /// An alert raised by the health monitor (`source` names the part that raised it).
    pub fn new(severity: u8, title: &str, summary: String, source: &str) -> Alert {
        Alert {
            id: uuid::Uuid::new_v4().to_string(),
            severity,
            category: None,
            title: title.to_owned(),
            summary,
            source: source.to_owned(),
            deployment: None,
            job: None,
            instance_id: None,
            agent_id: None,
            created_at: crate::db::now_secs(),
        }
    }

    /// `job/uuid` when the alert is about an instance.
    pub fn instance(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.job.as_deref()?,
            self.instance_id.as_deref()?
        ))
    }

    /// The event logger's message: title, then the alert as the HM prints it.
    pub fn message(&self) -> String {
        let at = chrono::DateTime::from_timestamp(self.created_at, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%S UTC");
        format!(
            "{}. Alert @ {at}, severity {}: {}",
            self.title, self.severity, self.summary
        )
    }
}

/// Where alerts go. Delivery runs on its own task so a slow webhook never delays detection.
#[derive(Clone)]
pub struct AlertSink {
    tx: mpsc::UnboundedSender<Alert>,
}

impl AlertSink {
    /// Starts the delivery task; it ends when every sink is dropped.
    pub fn start(
        db: Db,
        webhooks: Vec<String>,
        events: bool,
    ) -> (AlertSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Alert>();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let handle = tokio::spawn(async move {
            while let Some(alert) = rx.recv().await {
                alert_log(&alert);
                for url in &webhooks {
                    // Fire and forget: one unreachable receiver must not hold back the others.
                    let (client, url, alert) = (client.clone(), url.clone(), alert.clone());
                    tokio::spawn(async move { webhook_post(&client, &url, &alert).await });
                }
                if events {
                    event_record(&db, &alert).await;
                }
            }
        });
        (AlertSink { tx }, handle)
    }

    pub fn send(&self, alert: Alert) {
        let _ = self.tx.send(alert);
    }
}

fn alert_log(alert: &Alert) {
    let instance = alert.instance().unwrap_or_default();
    if alert.severity <= SEVERITY_CRITICAL {
        tracing::warn!(
            severity = alert.severity, title = %alert.title, summary = %alert.summary,
            deployment = alert.deployment.as_deref().unwrap_or(""), %instance, "alert"
        );
    } else {
        tracing::info!(
            severity = alert.severity, title = %alert.title, summary = %alert.summary,
            deployment = alert.deployment.as_deref().unwrap_or(""), %instance, "alert"
        );
    }
}

async fn webhook_post(client: &reqwest::Client, url: &str, alert: &Alert) {
    match client.post(url).json(alert).send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::warn!(%url, status = %r.status(), "alert webhook refused the alert"),
        Err(e) => tracing::warn!(%url, error = %e, "alert webhook unreachable"),
    }
}

async fn event_record(db: &Db, alert: &Alert) {
    let mut context = Map::new();
    context.insert("message".to_owned(), json!(alert.message()));
    context.insert(
        "alert".to_owned(),
        serde_json::to_value(alert).unwrap_or(Value::Null),
    );
    let event = NewEvent {
        parent_id: None,
        user: super::resurrector::HM_USER.to_owned(),
        action: "create".to_owned(),
        object_type: "alert".to_owned(),
        object_name: Some(alert.id.clone()),
        task: None,
        deployment: alert.deployment.clone(),
        instance: alert.instance(),
        context,
        error: None,
    };
    if let Err(e) = event_create(db, &event).await {
        tracing::warn!(error = %e, "cannot record the alert event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_alert_names_it_and_prints_as_the_hm() {
        let mut a = Alert::new(
            SEVERITY_CRITICAL,
            "Agent unresponsive",
            "no heartbeat".into(),
            "hm",
        );
        assert_eq!(a.instance(), None);
        a.job = Some("web".into());
        a.instance_id = Some("u1".into());
        a.created_at = 0;
        assert_eq!(a.instance().as_deref(), Some("web/u1"));
        assert_eq!(
            a.message(),
            "Agent unresponsive. Alert @ 1970-01-01 00:00:00 UTC, severity 2: no heartbeat"
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["job"], "web");
        assert!(v.get("category").is_none());
    }
}
