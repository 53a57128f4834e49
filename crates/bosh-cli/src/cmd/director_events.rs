//! `events`: the director's event log (`director-api.md` §5.11), with the official CLI's
//! filters, query parameters and table.

use anyhow::Context;
use serde::Deserialize;

use super::{Out, Session, form_escape};
use crate::GlobalOpts;
use crate::director::reporter::time_full;
use crate::ui::{Table, TableOptions};

#[derive(clap::Subcommand, Debug)]
pub enum EventCommand {
    /// List events
    #[command(name = "events")]
    Events(EventsArgs),
}

#[derive(clap::Args, Debug, Default)]
pub struct EventsArgs {
    /// Show events with ID less than the given ID
    #[arg(long = "before-id")]
    pub before_id: Option<String>,
    /// Show events before the given timestamp (ex: 2016-05-08 17:26:32)
    #[arg(long = "before")]
    pub before: Option<String>,
    /// Show events after the given timestamp (ex: 2016-05-08 17:26:32)
    #[arg(long = "after")]
    pub after: Option<String>,
    /// Show events with the given task ID
    #[arg(long = "task")]
    pub task: Option<String>,
    /// Show events with given instance
    #[arg(long = "instance")]
    pub instance: Option<String>,
    /// Show events with given user
    #[arg(long = "event-user")]
    pub user: Option<String>,
    /// Show events with given action
    #[arg(long = "action")]
    pub action: Option<String>,
    /// Show events with given object type
    #[arg(long = "object-type")]
    pub object_type: Option<String>,
    /// Show events with given object name
    #[arg(long = "object-name")]
    pub object_name: Option<String>,
}

/// One element of `GET /events`; absent or null fields read as empty, as Go decodes them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    #[serde(deserialize_with = "null_string")]
    pub id: String,
    #[serde(deserialize_with = "null_string")]
    pub parent_id: String,
    pub timestamp: i64,
    #[serde(deserialize_with = "null_string")]
    pub user: String,
    #[serde(deserialize_with = "null_string")]
    pub action: String,
    #[serde(deserialize_with = "null_string")]
    pub object_type: String,
    #[serde(deserialize_with = "null_string")]
    pub object_name: String,
    #[serde(deserialize_with = "null_string")]
    pub task: String,
    #[serde(deserialize_with = "null_string")]
    pub deployment: String,
    #[serde(deserialize_with = "null_string")]
    pub instance: String,
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(deserialize_with = "null_string")]
    pub error: String,
}

fn null_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

pub fn run(cmd: EventCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        EventCommand::Events(args) => events(out, global, &args),
    }
}

/// `/events` with the filters given, keys sorted as Go's `url.Values.Encode` sorts them.
pub fn events_path(args: &EventsArgs, deployment: Option<&str>) -> String {
    let params = [
        ("action", args.action.as_deref()),
        ("after_time", args.after.as_deref()),
        ("before_id", args.before_id.as_deref()),
        ("before_time", args.before.as_deref()),
        ("deployment", deployment),
        ("instance", args.instance.as_deref()),
        ("object_name", args.object_name.as_deref()),
        ("object_type", args.object_type.as_deref()),
        ("task", args.task.as_deref()),
        ("user", args.user.as_deref()),
    ];
    let query = params
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
        .map(|(k, v)| format!("{k}={}", form_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
    if query.is_empty() {
        "/events".to_owned()
    } else {
        format!("/events?{query}")
    }
}

fn events(out: &mut Out, global: &GlobalOpts, args: &EventsArgs) -> anyhow::Result<()> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let path = events_path(args, global.deployment.as_deref());
    let list: Vec<Event> = client.get_json(&path).context("Finding events")?;
    out.table(&events_table(&list), &TableOptions::default());
    Ok(())
}

/// The official table: director order (newest first), `ID <- parent` for the end event of
/// a begin/end pair, the context as YAML.
pub fn events_table(list: &[Event]) -> Table {
    let rows = list
        .iter()
        .map(|e| {
            let id = if e.parent_id.is_empty() {
                e.id.clone()
            } else {
                format!("{} <- {}", e.id, e.parent_id)
            };
            vec![
                id,
                if e.timestamp == 0 {
                    String::new()
                } else {
                    time_full(e.timestamp)
                },
                e.user.clone(),
                e.action.clone(),
                e.object_type.clone(),
                e.object_name.clone(),
                e.task.clone(),
                e.deployment.clone(),
                e.instance.clone(),
                context_text(e.context.as_ref()),
                e.error.clone(),
            ]
        })
        .collect();
    Table {
        content: "events".into(),
        header: [
            "ID",
            "Time",
            "User",
            "Action",
            "Object Type",
            "Object Name",
            "Task ID",
            "Deployment",
            "Instance",
            "Context",
            "Error",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![],
    }
}

/// A non-empty context as yaml.v2 marshals a Go map (keys sorted), trimmed.
fn context_text(context: Option<&serde_json::Map<String, serde_json::Value>>) -> String {
    let Some(map) = context.filter(|m| !m.is_empty()) else {
        return String::new();
    };
    bosh_yaml::to_string_sorted(&bosh_yaml::to_value(map))
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_sorted_and_escaped_as_go_encodes_them() {
        let args = EventsArgs {
            before: Some("2016-05-08 17:26:32".into()),
            task: Some("7".into()),
            user: Some("admin".into()),
            object_type: Some("stemcell".into()),
            ..EventsArgs::default()
        };
        assert_eq!(
            events_path(&args, Some("dep")),
            "/events?before_time=2016-05-08+17%3A26%3A32&deployment=dep&object_type=stemcell&task=7&user=admin"
        );
        assert_eq!(events_path(&EventsArgs::default(), None), "/events");
    }

    #[test]
    fn rows_link_parents_and_print_context_as_yaml() {
        let list: Vec<Event> = serde_json::from_str(
            r#"[{"id":"2","parent_id":"1","timestamp":1700000000,"user":"admin","action":"create",
                 "object_type":"stemcell","object_name":"ubuntu","task":"3","deployment":null,
                 "instance":null,"context":{"version":"1.5","b":{"x":1}}},
                {"id":"1","timestamp":1699999999,"user":"admin","action":"create",
                 "object_type":"stemcell","object_name":"ubuntu","task":"3","context":{},
                 "error":"boom"}]"#,
        )
        .unwrap();
        let table = events_table(&list);
        assert_eq!(table.rows[0][0], "2 <- 1");
        assert_eq!(table.rows[0][1], "Tue Nov 14 22:13:20 UTC 2023");
        assert_eq!(table.rows[0][9], "b:\n  x: 1\nversion: \"1.5\"");
        assert_eq!(table.rows[1][0], "1");
        assert_eq!(table.rows[1][9], "");
        assert_eq!(table.rows[1][10], "boom");
    }
}
