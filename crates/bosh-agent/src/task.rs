//! Agent tasks (§2.3): asynchronous actions run one at a time by a single worker, behind a
//! queue of five; finished tasks are kept until the agent restarts.

use bosh_agent_protocol::{TaskHandle, TaskState};
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many tasks may wait behind the running one before enqueueing blocks.
const QUEUE_DEPTH: usize = 5;

pub type TaskFuture = BoxFuture<'static, Result<Value, String>>;

#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    Running,
    Done(Value),
    Failed(String),
}

struct TaskRecord {
    outcome: TaskOutcome,
    cancel: CancellationToken,
    cancellable: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("Task with id {0} could not be found")]
    NotFound(String),
    #[error("not supported")]
    CancelNotSupported,
    #[error("task queue closed")]
    Closed,
}

struct Queued {
    id: String,
    work: TaskFuture,
}

#[derive(Clone)]
pub struct TaskManager {
    records: Arc<Mutex<HashMap<String, TaskRecord>>>,
    queue: mpsc::Sender<Queued>,
}

impl TaskManager {
    /// Starts the worker on the current Tokio runtime.
    pub fn start() -> TaskManager {
        let (queue, mut rx) = mpsc::channel::<Queued>(QUEUE_DEPTH);
        let records: Arc<Mutex<HashMap<String, TaskRecord>>> = Arc::default();
        let worker_records = records.clone();
        tokio::spawn(async move {
            while let Some(Queued { id, work }) = rx.recv().await {
                let outcome = match work.await {
                    Ok(v) => TaskOutcome::Done(v),
                    Err(e) => TaskOutcome::Failed(e),
                };
                tracing::info!(task = %id, ok = matches!(outcome, TaskOutcome::Done(_)), "task finished");
                if let Some(r) = lock(&worker_records).get_mut(&id) {
                    r.outcome = outcome;
                }
            }
        });
        TaskManager { records, queue }
    }

    /// Registers and enqueues a task; `make` gets the task's cancellation token. Blocks while
    /// the queue is full, as the real agent's inbox does.
    pub async fn enqueue(
        &self,
        cancellable: bool,
        make: impl FnOnce(CancellationToken) -> TaskFuture,
    ) -> Result<TaskHandle, TaskError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.enqueue_with_id(id, cancellable, make).await
    }

    pub async fn enqueue_with_id(
        &self,
        id: String,
        cancellable: bool,
        make: impl FnOnce(CancellationToken) -> TaskFuture,
    ) -> Result<TaskHandle, TaskError> {
        let cancel = CancellationToken::new();
        let work = make(cancel.clone());
        lock(&self.records).insert(
            id.clone(),
            TaskRecord {
                outcome: TaskOutcome::Running,
                cancel,
                cancellable,
            },
        );
        self.queue
            .send(Queued {
                id: id.clone(),
                work,
            })
            .await
            .map_err(|_| TaskError::Closed)?;
        Ok(TaskHandle {
            agent_task_id: id,
            state: TaskState::Running,
        })
    }

    /// Records an already finished task (a persistent task resumed on boot).
    pub fn insert_finished(&self, id: String, value: Value) {
        lock(&self.records).insert(
            id,
            TaskRecord {
                outcome: TaskOutcome::Done(value),
                cancel: CancellationToken::new(),
                cancellable: false,
            },
        );
    }

    pub fn outcome(&self, id: &str) -> Result<TaskOutcome, TaskError> {
        lock(&self.records)
            .get(id)
            .map(|r| r.outcome.clone())
            .ok_or_else(|| TaskError::NotFound(id.into()))
    }

    /// Signals cancellation; only tasks of cancellable actions (drain) accept it.
    pub fn cancel(&self, id: &str) -> Result<(), TaskError> {
        let records = lock(&self.records);
        let r = records
            .get(id)
            .ok_or_else(|| TaskError::NotFound(id.into()))?;
        if !r.cancellable {
            return Err(TaskError::CancelNotSupported);
        }
        r.cancel.cancel();
        Ok(())
    }
}

// A poisoned lock only means another thread panicked mid-update of a plain map; the data is
// still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    async fn wait_done(tm: &TaskManager, id: &str) -> TaskOutcome {
        for _ in 0..200 {
            let o = tm.outcome(id).unwrap();
            if o != TaskOutcome::Running {
                return o;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} never finished");
    }

    #[tokio::test]
    async fn tasks_run_one_at_a_time_and_keep_results() {
        let tm = TaskManager::start();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let first = tm
            .enqueue(false, |_| {
                Box::pin(async move {
                    rx.await.ok();
                    Ok(json!("first"))
                })
            })
            .await
            .unwrap();
        let second = tm
            .enqueue(false, |_| Box::pin(async { Err("boom".to_string()) }))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The second waits behind the first.
        assert_eq!(
            tm.outcome(&second.agent_task_id).unwrap(),
            TaskOutcome::Running
        );
        tx.send(()).unwrap();
        assert_eq!(
            wait_done(&tm, &first.agent_task_id).await,
            TaskOutcome::Done(json!("first"))
        );
        assert_eq!(
            wait_done(&tm, &second.agent_task_id).await,
            TaskOutcome::Failed("boom".into())
        );
        assert_eq!(
            tm.outcome("nope").unwrap_err().to_string(),
            "Task with id nope could not be found"
        );
        assert_eq!(
            tm.cancel(&first.agent_task_id),
            Err(TaskError::CancelNotSupported)
        );
    }

    #[tokio::test]
    async fn cancellable_tasks_see_the_token() {
        let tm = TaskManager::start();
        let h = tm
            .enqueue(true, |cancel| {
                Box::pin(async move {
                    cancel.cancelled().await;
                    Err("canceled".to_string())
                })
            })
            .await
            .unwrap();
        tm.cancel(&h.agent_task_id).unwrap();
        assert_eq!(
            wait_done(&tm, &h.agent_task_id).await,
            TaskOutcome::Failed("canceled".into())
        );
    }
}
