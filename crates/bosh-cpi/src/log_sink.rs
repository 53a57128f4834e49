//! Where CPI stderr lines and the response's `log` field go: the director attaches a sink
//! that appends to a task's CPI log.

use std::sync::Mutex;

/// Receives CPI log text as it arrives (stderr line by line, then the `log` field).
pub trait CpiLogSink: Send + Sync {
    fn append(&self, text: &str);
}

/// Keeps everything in memory; for tests and short-lived callers.
#[derive(Debug, Default)]
pub struct MemoryLogSink {
    text: Mutex<String>,
}

impl MemoryLogSink {
    pub fn contents(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CpiLogSink for MemoryLogSink {
    fn append(&self, text: &str) {
        self.text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
}
