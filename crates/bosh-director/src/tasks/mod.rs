//! Tasks: the persisted unit of director work that the CLI follows.
//!
//! - [`store`]: the `tasks` table (create, fetch, list, claim, finish, cancel, recovery).
//! - [`events`]: the per-task output files and the event-log writer (JSON lines, §3.4).
//! - [`runner`]: the [`runner::TaskJob`] trait task types implement, the context they get
//!   (checkpoints, cancel, locks, logs) and the worker pool.

pub mod events;
pub mod runner;
pub mod store;

use std::fmt;

pub use bosh_types::ids::TaskId;

/// Task states as the CLI knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Queued,
    Processing,
    Cancelling,
    Done,
    Error,
    Cancelled,
    Timeout,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Processing,
        TaskState::Cancelling,
        TaskState::Done,
        TaskState::Error,
        TaskState::Cancelled,
        TaskState::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Processing => "processing",
            TaskState::Cancelling => "cancelling",
            TaskState::Done => "done",
            TaskState::Error => "error",
            TaskState::Cancelled => "cancelled",
            TaskState::Timeout => "timeout",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Error | TaskState::Cancelled | TaskState::Timeout
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
