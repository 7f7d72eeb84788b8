//! A thread at low CPU priority for the compaction worker. Compaction reads whole streams,
//! parses their replies and merges thousands of updates into one document: background work
//! that should get the cores only after the connections. The worker runs on a thread of its
//! own with a single-threaded runtime of its own, at the [`CpuPriority`] configured (Linux
//! keeps the nice value and scheduling policy per thread, and threads it starts, such as the
//! runtime's blocking pool, inherit them).

use crate::config::CpuPriority;
use std::future::Future;

/// The nice value of [`CpuPriority::Low`] (0 is normal priority, 19 the lowest).
pub const NICE: i32 = 10;

/// Starts a thread named `name` that runs `task` at `priority` and ends when it does.
pub fn spawn(
    name: &str,
    priority: CpuPriority,
    task: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("{name}-blocking"))
        .build()?;
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            set_priority(priority);
            rt.block_on(task);
        })
}

/// Sets the calling thread's CPU priority.
fn set_priority(priority: CpuPriority) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid, setpriority and sched_setscheduler take plain integers and a
        // pointer to a local that outlives the call.
        let r = unsafe {
            match priority {
                CpuPriority::Normal => 0,
                CpuPriority::Low => {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE)
                }
                CpuPriority::Idle => {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
                }
            }
        };
        if r != 0 {
            tracing::warn!(
                ?priority,
                "background thread keeps normal priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = priority;
}

/// The calling thread's nice value.
#[cfg(all(test, target_os = "linux"))]
fn nice() -> i32 {
    // SAFETY: as above.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_thread_and_its_blocking_pool_run_at_low_priority() {
        let before = nice();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = spawn("bg-test", CpuPriority::Low, async move {
            let own = nice();
            let pool = tokio::task::spawn_blocking(nice).await.unwrap();
            tx.send((own, pool)).unwrap();
        })
        .unwrap();
        handle.join().unwrap();
        assert_eq!(rx.recv().unwrap(), (NICE, NICE));
        assert_eq!(nice(), before, "the caller's priority is untouched");
    }

    #[test]
    fn idle_priority_uses_sched_idle() {
        let (tx, rx) = std::sync::mpsc::channel();
        spawn("bg-test", CpuPriority::Idle, async move {
            // SAFETY: sched_getscheduler takes a plain integer.
            let own = unsafe { libc::sched_getscheduler(0) };
            let pool = tokio::task::spawn_blocking(|| unsafe { libc::sched_getscheduler(0) });
            tx.send((own, pool.await.unwrap())).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), (libc::SCHED_IDLE, libc::SCHED_IDLE));
    }
}
