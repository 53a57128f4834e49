//! Alerts for the health monitor (§6.2). The real agent receives monit's alert mails and maps
//! the event name to a severity; our supervisor hands us the same events directly.

use crate::supervisor::ServiceEvent;
use bosh_agent_protocol::Alert;
use serde_json::{Map, Value};

/// Severity levels as the real agent numbers them.
pub const SEVERITY_ALERT: u8 = 1;
pub const SEVERITY_CRITICAL: u8 = 2;
pub const SEVERITY_ERROR: u8 = 3;
pub const SEVERITY_WARNING: u8 = 4;
/// Unknown events (the real agent's default).
pub const SEVERITY_DEFAULT: u8 = SEVERITY_CRITICAL;

/// The severity of a monit event (case-insensitive), `None` for events the agent ignores
/// ("succeeded", "not changed", "exists", ...).
pub fn severity(event: &str) -> Option<u8> {
    let event = event.to_ascii_lowercase();
    let known = match event.as_str() {
        "connection failed" | "execution failed" | "monit instance failed" | "does not exist" => {
            SEVERITY_ALERT
        }
        "checksum failed" | "icmp failed" | "pid failed" | "ppid failed" | "timeout"
        | "uid failed" => SEVERITY_CRITICAL,
        "connection changed"
        | "content failed"
        | "content doesn't match"
        | "data access error"
        | "filesystem flags failed"
        | "gid failed"
        | "heartbeat failed"
        | "invalid type"
        | "permission failed"
        | "resource limit matched"
        | "size failed"
        | "size changed"
        | "timestamp failed" => SEVERITY_ERROR,
        "action done" | "exists" | "content match" | "timeout recovery" => return None,
        "monit instance changed" | "monit instance not changed" => return None,
        e if e.ends_with(" succeeded") || e.ends_with(" not changed") => return None,
        e if e.ends_with(" changed") => SEVERITY_WARNING,
        _ => SEVERITY_DEFAULT,
    };
    Some(known)
}

/// The IPs of the VM's networks from settings, sorted as the real agent sorts them.
pub fn network_ips(networks: &Map<String, Value>) -> Vec<String> {
    let mut ips: Vec<String> = networks
        .values()
        .filter_map(|n| n.get("ip").and_then(Value::as_str))
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned)
        .collect();
    ips.sort();
    ips
}

/// The alert for `event`, or `None` when the agent would not report it.
/// Title: `<service> (<sorted IPs>) - <event> - <action>`; summary: the description.
pub fn from_event(event: &ServiceEvent, ips: &[String], created_at: i64) -> Option<Alert> {
    let severity = severity(event.event)?;
    let service = if ips.is_empty() {
        event.service.clone()
    } else {
        format!("{} ({})", event.service, ips.join(", "))
    };
    Some(Alert {
        id: uuid::Uuid::new_v4().to_string(),
        severity,
        title: format!("{service} - {} - {}", event.event, event.action),
        summary: event.description.clone(),
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn severities_follow_the_real_agent() {
        assert_eq!(severity("Does not exist"), Some(SEVERITY_ALERT));
        assert_eq!(severity("pid failed"), Some(SEVERITY_CRITICAL));
        assert_eq!(severity("Resource limit matched"), Some(SEVERITY_ERROR));
        assert_eq!(severity("checksum changed"), Some(SEVERITY_WARNING));
        assert_eq!(severity("connection changed"), Some(SEVERITY_ERROR));
        assert_eq!(severity("Exists"), None);
        assert_eq!(severity("pid succeeded"), None);
        assert_eq!(severity("uid not changed"), None);
        assert_eq!(severity("something new"), Some(SEVERITY_DEFAULT));
    }

    #[test]
    fn title_names_service_ips_event_and_action() {
        let networks = json!({"b": {"ip": "10.0.0.9"}, "a": {"ip": "10.0.0.10"}, "c": {}});
        let ips = network_ips(networks.as_object().unwrap());
        let event = ServiceEvent {
            service: "web".into(),
            event: "Does not exist",
            action: "restart",
            description: "process is not running".into(),
        };
        let alert = from_event(&event, &ips, 1_700_000_000).unwrap();
        assert_eq!(
            alert.title,
            "web (10.0.0.10, 10.0.0.9) - Does not exist - restart"
        );
        assert_eq!(alert.summary, "process is not running");
        assert_eq!(alert.severity, 1);
        assert_eq!(alert.created_at, 1_700_000_000);
        let quiet = ServiceEvent {
            event: "Exists",
            ..event
        };
        assert!(from_event(&quiet, &ips, 0).is_none());
    }
}
