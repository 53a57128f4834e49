//! The task event-log renderer: turns `type=event` JSON lines into the official CLI's
//! `Task N | HH:MM:SS | Stage tags: task (00:00:01)` lines, and prints the closing
//! `Task N Started/Finished/Duration` block. Plain mode prints the bytes as they come.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Where rendered text goes: raw text with no added newline (the official `BeginLinef`,
/// `PrintBlock`, `PrintErrorBlock` all write like this).
pub trait Sink {
    fn raw(&mut self, text: &str);
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
struct Event {
    time: i64,
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
    state: Option<String>,
    stage: Option<String>,
    task: Option<String>,
    tags: Option<Vec<String>>,
    data: Option<EventData>,
    error: Option<EventError>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
struct EventData {
    error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
struct EventError {
    message: Option<String>,
}

impl Event {
    fn stage(&self) -> &str {
        self.stage.as_deref().unwrap_or_default()
    }
    fn state(&self) -> &str {
        self.state.as_deref().unwrap_or_default()
    }
    fn tags(&self) -> &[String] {
        self.tags.as_deref().unwrap_or_default()
    }
    fn same(&self, other: &Event) -> bool {
        !self.stage().is_empty()
            && self.stage() == other.stage()
            && self.tags() == other.tags()
            && self.task == other.task
    }
    fn worth_keeping(&self) -> bool {
        self.state() != "in_progress"
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Started(i64),
    Output(i64),
    Ended,
}

pub struct TaskReporter {
    events_mode: bool,
    /// Kept events (not in_progress) of the current task, with the start time of each.
    events: Vec<(Event, Option<i64>)>,
    last: Option<Event>,
    markers: Vec<Marker>,
    rest: String,
}

/// `HH:MM:SS` of a duration in seconds.
pub fn duration_text(secs: i64) -> String {
    let s = secs.max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn utc(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// `Mon Jan  2 15:04:05 UTC 2006`, the official CLI's full time format.
pub fn time_full(secs: i64) -> String {
    utc(secs).format("%a %b %e %H:%M:%S UTC %Y").to_string()
}

fn time_hours(secs: i64) -> String {
    utc(secs).format("%H:%M:%S").to_string()
}

impl TaskReporter {
    /// `events_mode`: parse event JSON lines; otherwise print the raw output.
    pub fn new(events_mode: bool) -> TaskReporter {
        TaskReporter {
            events_mode,
            events: Vec::new(),
            last: None,
            markers: Vec::new(),
            rest: String::new(),
        }
    }

    fn no_output_since_started(&self, id: i64) -> bool {
        match self.markers.last() {
            None => true,
            Some(m) => *m == Marker::Started(id),
        }
    }

    pub fn task_started(&mut self, sink: &mut dyn Sink, id: i64) {
        if matches!(self.markers.last(), Some(Marker::Started(_))) {
            sink.raw("\n");
        }
        self.markers.push(Marker::Started(id));
        self.events.clear();
        sink.raw(&format!("Task {id}"));
    }

    pub fn task_output(&mut self, sink: &mut dyn Sink, id: i64, chunk: &[u8]) {
        if self.no_output_since_started(id) {
            sink.raw("\n");
            if !self.events_mode {
                sink.raw("\n");
            }
        }
        if self.events_mode {
            self.rest.push_str(&String::from_utf8_lossy(chunk));
            while let Some(idx) = self.rest.find('\n') {
                let line: String = self.rest[..idx].to_string();
                self.rest.drain(..=idx);
                if !line.is_empty() {
                    self.show_event(sink, id, &line);
                }
            }
        } else {
            sink.raw(&String::from_utf8_lossy(chunk));
        }
        self.markers.push(Marker::Output(id));
    }

    pub fn task_finished(&mut self, sink: &mut dyn Sink, id: i64, state: &str) {
        if let (Some((first, _)), Some((last, _))) = (self.events.first(), self.events.last()) {
            sink.raw(&format!(
                "\n\nTask {id} Started  {}\nTask {id} Finished {}\nTask {id} Duration {}",
                time_full(first.time),
                time_full(last.time),
                duration_text(last.time - first.time)
            ));
        }
        if self.no_output_since_started(id) {
            let mut title = state.to_string();
            if let Some(c) = title.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            sink.raw(&format!(". {title}\n"));
        } else {
            sink.raw(&format!("\nTask {id} {state}\n"));
        }
        self.markers.push(Marker::Ended);
    }

    fn show_event(&mut self, sink: &mut dyn Sink, id: i64, line: &str) {
        let Ok(event) = serde_json::from_str::<Event>(line) else {
            // The official CLI panics here; show the line instead.
            sink.raw(&format!("\nTask {id} | unparsable event: {line}"));
            return;
        };
        let start = self
            .events
            .iter()
            .find(|(e, _)| e.same(&event))
            .map(|(e, _)| e.time);
        let since_start = || {
            start
                .map(|s| duration_text(event.time - s))
                .unwrap_or_default()
        };
        // The official CLI indents by the UTF-8 length of the task id taken as a rune.
        let pad = " ".repeat(rune_len(id));
        let error_line = |ev: &Event| {
            format!(
                "\n     {pad}             L Error: {}",
                ev.data
                    .as_ref()
                    .and_then(|d| d.error.clone())
                    .unwrap_or_default()
            )
        };
        let continues = self.last.as_ref().is_some_and(|l| l.same(&event));
        if continues {
            match event.state() {
                "finished" => sink.raw(&format!(" ({})", since_start())),
                "failed" => {
                    sink.raw(&format!(" ({})", since_start()));
                    sink.raw(&error_line(&event));
                }
                _ => {}
            }
        } else {
            if self.last.is_some()
                && event.worth_keeping()
                && (event.kind.as_deref() == Some("deprecation") || event.error.is_some())
            {
                sink.raw("\n");
            }
            let prefix = format!("\nTask {id} | {} | ", time_hours(event.time));
            let mut desc = event.stage().to_string();
            if !event.tags().is_empty() {
                desc.push(' ');
                desc.push_str(&event.tags().join(", "));
            }
            let task = event.task.clone().unwrap_or_default();
            let message = event.message.clone().unwrap_or_default();
            match (event.kind.as_deref(), event.state()) {
                (Some("deprecation"), _) => {
                    sink.raw(&format!("{prefix}Deprecation: {message}"));
                }
                (Some("warning"), _) => sink.raw(&format!("{prefix}Warning: {message}")),
                (_, "started") => sink.raw(&format!("{prefix}{desc}: {task}")),
                (_, "finished") => {
                    sink.raw(&format!("{prefix}{desc}: {task} ({})", since_start()));
                }
                (_, "failed") => {
                    sink.raw(&format!("{prefix}{desc}: {task} ({})", since_start()));
                    sink.raw(&error_line(&event));
                }
                _ => {
                    if let Some(err) = &event.error {
                        sink.raw(&format!(
                            "{prefix}Error: {}",
                            err.message.clone().unwrap_or_default()
                        ));
                    }
                }
            }
        }
        if event.worth_keeping() {
            self.events.push((event.clone(), start));
            self.last = Some(event);
        }
    }
}

fn rune_len(id: i64) -> usize {
    match u32::try_from(id).ok().and_then(char::from_u32) {
        Some(c) => c.len_utf8(),
        // Invalid code points become U+FFFD.
        None => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Buf(String);
    impl Sink for Buf {
        fn raw(&mut self, text: &str) {
            self.0.push_str(text);
        }
    }

    #[test]
    fn renders_stages_and_summary() {
        let mut r = TaskReporter::new(true);
        let mut out = Buf(String::new());
        r.task_started(&mut out, 5);
        let chunk = concat!(
            r#"{"time":3600,"stage":"Deleting instances","tags":[],"total":1,"task":"web/0","index":1,"state":"started","progress":0}"#,
            "\n",
            r#"{"time":3601,"stage":"Deleting instances","tags":[],"total":1,"task":"web/0","index":1,"state":"finished","progress":100}"#,
            "\n",
            r#"{"time":3601,"stage":"Deleting properties","tags":["x","y"],"total":1,"task":"Destroying deployment","index":1,"state":"started","progress":0}"#,
            "\n{\"time\":3662,\"stage\":\"Deleting prop"
        );
        r.task_output(&mut out, 5, chunk.as_bytes());
        r.task_output(
            &mut out,
            5,
            b"erties\",\"tags\":[\"y\"],\"task\":\"Destroying deployment\",\"state\":\"failed\",\"data\":{\"error\":\"boom\"}}\n{\"time\":3662,\"error\":{\"code\":1,\"message\":\"bad\"}}\n",
        );
        r.task_finished(&mut out, 5, "error");
        assert_eq!(
            out.0,
            "Task 5\n\
             \nTask 5 | 01:00:00 | Deleting instances: web/0 (00:00:01)\
             \nTask 5 | 01:00:01 | Deleting properties x, y: Destroying deployment\
             \nTask 5 | 01:01:02 | Deleting properties y: Destroying deployment ()\
             \n                   L Error: boom\n\
             \nTask 5 | 01:01:02 | Error: bad\
             \n\nTask 5 Started  Thu Jan  1 01:00:00 UTC 1970\
             \nTask 5 Finished Thu Jan  1 01:01:02 UTC 1970\
             \nTask 5 Duration 00:01:02\
             \nTask 5 error\n"
        );
    }

    #[test]
    fn no_output_task() {
        let mut r = TaskReporter::new(true);
        let mut out = Buf(String::new());
        r.task_started(&mut out, 7);
        r.task_finished(&mut out, 7, "done");
        assert_eq!(out.0, "Task 7. Done\n");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_text(59), "00:00:59");
        assert_eq!(duration_text(69), "00:01:09");
        assert_eq!(duration_text(3669), "01:01:09");
    }
}
