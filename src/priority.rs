//! CPU priority: polling yields to deliveries.
//!
//! A poll cycle over thousands of watches is throughput work; a notification is latency work.
//! On a small machine a cycle can keep every core busy for a second, and a message detected
//! in the middle of it would then wait its turn behind the polls. So `dbswatch run` polls on
//! worker threads whose nice value is [`POLL_NICENESS`] above the process's, while the delivery
//! thread and SQLite's connection threads keep the process's own: the kernel then gives a
//! waiting delivery the core almost at once, and the watcher stays polite to everything else
//! on the host too. Raising a thread's own nice value needs no privilege. Linux only (there a
//! nice value belongs to a thread); elsewhere these are no-ops.

use std::sync::OnceLock;

/// How much nicer the poll workers are than the process: 10 gives a normal-priority thread
/// about ten times their share of a contended core.
pub const POLL_NICENESS: i32 = 10;

/// The process's nice value when the daemon's runtime was built, which the delivery thread
/// goes back to (a new thread inherits its creator's nice value, and it may be created from a
/// poll worker).
static BASE: OnceLock<i32> = OnceLock::new();

/// The multi-thread runtime of `dbswatch run`: its workers (and its blocking pool) run at
/// [`POLL_NICENESS`] above the process. Build it before opening the database, so SQLite's
/// connection threads are started from a normal-priority thread.
pub fn daemon_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    BASE.get_or_init(current);
    tokio::runtime::Builder::new_multi_thread()
        .on_thread_start(lower_current_thread)
        .enable_all()
        .build()
}

/// Make the calling thread a poll worker: [`POLL_NICENESS`] above the process's nice value.
pub fn lower_current_thread() {
    let base = *BASE.get_or_init(current);
    set_current(base.saturating_add(POLL_NICENESS).min(19));
}

/// Give the calling thread the process's own priority back (the delivery thread).
pub fn restore_current_thread() {
    if let Some(base) = BASE.get() {
        set_current(*base);
    }
}

/// The calling thread's nice value (0 where there is none).
pub fn current() -> i32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority only reads the calling thread's scheduling attributes (who = 0).
        // It returns -1 both for nice -1 and for an error; either way -1 is a safe base.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn set_current(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: with PRIO_PROCESS and who = 0, Linux changes only the calling thread's nice
        // value; nothing of ours is read or written. Lowering back to the base may be refused
        // without CAP_SYS_NICE (then the thread just stays nicer); that is not worth a panic.
        let refused = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0;
        if refused {
            tracing::debug!(nice, "could not change this thread's CPU priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_poll_worker_is_nicer_than_the_process_and_only_itself() {
        let base = current();
        let worker = std::thread::spawn(move || {
            lower_current_thread();
            let lowered = current();
            // A thread it starts inherits the lowered value; that is why the delivery thread
            // restores its own.
            let child = std::thread::spawn(current).join().unwrap();
            (lowered, child)
        });
        let (lowered, child) = worker.join().unwrap();
        assert_eq!(lowered, (base + POLL_NICENESS).min(19));
        assert_eq!(child, lowered);
        assert_eq!(current(), base, "the calling thread is untouched");
    }
}
