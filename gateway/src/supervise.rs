//! Background tasks that must not die quietly. A supervised task that panics is logged,
//! counted (`gateway_task_panics_total` on `/metrics`) and, when it can be made again,
//! restarted after a pause that grows to 10 s.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// How many supervised tasks have panicked since the process started.
pub fn panics() -> u64 {
    PANICS.load(Relaxed)
}

/// Runs the task `make` builds, and builds and runs it again whenever it panics; stops when
/// it returns.
pub fn spawn<F, Fut>(name: &'static str, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            match tokio::spawn(make()).await {
                Err(e) if e.is_panic() => {
                    PANICS.fetch_add(1, Relaxed);
                    tracing::error!(
                        task = name,
                        "background task panicked: {}; restarting in {pause:?}",
                        message(e.into_panic())
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                // Returned, or cancelled because the runtime is shutting down.
                _ => return,
            }
        }
    });
}

/// Runs a task that cannot be made again (it owns a channel's receiving end): a panic is
/// logged and counted.
pub fn spawn_once<Fut>(name: &'static str, task: Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = tokio::spawn(task).await
            && e.is_panic()
        {
            PANICS.fetch_add(1, Relaxed);
            tracing::error!(
                task = name,
                "background task panicked and cannot restart: {}",
                message(e.into_panic())
            );
        }
    });
}

fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_restarted() {
        let runs = Arc::new(AtomicU64::new(0));
        let before = panics();
        let r = runs.clone();
        spawn("test-task", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Relaxed) == 0 {
                    panic!("first run fails");
                }
            }
        });
        for _ in 0..100 {
            if runs.load(Relaxed) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(runs.load(Relaxed), 2, "restarted once, then returned");
        assert!(panics() > before);
    }
}
