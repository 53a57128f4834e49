//! Per-task output streams (`event`, `debug`, `cpi`, `result`) as append-only files under
//! `DIR/tasks/N/`, and the event-log writer.
//!
//! Every event line is one `write` of a complete JSON object ending in `\n`, so a reader
//! serving `Range: bytes=N-` never hands the CLI half a line followed by garbage (the CLI
//! panics on a line that does not parse). Times are integer Unix seconds.

use serde_json::{Map, Value, json};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::TaskId;
use crate::db::now_secs;

/// The four output streams of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputType {
    Event,
    Debug,
    Cpi,
    Result,
}

impl OutputType {
    pub fn parse(s: &str) -> Option<OutputType> {
        match s {
            "event" => Some(OutputType::Event),
            "debug" => Some(OutputType::Debug),
            "cpi" => Some(OutputType::Cpi),
            "result" => Some(OutputType::Result),
            _ => None,
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            OutputType::Event => "event",
            OutputType::Debug => "debug",
            OutputType::Cpi => "cpi",
            OutputType::Result => "result",
        }
    }
}

/// Where task outputs live: `root/N/{event,debug,cpi,result}`.
#[derive(Debug, Clone)]
pub struct TaskOutputs {
    root: PathBuf,
}

impl TaskOutputs {
    pub fn new(root: PathBuf) -> TaskOutputs {
        TaskOutputs { root }
    }

    pub fn path(&self, id: TaskId, output: OutputType) -> PathBuf {
        self.root.join(id.to_string()).join(output.file_name())
    }

    /// Opens an output for appending, creating the task directory.
    pub fn open_append(&self, id: TaskId, output: OutputType) -> std::io::Result<OutputFile> {
        let path = self.path(id, output);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(OutputFile {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }
}

/// One append-only output stream, shareable across the tasks of a job.
#[derive(Debug, Clone)]
pub struct OutputFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl OutputFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends bytes in one write. Output is best effort: a full disk must not turn a
    /// successful deploy into a failed one, so errors are logged, not returned.
    pub fn append(&self, bytes: &[u8]) {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = f.write_all(bytes) {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot write task output");
        }
    }

    /// Appends one line (a `\n` is added).
    pub fn append_line(&self, line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.append(&buf);
    }
}

/// Writes the event log in the format the CLI renders (director-api §3.4).
#[derive(Debug, Clone)]
pub struct EventLog {
    out: OutputFile,
}

impl EventLog {
    pub fn new(out: OutputFile) -> EventLog {
        EventLog { out }
    }

    fn write(&self, mut event: Map<String, Value>) {
        event.insert("time".to_owned(), json!(now_secs()));
        // `time` first reads better in raw output; serde_json keeps insertion order.
        let mut ordered = Map::new();
        if let Some(t) = event.remove("time") {
            ordered.insert("time".to_owned(), t);
        }
        ordered.extend(event);
        self.out.append_line(&Value::Object(ordered).to_string());
    }

    /// Starts a stage of `total` tasks (use `None` when the count is unknown).
    pub fn stage(&self, name: &str, tags: &[&str], total: Option<u32>) -> Stage {
        Stage {
            inner: Arc::new(StageInner {
                log: self.clone(),
                name: name.to_owned(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                total,
                next_index: AtomicU32::new(1),
            }),
        }
    }

    /// The task-level failure line (`Error: …` in the CLI).
    pub fn error(&self, code: u32, message: &str) {
        let mut m = Map::new();
        m.insert(
            "error".to_owned(),
            json!({"code": code, "message": message}),
        );
        self.write(m);
    }

    /// A `warning` line.
    pub fn warning(&self, message: &str) {
        let mut m = Map::new();
        m.insert("type".to_owned(), json!("warning"));
        m.insert("message".to_owned(), json!(message));
        self.write(m);
    }

    /// A `deprecation` line.
    pub fn deprecation(&self, message: &str) {
        let mut m = Map::new();
        m.insert("type".to_owned(), json!("deprecation"));
        m.insert("message".to_owned(), json!(message));
        self.write(m);
    }
}

#[derive(Debug)]
struct StageInner {
    log: EventLog,
    name: String,
    tags: Vec<String>,
    total: Option<u32>,
    next_index: AtomicU32,
}

/// A stage; cloneable so parallel work can report into the same stage.
#[derive(Debug, Clone)]
pub struct Stage {
    inner: Arc<StageInner>,
}

impl Stage {
    /// Starts a task in this stage (writes its `started` line). Indexes count up from 1.
    pub fn task(&self, name: &str) -> StageTask {
        let index = self.inner.next_index.fetch_add(1, Ordering::SeqCst);
        let t = StageTask {
            stage: self.clone(),
            name: name.to_owned(),
            index,
            ended: false,
        };
        t.write("started", 0, None);
        t
    }
}

/// A task within a stage. Dropping it without [`StageTask::finished`] or
/// [`StageTask::failed`] writes nothing more; the CLI then shows it as still running.
#[derive(Debug)]
pub struct StageTask {
    stage: Stage,
    name: String,
    index: u32,
    ended: bool,
}

impl StageTask {
    fn write(&self, state: &str, progress: u32, data: Option<Value>) {
        let s = &self.stage.inner;
        let mut m = Map::new();
        m.insert("stage".to_owned(), json!(s.name));
        m.insert("tags".to_owned(), json!(s.tags));
        m.insert("total".to_owned(), json!(s.total));
        m.insert("task".to_owned(), json!(self.name));
        m.insert("index".to_owned(), json!(self.index));
        m.insert("state".to_owned(), json!(state));
        m.insert("progress".to_owned(), json!(progress.min(100)));
        if let Some(d) = data {
            m.insert("data".to_owned(), d);
        }
        s.log.write(m);
    }

    /// An `in_progress` line with a status text.
    pub fn progress(&self, percent: u32, status: &str) {
        self.write("in_progress", percent, Some(json!({"status": status})));
    }

    pub fn finished(mut self) {
        self.ended = true;
        self.write("finished", 100, None);
    }

    /// A `failed` line; the CLI prints `L Error: {message}`.
    pub fn failed(mut self, message: &str) {
        self.ended = true;
        self.write("failed", 100, Some(json!({"error": message})));
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

/// Formats one debug-log line the way the Ruby director's logger does.
pub fn debug_line(level: &str, message: &str) -> String {
    let now = chrono::Utc::now();
    format!(
        "{}, [{} #{}] {:>5} -- DirectorJobRunner: {}",
        &level[..1],
        now.format("%Y-%m-%dT%H:%M:%S%.6f"),
        std::process::id(),
        level,
        message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_complete_json_with_int_times_and_counting_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = TaskOutputs::new(dir.path().to_owned());
        let id = TaskId(7);
        let log = EventLog::new(outputs.open_append(id, OutputType::Event).unwrap());
        let stage = log.stage("Deleting instances", &["web"], Some(2));
        let a = stage.task("web/0");
        a.progress(50, "draining");
        a.finished();
        stage.task("web/1").failed("boom");
        log.error(100, "it broke");
        let text = std::fs::read_to_string(outputs.path(id, OutputType::Event)).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert!(lines.iter().all(|l| l["time"].is_i64()));
        assert_eq!(lines[0]["state"], "started");
        assert_eq!(lines[0]["index"], 1);
        assert_eq!(lines[0]["tags"], json!(["web"]));
        assert_eq!(lines[1]["data"]["status"], "draining");
        assert_eq!(lines[2]["state"], "finished");
        assert_eq!(lines[2]["progress"], 100);
        assert_eq!(lines[3]["index"], 2);
        assert_eq!(lines[4]["data"]["error"], "boom");
        assert_eq!(lines[5]["error"]["code"], 100);
        assert!(lines[5].get("stage").is_none());
    }
}
