//! Running tasks: the [`TaskJob`] trait, the [`TaskContext`] a job gets, and the worker pool.
//!
//! Workers claim queued tasks atomically from the database and sleep on a [`Notify`] when the
//! queue is empty; creating a task wakes one. Each successful claim wakes another worker, so
//! a burst of tasks fans out over idle workers. On PostgreSQL, where other director processes
//! may insert tasks, waits also end after a short interval.
//!
//! While a job runs, a heartbeat records a checkpoint and renews the task's locks. Jobs call
//! [`TaskContext::checkpoint`] between steps; it fails with [`TaskError::Cancelled`] once the
//! task has been asked to cancel.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::events::{EventLog, OutputFile, OutputType, TaskOutputs, debug_line};
use super::store::{self, NewTask, Task};
use super::{TaskId, TaskState};
use crate::db::{Db, DbError, DbKind};
use crate::error::error_chain;
use crate::locks::{self, LockSpec};

/// How a job ends when it does not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The task was cancelled at a checkpoint.
    #[error("Task {0} cancelled")]
    Cancelled(TaskId),
    /// A failure to report to the user with a BOSH error code.
    #[error("{message}")]
    Failed { code: u32, message: String },
    #[error("director database error")]
    Db(#[from] DbError),
}

impl TaskError {
    pub fn failed(code: u32, message: impl Into<String>) -> TaskError {
        TaskError::Failed {
            code,
            message: message.into(),
        }
    }
}

/// Ruby's code for "could not acquire a lock in time".
pub const LOCK_TIMEOUT_CODE: u32 = 100100;
const INTERNAL_CODE: u32 = 100;

/// A task type. Implementations hold whatever services they need (CPI, blobstore, …) and are
/// registered once under their type name in a [`TaskRegistry`].
#[async_trait]
pub trait TaskJob: Send + Sync + 'static {
    /// Does the work. `Ok` carries the task's short `result` (e.g. `/deployments/dep1`).
    /// Long output goes to [`TaskContext::result_output`].
    async fn run(&self, ctx: &TaskContext, payload: serde_json::Value)
    -> Result<String, TaskError>;

    /// Whether a task of this type, found running after a director restart, may simply run
    /// again from the start. Default: no, it is failed.
    fn resumable(&self) -> bool {
        false
    }
}

/// Task types by name.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    jobs: HashMap<String, Arc<dyn TaskJob>>,
}

impl TaskRegistry {
    pub fn new() -> TaskRegistry {
        TaskRegistry::default()
    }

    pub fn register(&mut self, task_type: &str, job: Arc<dyn TaskJob>) {
        self.jobs.insert(task_type.to_owned(), job);
    }

    pub fn get(&self, task_type: &str) -> Option<&Arc<dyn TaskJob>> {
        self.jobs.get(task_type)
    }
}

/// Timings of the task machinery.
#[derive(Debug, Clone, Copy)]
pub struct TaskTimings {
    /// How often a running task records a checkpoint and renews its locks.
    pub heartbeat: Duration,
    /// Lock lease; renewed every heartbeat.
    pub lock_ttl: Duration,
    /// How long [`TaskContext::lock`] waits for a busy lock.
    pub lock_wait: Duration,
}

impl Default for TaskTimings {
    fn default() -> Self {
        TaskTimings {
            heartbeat: Duration::from_secs(5),
            lock_ttl: Duration::from_secs(60),
            lock_wait: Duration::from_secs(300),
        }
    }
}

/// What a running job sees of its task.
pub struct TaskContext {
    pub id: TaskId,
    pub user: String,
    pub deployment: Option<String>,
    db: Db,
    events: EventLog,
    debug: OutputFile,
    cpi: OutputFile,
    result: OutputFile,
    timings: TaskTimings,
}

impl TaskContext {
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The event log the CLI follows.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// The `result` output (JSON lines for instance listings, etc.).
    pub fn result_output(&self) -> &OutputFile {
        &self.result
    }

    /// The `cpi` output (CPI requests and responses, secrets redacted by the caller).
    pub fn cpi_output(&self) -> &OutputFile {
        &self.cpi
    }

    /// A line in the debug log.
    pub fn debug(&self, message: &str) {
        self.debug.append_line(&debug_line("DEBUG", message));
    }

    pub fn info(&self, message: &str) {
        self.debug.append_line(&debug_line("INFO", message));
    }

    /// Records progress and stops the job if the task is being cancelled.
    pub async fn checkpoint(&self) -> Result<(), TaskError> {
        match store::task_checkpoint(&self.db, self.id).await? {
            Some(TaskState::Cancelling) | None => Err(TaskError::Cancelled(self.id)),
            Some(_) => Ok(()),
        }
    }

    /// Takes a lock for this task, waiting (with checkpoints, so cancel works) while another
    /// task holds it. It is released when the task ends, or earlier with
    /// [`TaskContext::unlock`].
    pub async fn lock(&self, spec: &LockSpec) -> Result<(), TaskError> {
        let deadline = tokio::time::Instant::now() + self.timings.lock_wait;
        let ttl = self.timings.lock_ttl.as_millis() as i64;
        let mut logged = false;
        loop {
            if locks::lock_acquire(&self.db, spec, self.id, ttl).await? {
                self.debug(&format!("Acquired lock {}", spec.name()));
                return Ok(());
            }
            if !logged {
                self.info(&format!("Waiting for lock {}", spec.name()));
                logged = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TaskError::failed(
                    LOCK_TIMEOUT_CODE,
                    format!("Failed to acquire lock for {}", spec.name()),
                ));
            }
            self.checkpoint().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn unlock(&self, spec: &LockSpec) -> Result<(), TaskError> {
        locks::lock_release(&self.db, spec, self.id).await?;
        Ok(())
    }
}

/// Creates tasks and runs them on a pool of workers.
#[derive(Clone)]
pub struct TaskQueue {
    db: Db,
    outputs: TaskOutputs,
    registry: Arc<TaskRegistry>,
    notify: Arc<Notify>,
    owner: Arc<String>,
    timings: TaskTimings,
    /// Tasks ended by this queue: the health monitor re-reads VM rows when it changes.
    ended: Arc<std::sync::atomic::AtomicU64>,
}

impl TaskQueue {
    pub fn new(
        db: Db,
        outputs: TaskOutputs,
        registry: TaskRegistry,
        timings: TaskTimings,
    ) -> TaskQueue {
        TaskQueue {
            db,
            outputs,
            registry: Arc::new(registry),
            notify: Arc::new(Notify::new()),
            owner: Arc::new(uuid::Uuid::new_v4().to_string()),
            timings,
            ended: Arc::default(),
        }
    }

    /// How many tasks this queue has ended; bumped after their locks are released.
    pub fn ended_count(&self) -> u64 {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn outputs(&self) -> &TaskOutputs {
        &self.outputs
    }

    /// Queues a task and wakes a worker. The endpoint then redirects to `/tasks/{id}`.
    pub async fn task_enqueue(&self, new: &NewTask) -> Result<Task, DbError> {
        let task = store::task_create(&self.db, new).await?;
        // Create the event file now so the first Range read sees an empty stream, not a 404.
        if let Err(err) = self.outputs.open_append(task.id, OutputType::Event) {
            tracing::warn!(task = %task.id, error = %err, "cannot create task output directory");
        }
        self.notify.notify_one();
        Ok(task)
    }

    /// Ends tasks a previous director left running: resumable types are queued again, the
    /// rest are failed with an explanation; their locks are released. Call before
    /// [`TaskQueue::workers_start`].
    pub async fn recover(&self) -> Result<usize, DbError> {
        let stale_before = match self.db.kind() {
            // SQLite is single-process: whatever is running now was left by a dead director.
            DbKind::Sqlite => None,
            // Other live directors share PostgreSQL; only a long-silent task is orphaned.
            DbKind::Postgres => {
                Some(crate::db::now_secs() - 6 * self.timings.heartbeat.as_secs().max(1) as i64)
            }
        };
        let orphans = store::task_list_orphaned(&self.db, stale_before).await?;
        let mut ended = 0;
        for task in orphans {
            locks::lock_release_for_task(&self.db, task.id).await?;
            let resumable = task.state == TaskState::Processing
                && self
                    .registry
                    .get(&task.task_type)
                    .is_some_and(|j| j.resumable());
            if resumable {
                if store::task_requeue(&self.db, task.id).await? {
                    tracing::info!(task = %task.id, "re-queued a resumable task left running by a previous director");
                }
                continue;
            }
            let (state, message) = if task.state == TaskState::Cancelling {
                (TaskState::Cancelled, "Task cancelled".to_owned())
            } else {
                (
                    TaskState::Error,
                    "Task was interrupted: the director stopped while it was running".to_owned(),
                )
            };
            if store::task_end_orphan(&self.db, task.id, state, &message).await? {
                if state == TaskState::Error
                    && let Ok(out) = self.outputs.open_append(task.id, OutputType::Event)
                {
                    EventLog::new(out).error(INTERNAL_CODE, &message);
                }
                tracing::warn!(task = %task.id, state = %state, "ended a task left running by a previous director");
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Starts `count` workers on the current Tokio runtime.
    pub fn workers_start(&self, count: usize) {
        for n in 0..count {
            let queue = self.clone();
            tokio::spawn(async move { queue.worker_loop(n).await });
        }
    }

    async fn worker_loop(self, n: usize) {
        loop {
            // Register interest before looking, so a task created in between is not missed.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match store::task_claim(&self.db, &self.owner).await {
                Ok(Some(task)) => {
                    // Let another idle worker look for more queued work.
                    self.notify.notify_one();
                    tracing::info!(worker = n, task = %task.id, task_type = %task.task_type, "task started");
                    self.task_run(task).await;
                }
                Ok(None) => match self.db.kind() {
                    DbKind::Sqlite => notified.await,
                    DbKind::Postgres => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), notified).await;
                    }
                },
                Err(err) => {
                    tracing::error!(worker = n, error = %error_chain(&err), "cannot claim a task");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn task_run(&self, task: Task) {
        let id = task.id;
        let open = |t| self.outputs.open_append(id, t);
        let (events, debug, cpi, result) = match (
            open(OutputType::Event),
            open(OutputType::Debug),
            open(OutputType::Cpi),
            open(OutputType::Result),
        ) {
            (Ok(e), Ok(d), Ok(c), Ok(r)) => (e, d, c, r),
            _ => {
                self.task_end(id, TaskState::Error, "Cannot create task output files")
                    .await;
                return;
            }
        };
        let ctx = TaskContext {
            id,
            user: task.user.clone(),
            deployment: task.deployment.clone(),
            db: self.db.clone(),
            events: EventLog::new(events),
            debug,
            cpi,
            result,
            timings: self.timings,
        };
        let Some(job) = self.registry.get(&task.task_type).cloned() else {
            let message = format!("Unknown task type '{}'", task.task_type);
            ctx.events.error(INTERNAL_CODE, &message);
            self.task_end(id, TaskState::Error, &message).await;
            return;
        };
        ctx.info(&format!("Starting task: {}", task.description));

        let heartbeat = {
            let db = self.db.clone();
            let timings = self.timings;
            tokio::spawn(async move {
                let ttl = timings.lock_ttl.as_millis() as i64;
                loop {
                    tokio::time::sleep(timings.heartbeat).await;
                    if let Err(err) = store::task_checkpoint(&db, id).await {
                        tracing::warn!(task = %id, error = %error_chain(&err), "task heartbeat failed");
                    }
                    if let Err(err) = locks::lock_renew_for_task(&db, id, ttl).await {
                        tracing::warn!(task = %id, error = %error_chain(&err), "lock renewal failed");
                    }
                }
            })
        };
        // A panicking job must still end its task, so run it in its own Tokio task.
        let outcome = {
            let ctx = Arc::new(ctx);
            let run_ctx = ctx.clone();
            let payload = task.payload.clone();
            let joined = tokio::spawn(async move { job.run(&run_ctx, payload).await }).await;
            heartbeat.abort();
            (joined, ctx)
        };
        let (joined, ctx) = outcome;
        let (state, result) = match joined {
            Ok(Ok(result)) => (TaskState::Done, result),
            Ok(Err(TaskError::Cancelled(_))) => {
                (TaskState::Cancelled, format!("Task {id} cancelled"))
            }
            Ok(Err(TaskError::Failed { code, message })) => {
                ctx.events.error(code, &message);
                (TaskState::Error, message)
            }
            Ok(Err(err @ TaskError::Db(_))) => {
                let message = "Director database error while running the task".to_owned();
                ctx.debug(&error_chain(&err));
                ctx.events.error(INTERNAL_CODE, &message);
                (TaskState::Error, message)
            }
            Err(join_err) => {
                let message = "Task failed unexpectedly (internal director error)".to_owned();
                tracing::error!(task = %id, error = %join_err, "task job panicked");
                ctx.events.error(INTERNAL_CODE, &message);
                (TaskState::Error, message)
            }
        };
        ctx.info(&format!("Task {id} ended: {state}"));
        self.task_end(id, state, &result).await;
    }

    async fn task_end(&self, id: TaskId, state: TaskState, result: &str) {
        if let Err(err) = locks::lock_release_for_task(&self.db, id).await {
            tracing::error!(task = %id, error = %error_chain(&err), "cannot release task locks");
        }
        match store::task_finish(&self.db, id, &self.owner, state, result).await {
            Ok(true) => tracing::info!(task = %id, state = %state, "task ended"),
            Ok(false) => {
                tracing::warn!(task = %id, "task was ended elsewhere before it finished here")
            }
            Err(err) => {
                tracing::error!(task = %id, error = %error_chain(&err), "cannot record task end")
            }
        }
        self.ended
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}
