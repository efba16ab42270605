//! `tko watch`: keeps the warehouse current while jobs run. Results roots
//! are watched (inotify through `notify`, or polling for network file
//! systems); new job directories are found by the one discovery walk
//! ([`Discovery`]); a running job's `status.log` is read incrementally by
//! an [`ingest::Live`] follower (only the new bytes, a fresh start when the
//! file shrinks or is replaced), and its tests are written as RUNNING rows,
//! every changed job in one writer transaction per interval. When a job
//! ends (its outermost group's END line, or `.autoserv_execute`'s exit
//! status line), it is finalised by the backfill pipeline exactly as `tko
//! load` loads it, so nothing a live update wrote survives. Restarts replay
//! each running job from byte 0; live rows replace the job's rows as a set,
//! so nothing is duplicated. `.parse.lock` is only tried, never waited for
//! while another is held (see [`crate::lock`]).

use crate::backfill::{self, Observer};
use crate::discover::{Discovery, JobDir};
use crate::ingest::{Follow, Live};
use crate::store::{self, LoadItem, Store};
use notify::Watcher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How `tko watch` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Results roots (or job directories) to watch.
    pub roots: Vec<PathBuf>,
    /// Tag level (`None`: detected as `tko load` does).
    pub level: Option<usize>,
    /// Poll the roots every this often instead of inotify.
    pub poll: Option<Duration>,
    /// At most one live write transaction per this interval.
    pub interval: Duration,
    /// The whole roots are walked again at least this often (new jobs are
    /// normally seen at once through the watcher's events).
    pub rescan: Duration,
    /// How long a final load waits for a job's held `.parse.lock` (the
    /// watcher does nothing else meanwhile; a job still locked is tried
    /// again at the next interval).
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            roots: Vec::new(),
            level: None,
            poll: None,
            interval: Duration::from_millis(500),
            rescan: Duration::from_secs(60),
            lock_timeout: Duration::ZERO,
        }
    }
}

/// What the watcher tells its caller (one line each, for stderr).
pub trait Report {
    /// Something worth a line: a job finalised, a problem.
    fn say(&mut self, line: &str);
}

/// How often finished jobs are looked at without a file event.
const DONE_CHECK: Duration = Duration::from_secs(5);

/// Set by SIGTERM (see [`stop_on_sigterm`]).
static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM stop [`run`] cleanly (as Ctrl-C does through `stop`).
pub fn stop_on_sigterm() {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
}

/// One job directory the watcher knows.
enum State {
    /// Not followable yet (no `status.log`, or no version-1 keyval), with
    /// the metadata signature of its files when last tried.
    Waiting {
        /// [`backfill::signature`] when last tried.
        signature: Option<String>,
    },
    /// Followed line by line.
    Following(Box<Live>),
    /// Finalised: followed again if its status log changes, loaded again
    /// if only its other files change (the scheduler writes the exit
    /// status and `job_finished` after the END line).
    Done {
        /// (device, inode) and size of the status log when finalised.
        file: Option<((u64, u64), u64)>,
        /// [`backfill::signature`] when finalised.
        signature: String,
    },
}

struct Job {
    dir: JobDir,
    state: State,
    /// Live rows to write at the next flush.
    dirty: bool,
    /// To finalise.
    ended: bool,
    /// Kernel hashes the live rows referred to (dropped after the final
    /// load if no test refers to them then).
    live_kernels: BTreeSet<String>,
    /// When the last read of new bytes began, under the lock: the live
    /// rows' `LoadItem::read_at`, so a `tko load` that read later wins.
    read_at: Option<i64>,
}

/// (device, inode) and size of a job's status log, if it has one.
fn status_file(dir: &Path) -> Option<((u64, u64), u64)> {
    use std::os::unix::fs::MetadataExt;
    ["status.log", "status"].iter().find_map(|n| {
        let m = std::fs::metadata(dir.join(n)).ok()?;
        m.is_file().then(|| ((m.dev(), m.ino()), m.len()))
    })
}

/// Watches `opts.roots` and writes to `store` (with `reader`, a second
/// connection, for the final loads' ledger reads) until `stop` or SIGTERM.
pub fn run(
    store: &mut dyn Store,
    reader: &mut dyn Store,
    opts: &Options,
    stop: &AtomicBool,
    report: &mut dyn Report,
) -> Result<(), store::Error> {
    let stopped = || stop.load(Ordering::Relaxed) || TERM.load(Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let _watcher = watch_roots(opts, tx, report);
    // All changed jobs go in one transaction.
    store.set_batch_jobs(100_000);
    let mut jobs: BTreeMap<PathBuf, Job> = BTreeMap::new();
    let mut last_scan: Option<Instant> = None;
    let mut rescan = true;
    let mut last_flush = Instant::now() - opts.interval;
    let mut last_done_check = Instant::now();
    let mut woken = true;
    let tick = opts
        .poll
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    while !stopped() {
        if rescan || last_scan.is_none_or(|t| t.elapsed() >= opts.rescan) {
            scan(opts, reader, &mut jobs, report)?;
            last_scan = Some(Instant::now());
            rescan = false;
        }
        // Finished jobs are looked at on a file event, else every 5 s.
        let check_done = woken || last_done_check.elapsed() >= DONE_CHECK;
        if check_done {
            last_done_check = Instant::now();
        }
        woken = false;
        for job in jobs.values_mut() {
            follow(job, check_done, report);
        }
        let due = last_flush.elapsed() >= opts.interval;
        if due {
            write_live(store, &mut jobs, report);
            finalise(store, reader, opts, &mut jobs, stop, report)?;
            last_flush = Instant::now();
        }
        // Sleep until an event, the tick, or the next flush.
        let wait = if jobs.values().any(|j| j.dirty || j.ended) {
            opts.interval.saturating_sub(last_flush.elapsed())
        } else {
            tick
        };
        let deadline = Instant::now() + wait.max(Duration::from_millis(20));
        // Events of our own reads and locks wake nothing.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(ev) => {
                    let mut relevant = relevant_event(&ev);
                    rescan |= wants_rescan(&ev, &jobs);
                    for ev in rx.try_iter() {
                        relevant |= relevant_event(&ev);
                        rescan |= wants_rescan(&ev, &jobs);
                    }
                    if relevant || stopped() {
                        woken |= relevant;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    break;
                }
            }
        }
    }
    // Whatever was read is written before stopping.
    write_live(store, &mut jobs, report);
    Ok(())
}

/// The file-system watcher: inotify (recursive) unless `--poll`; polling
/// if inotify cannot watch the roots (too many directories, a network
/// file system). `None` (rescans on the tick only) if neither works.
fn watch_roots(
    opts: &Options,
    tx: mpsc::Sender<notify::Result<notify::Event>>,
    report: &mut dyn Report,
) -> Option<Box<dyn Watcher + Send>> {
    let add = |w: &mut dyn Watcher| -> notify::Result<()> {
        for r in &opts.roots {
            w.watch(r, notify::RecursiveMode::Recursive)?;
        }
        Ok(())
    };
    if opts.poll.is_none() {
        match notify::RecommendedWatcher::new(tx.clone(), notify::Config::default()) {
            Ok(mut w) => match add(&mut w) {
                Ok(()) => return Some(Box::new(w)),
                Err(e) => report.say(&format!(
                    "tko: cannot watch the roots with inotify ({e}); polling every 2 s"
                )),
            },
            Err(e) => report.say(&format!("tko: no inotify ({e}); polling every 2 s")),
        }
    }
    let every = opts.poll.unwrap_or(Duration::from_secs(2));
    let config = notify::Config::default().with_poll_interval(every);
    match notify::PollWatcher::new(tx, config) {
        Ok(mut w) => match add(&mut w) {
            Ok(()) => Some(Box::new(w)),
            Err(e) => {
                report.say(&format!("tko: cannot poll the roots ({e})"));
                None
            }
        },
        Err(e) => {
            report.say(&format!("tko: cannot poll the roots ({e})"));
            None
        }
    }
}

/// An event that may mean new data: not a read (access), not a lock file.
fn relevant_event(ev: &notify::Result<notify::Event>) -> bool {
    let Ok(ev) = ev else { return true };
    !matches!(ev.kind, notify::EventKind::Access(_))
        && !ev
            .paths
            .iter()
            .all(|p| p.file_name().is_some_and(|n| n == crate::lock::LOCK_FILE))
}

/// A directory was created, or a file appeared outside every known job
/// directory: walk the roots again for new jobs.
fn wants_rescan(ev: &notify::Result<notify::Event>, jobs: &BTreeMap<PathBuf, Job>) -> bool {
    if !relevant_event(ev) {
        return false;
    }
    let Ok(ev) = ev else { return true };
    match ev.kind {
        notify::EventKind::Create(_) | notify::EventKind::Remove(_) => true,
        notify::EventKind::Modify(notify::event::ModifyKind::Name(_)) => true,
        _ => ev
            .paths
            .iter()
            .any(|p| !p.ancestors().skip(1).any(|a| jobs.contains_key(a))),
    }
}

/// Walks the roots; new job directories start [`State::Waiting`], or
/// [`State::Done`] when the ledger's backfill signature proves them loaded
/// and unchanged (a restart does not read finished jobs again); vanished
/// ones are forgotten (their rows stay).
fn scan(
    opts: &Options,
    reader: &mut dyn Store,
    jobs: &mut BTreeMap<PathBuf, Job>,
    report: &mut dyn Report,
) -> Result<(), store::Error> {
    let mut discovery = Discovery::new(&opts.roots, opts.level);
    let mut found = Vec::new();
    while let Some(round) = discovery.next_round(4096) {
        for e in &round.errors {
            report.say(&format!("tko: {e}"));
        }
        found.extend(round.jobs);
    }
    let seen: std::collections::HashSet<PathBuf> = found.iter().map(|d| d.path.clone()).collect();
    jobs.retain(|p, _| seen.contains(p));
    found.retain(|d| !jobs.contains_key(&d.path));
    let tags: Vec<&str> = found.iter().map(|d| d.tag.as_str()).collect();
    let ledger = reader.ledger_state(&tags)?;
    for dir in found {
        let loaded = ledger
            .get(&dir.tag)
            .is_some_and(|l| l.unchanged_by_metadata(&backfill::signature(&dir.path)));
        let state = if loaded {
            State::Done {
                file: status_file(&dir.path),
                signature: backfill::signature(&dir.path),
            }
        } else {
            State::Waiting { signature: None }
        };
        jobs.insert(
            dir.path.clone(),
            Job {
                dir,
                state,
                dirty: false,
                ended: false,
                live_kernels: BTreeSet::new(),
                read_at: None,
            },
        );
    }
    Ok(())
}

/// Reads what is new in one job's status log, under its `.parse.lock`
/// (tried once; a held lock is tried again on the next tick). A finished
/// job is only looked at when `check_done`.
fn follow(job: &mut Job, check_done: bool, report: &mut dyn Report) {
    if job.ended {
        return;
    }
    if let State::Done { file, signature } = &job.state {
        if !check_done {
            return;
        }
        let now = status_file(&job.dir.path);
        if now.is_none() || now == *file {
            if backfill::signature(&job.dir.path) != *signature {
                job.ended = true;
            }
            return;
        }
        // Changed after it was finalised: follow it again from the start.
        job.state = State::Waiting { signature: None };
    }
    match &job.state {
        // Nothing new: no lock, no read.
        State::Following(live)
            if status_file(&job.dir.path) == Some((live.file_id(), live.offset())) =>
        {
            job.ended = live.ended();
            return;
        }
        // Tried again only once its files change.
        State::Waiting { signature: Some(s) } if *s == backfill::signature(&job.dir.path) => {
            return;
        }
        _ => {}
    }
    let lock = match crate::lock::try_lock(&job.dir.path) {
        Ok(Some(l)) => l,
        Ok(None) => return,
        Err(e) => {
            report.say(&format!(
                "tko: {}: cannot take .parse.lock: {e}",
                job.dir.path.display()
            ));
            return;
        }
    };
    if let State::Waiting { .. } = job.state {
        let signature = backfill::signature(&job.dir.path);
        match Live::start(&job.dir) {
            Ok(Some(live)) => job.state = State::Following(Box::new(live)),
            Ok(None) => {
                job.state = State::Waiting {
                    signature: Some(signature),
                };
                // Not followable line by line (version 0, or no status.log
                // yet): loaded once `.autoserv_execute` says it ended.
                if status_file(&job.dir.path).is_some() && autoserv_ended(&job.dir.path) {
                    job.ended = true;
                }
                return;
            }
            Err(e) => {
                report.say(&format!("tko: {e}"));
                return;
            }
        }
    }
    let State::Following(live) = &mut job.state else {
        return;
    };
    let read_at = backfill::read_start();
    match live.read_new() {
        Ok(Follow::Unchanged) => {}
        Ok(Follow::Grew) | Ok(Follow::Restarted) => {
            job.dirty = true;
            job.read_at = read_at;
        }
        Err(e) => {
            report.say(&format!("tko: {e}"));
            return;
        }
    }
    drop(lock);
    if live.ended() {
        job.ended = true;
        job.dirty = false;
    }
}

/// `.autoserv_execute` of the job's top-level directory holds its exit
/// status line.
fn autoserv_ended(dir: &Path) -> bool {
    dir.ancestors().take(3).any(|d| {
        std::fs::read(d.join(".autoserv_execute")).is_ok_and(|b| {
            b.split_inclusive(|&c| c == b'\n')
                .nth(1)
                .is_some_and(|l| l.ends_with(b"\n"))
        })
    })
}

/// Writes the live rows of every changed job, in one transaction.
fn write_live(store: &mut dyn Store, jobs: &mut BTreeMap<PathBuf, Job>, report: &mut dyn Report) {
    let mut parsed = Vec::new();
    for job in jobs.values_mut().filter(|j| j.dirty && !j.ended) {
        job.dirty = false;
        let State::Following(live) = &mut job.state else {
            continue;
        };
        match live.job() {
            Ok(j) => {
                let kernels = j.tests.iter().map(|t| t.kernel.kernel_hash.clone());
                job.live_kernels.extend(kernels);
                let fingerprint = store::live_fingerprint(live.file_id(), live.offset());
                parsed.push((j, job.dir.path.clone(), fingerprint, job.read_at));
            }
            Err(e) => report.say(&format!("tko: {e}")),
        }
    }
    if parsed.is_empty() {
        return;
    }
    let items: Vec<LoadItem<'_>> = parsed
        .iter()
        .map(|(job, source, fingerprint, read_at)| LoadItem {
            job,
            source: source.clone(),
            fingerprint: fingerprint.clone(),
            force: false,
            // Read just now: a `tko load` of the same job that read later
            // wins over this live update (see `LoadItem::read_at`).
            read_at: *read_at,
        })
        .collect();
    for (item, r) in items.iter().zip(store.load_jobs(&items)) {
        if let Err(e) = r {
            report.say(&format!(
                "tko: {}: live update failed: {}",
                item.job.tag,
                store::error_chain(&e)
            ));
        }
    }
}

/// Loads every ended job with the backfill pipeline (the same full parse
/// and load as `tko load`), one run per tag level.
fn finalise(
    store: &mut dyn Store,
    reader: &mut dyn Store,
    opts: &Options,
    jobs: &mut BTreeMap<PathBuf, Job>,
    stop: &AtomicBool,
    report: &mut dyn Report,
) -> Result<(), store::Error> {
    let mut by_level: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    for job in jobs.values().filter(|j| j.ended) {
        by_level
            .entry(job.dir.level)
            .or_default()
            .push(job.dir.path.clone());
    }
    for (level, paths) in by_level {
        // Files as they are now: a change after this is followed again.
        let files: Vec<_> = paths
            .iter()
            .map(|p| (status_file(p), backfill::signature(p)))
            .collect();
        let bopts = backfill::Options {
            level: Some(level),
            threads: 1,
            verify: true,
            chunk_jobs: 200,
            lock_timeout: opts.lock_timeout,
            ..backfill::Options::default()
        };
        let mut seen = Finalised::default();
        let summary = backfill::run(store, reader, &paths, &bopts, stop, &mut seen)?;
        for (path, (file, signature)) in paths.iter().zip(files) {
            let Some(job) = jobs.get_mut(path) else {
                continue;
            };
            if summary.locked.contains(&job.dir.tag) {
                continue; // tried again on the next flush
            }
            job.ended = false;
            job.dirty = false;
            job.state = State::Done { file, signature };
            match seen.errors.remove(&job.dir.tag) {
                Some(e) => report.say(&format!("tko: {}: final load failed: {e}", job.dir.tag)),
                None => {
                    report.say(&format!("tko: {}: finished, loaded", job.dir.tag));
                    let kept = seen.kernels.remove(&job.dir.tag).unwrap_or_default();
                    let only_live: Vec<String> =
                        job.live_kernels.difference(&kept).cloned().collect();
                    job.live_kernels.clear();
                    if let Err(e) = store.drop_unused_kernels(&only_live) {
                        report.say(&format!(
                            "tko: {}: kernels of the live rows stay: {}",
                            job.dir.tag,
                            store::error_chain(&e)
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Collects the final loads' failures and the kernels the loaded jobs
/// refer to.
#[derive(Default)]
struct Finalised {
    errors: HashMap<String, String>,
    kernels: HashMap<String, BTreeSet<String>>,
}

impl Observer for Finalised {
    fn job(&mut self, job: &crate::model::Job, outcome: backfill::JobOutcome<'_>) {
        if let backfill::JobOutcome::Failed(e) = outcome {
            self.errors.insert(job.tag.clone(), e.to_owned());
        }
        self.kernels.insert(
            job.tag.clone(),
            job.tests
                .iter()
                .map(|t| t.kernel.kernel_hash.clone())
                .collect(),
        );
    }
    fn unread(&mut self, tag: &str, error: &str) {
        self.errors.insert(tag.to_owned(), error.to_owned());
    }
}
