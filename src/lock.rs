//! The `.parse.lock` policy, in one place. Autotest's parser takes an
//! exclusive `flock` on `<job dir>/.parse.lock` while it parses a job; tko
//! takes the same lock while it *reads* a job, and never longer: the lock
//! is released before the job is written, so a loader holds at most one
//! lock per parser thread, whatever the batch size, and never waits for a
//! lock while it holds another (no deadlock between loaders, however their
//! job sets overlap). Which of two loads of one job wins in the warehouse
//! is decided by the time each read began, under the lock (the ledger's
//! `read_at`), not by who commits last. A lock that stays held is waited
//! for with a bound ([`Waiter`]), then reported, never waited for forever.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file's name, as Autotest names it.
pub const LOCK_FILE: &str = ".parse.lock";

/// How long a held lock is waited for by default (`--lock-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A job's `.parse.lock`, held until dropped.
#[derive(Debug)]
pub struct JobLock {
    /// `None`: the directory is read-only (no parser can be writing it
    /// either), so there is nothing to lock.
    _file: Option<File>,
}

/// Tries once to take `dir`'s lock: `Ok(None)` when another process holds
/// it. Never blocks. An error opening the lock file other than a read-only
/// directory (too many open files, I/O error) is an error: the job is not
/// read unlocked.
pub fn try_lock(dir: &Path) -> io::Result<Option<JobLock>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE));
    let file = match file {
        Ok(f) => f,
        Err(e) if read_only(&e) => return Ok(Some(JobLock { _file: None })),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(JobLock { _file: Some(file) })),
        Err(TryLockError::WouldBlock) => Ok(None),
        // A file system without flock (some network mounts): nothing to
        // coordinate with.
        Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
            Ok(Some(JobLock { _file: None }))
        }
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// A directory we may not write to: no lock file can be made there.
fn read_only(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

/// Paces retries of held locks until a deadline: short sleeps first, then
/// longer ones (10 ms doubling to 500 ms), so a lock freed soon is taken
/// soon and a long wait costs few wake-ups.
#[derive(Debug)]
pub struct Waiter {
    deadline: Instant,
    pause: Duration,
}

impl Waiter {
    /// Waits at most `timeout` from now.
    pub fn new(timeout: Duration) -> Waiter {
        Waiter {
            deadline: Instant::now() + timeout,
            pause: Duration::from_millis(10),
        }
    }

    /// Sleeps before the next try; `false` once the deadline has passed
    /// (then the caller reports what is still locked).
    pub fn pause(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        std::thread::sleep(self.pause.min(self.deadline - now));
        self.pause = (self.pause * 2).min(Duration::from_millis(500));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_and_free_again_once_dropped() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let first = try_lock(tmp.path())?.expect("free");
        assert!(try_lock(tmp.path())?.is_none(), "held by `first`");
        drop(first);
        assert!(try_lock(tmp.path())?.is_some());
        Ok(())
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline() {
        let start = Instant::now();
        let mut w = Waiter::new(Duration::from_millis(120));
        let mut pauses = 0;
        while w.pause() {
            pauses += 1;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(120), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert!(pauses >= 3, "short pauses first: {pauses}");
    }
}
