//! Supervised background tasks: every long-lived task the broker spawns (the group-commit
//! flusher, the schedules, the coordinator actors and their marker writers, the accept loops)
//! goes through [`Supervisor::spawn`], never a bare `tokio::spawn`.
//!
//! A supervised task that panics is logged at ERROR with its name and the panic message,
//! counted (`sluice_background_task_failures_total{task}`), and reported to the broker's main
//! loop, which then shuts the broker down and exits with an error: the broker fails loudly, as
//! Kafka halts on a fatal error in one of its threads, instead of silently turning acks into
//! timeouts. These tasks own state that a restart could not rebuild safely (a coordinator's
//! in-memory groups, the flusher's queue); a service manager restarting the process goes
//! through the normal recovery. A task that returns has finished its work (its channel closed at
//! shutdown) and is not a failure.

use std::future::Future;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A supervised task's failure, as reported to the broker's main loop.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    pub task: &'static str,
    pub reason: String,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "background task `{}` failed: {}", self.task, self.reason)
    }
}

/// Spawns supervised tasks; cheap to clone. Failures go to the receiver [`Supervisor::new`]
/// returned.
#[derive(Debug, Clone)]
pub struct Supervisor {
    failures: mpsc::UnboundedSender<TaskFailure>,
}

impl Supervisor {
    pub fn new() -> (Supervisor, mpsc::UnboundedReceiver<TaskFailure>) {
        let (failures, receiver) = mpsc::unbounded_channel();
        (Supervisor { failures }, receiver)
    }

    /// Spawns `task` on the current runtime under supervision. The returned handle is the
    /// watcher's: awaiting it waits for the task; aborting it aborts the task.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let failures = self.failures.clone();
        let inner = tokio::spawn(task);
        // Aborting the watcher (even before it first runs) drops this, aborting the task too.
        let guard = AbortOnDrop(inner.abort_handle());
        tokio::spawn(async move {
            let _guard = guard;
            match inner.await {
                Ok(()) => {}
                Err(e) if e.is_cancelled() => {}
                Err(e) => {
                    let reason = panic_message(e.into_panic());
                    tracing::error!(task = name, reason = %reason, "background task panicked; stopping the broker");
                    crate::metrics::background_task_failed(name);
                    // The receiver is gone only when the broker is already stopping.
                    let _ = failures.send(TaskFailure { task: name, reason });
                }
            }
        })
    }
}

/// Runs `f`, a long blocking piece of work on a runtime thread (an internal log compaction,
/// creating or deleting thousands of partition directories), so that the worker's other tasks
/// move to another thread meanwhile (`block_in_place`, on a multi-threaded runtime; a
/// current-thread runtime, as in tests, just runs it). Without this a task queued behind the
/// blocked worker (even a Metadata request on another connection) would wait for it.
pub fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported_by_name() {
        let (supervisor, mut failures) = Supervisor::new();
        supervisor.spawn("finishes", async {}).await.ok();
        let watcher = supervisor.spawn("boom", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            panic!("the flusher broke");
        });
        let failure = tokio::time::timeout(Duration::from_secs(5), failures.recv())
            .await
            .ok()
            .flatten();
        let failure = failure.map(|f| (f.task, f.reason));
        assert_eq!(failure, Some(("boom", "the flusher broke".to_string())));
        assert!(watcher.await.is_ok());
        // A task that returned is not a failure.
        assert!(failures.try_recv().is_err());
    }

    #[tokio::test]
    async fn aborting_the_watcher_aborts_the_task() {
        let (supervisor, mut failures) = Supervisor::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = supervisor.spawn("forever", async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        watcher.abort();
        // The task dropped its sender: it is gone.
        assert!(tokio::time::timeout(Duration::from_secs(5), rx).await.is_ok());
        assert!(failures.try_recv().is_err());
    }
}
