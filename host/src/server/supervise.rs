//! Panics in `rollgate serve`'s tasks: never a silently dead task.
//!
//! A panic is a bug in rollgate, but in a long-running server it must not go unnoticed: a
//! configuration watcher that died would leave the server answering "ready" while it never
//! loads a change again. Every task `serve` starts in the background (the configuration
//! watch, each run's driver, each webhook's delivery) is started through [`spawn`], and
//! every reload and API request is run through [`catching`]. A panic there is
//!
//! - **caught** — the process and its other tasks go on;
//! - **logged** at error level with what panicked and its message;
//! - **counted** in `rollgate_task_panics_total{task}`;
//! - **remembered** for the process's life: [`panicked`] is not empty, so `/readyz`
//!   answers 503 and an orchestrator restarts the server, and `GET /api/v1/config` lists
//!   what panicked (with a token: a panic message may say more than an anonymous caller
//!   should see).

use futures::FutureExt;
use serde::Serialize;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

/// One task that panicked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TaskPanic {
    /// What kind of task: `config-watch`, `reload`, `run`, `notify`, `api`.
    pub task: String,
    /// Which one (`run 12`, a webhook's URL, a request's method and path).
    pub what: String,
    /// The panic's message.
    pub message: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
}

static PANICS: Mutex<Vec<TaskPanic>> = Mutex::new(Vec::new());

/// How many panics are remembered; later ones are still logged and counted.
const REMEMBERED: usize = 100;

/// The panics of this process so far (at most the first 100).
pub fn panicked() -> Vec<TaskPanic> {
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What a panic's payload says.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Log, count and remember a panic of `task` (`what` says which one).
pub fn record(task: &str, what: &str, message: String) {
    tracing::error!(
        task,
        what,
        "a task panicked (a bug in rollgate; please report it): {message}; /readyz now answers 503"
    );
    crate::telemetry::global().count("rollgate_task_panics_total", &[("task", task)], 1);
    let mut panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    if panics.len() < REMEMBERED {
        panics.push(TaskPanic {
            task: task.to_string(),
            what: what.to_string(),
            message,
            at_ms: crate::engine::clock::now_ms(),
        });
    }
}

/// Run `fut`; a panic inside it is recorded (as `task`, `what`) and returned as its message.
///
/// Built from combinators rather than as an `async fn`: an `async fn` keeps its argument
/// `fut` in its state beside the future it moves it into, and a run's driver (one per
/// unfinished run, alive as long as the run) would take twice its size.
pub fn catching<F: Future>(
    task: &str,
    what: impl AsRef<str>,
    fut: F,
) -> impl Future<Output = Result<F::Output, String>> {
    AssertUnwindSafe(fut).catch_unwind().map(move |out| {
        out.map_err(|payload| {
            let message = message(&*payload);
            record(task, what.as_ref(), message.clone());
            message
        })
    })
}

/// Start `fut` as a task whose panic is recorded (see the module doc).
pub fn spawn<F>(task: &'static str, what: String, fut: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(supervised(task, what, fut))
}

/// `fut` with its panic recorded: the future [`spawn`] starts, no larger than `fut` itself
/// but for the name.
fn supervised<F: Future<Output = ()>>(
    task: &'static str,
    what: String,
    fut: F,
) -> impl Future<Output = ()> {
    catching(task, what, fut).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_caught_logged_counted_and_remembered() {
        let before = panicked().len();
        let handle = spawn("test", "the test task".into(), async {
            panic!("boom at {}", 42);
        });
        // The task ends normally: the panic did not escape it.
        handle.await.expect("the task itself does not panic");
        let after = panicked();
        assert_eq!(after.len(), before + 1);
        let last = after.last().expect("recorded");
        assert_eq!(
            (
                last.task.as_str(),
                last.what.as_str(),
                last.message.as_str()
            ),
            ("test", "the test task", "boom at 42")
        );
        assert_eq!(
            crate::telemetry::global().counter("rollgate_task_panics_total", &[("task", "test")]),
            1
        );
        // A task that does not panic returns its value.
        assert_eq!(catching("test", "fine", async { 7 }).await, Ok(7));
    }

    #[test]
    fn a_supervised_future_is_the_size_of_the_future_it_runs() {
        let inner = async {
            let big = [1u8; 4096];
            std::future::ready(()).await;
            assert_eq!(big.iter().map(|b| *b as usize).sum::<usize>(), 4096);
        };
        let size = std::mem::size_of_val(&inner);
        let wrapped = std::mem::size_of_val(&supervised("test", "size".into(), inner));
        assert!(
            wrapped < size + 64,
            "the supervised future takes {wrapped} bytes for a future of {size}"
        );
    }
}
