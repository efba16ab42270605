//! Backfill: loads whole results roots (years of jobs) into the warehouse,
//! resumably and without redoing unchanged work. Jobs are found with
//! `discover`; a job whose metadata signature (size, mtime and inode of the
//! files its parse starts from) and ledger row prove it unchanged is skipped
//! without reading a byte; the others are parsed in parallel in bounded
//! chunks (so memory stays flat however large the root), each under
//! Autotest's per-job `.parse.lock`, and streamed to the writer, which loads
//! them in batches through [`Store::load_jobs`] (each job atomic). Every
//! committed batch is recorded in the ledger, so a killed run resumes where
//! it stopped. This module does no terminal output: callers get a
//! [`Summary`] after each chunk and at the end.

use crate::discover::{self, JobDir};
use crate::ingest::{self, Parsed};
use crate::model::Job;
use crate::store::{Action, LedgerState, LoadItem, LoadOutcome, Signature, Store};
use crate::table::RowCounts;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tag level (`--level`).
    pub level: usize,
    /// Parser threads (0 = one per core).
    pub threads: usize,
    /// Say what would happen; write nothing (no locks, no rows).
    pub dry_run: bool,
    /// Reload every job, changed or not.
    pub force: bool,
    /// Read every job's content even when its metadata is unchanged (the
    /// content fingerprint still skips unchanged jobs).
    pub verify: bool,
    /// Jobs parsed per chunk (the unit of streaming and of progress).
    pub chunk_jobs: usize,
    /// Top-level directories scanned per round: the jobs found in them,
    /// their signatures and ledger rows are all that is held besides the
    /// chunks in flight.
    pub units_per_round: usize,
    /// How long to wait before retrying jobs whose `.parse.lock` was held.
    pub lock_retry_after: Duration,
    /// Wait for a held `.parse.lock` (the post-job parse step) instead of
    /// retrying the job after the pass.
    pub wait_for_locks: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            level: 1,
            threads: 0,
            dry_run: false,
            force: false,
            verify: false,
            chunk_jobs: 200,
            units_per_round: 2048,
            lock_retry_after: Duration::from_secs(2),
            wait_for_locks: false,
        }
    }
}

/// What became of one job that was read (jobs skipped by metadata are not
/// reported one by one).
#[derive(Debug)]
pub enum JobOutcome<'a> {
    /// Loaded, reloaded or found unchanged by content.
    Loaded(&'a LoadOutcome),
    /// The load failed (the error chain); the previous version stays.
    Failed(&'a str),
    /// No status file: nothing to load (Autotest stores nothing either).
    NoStatusFile,
    /// Dry run: what would be done (nothing written).
    WouldBe(Action),
}

/// Receives a backfill's progress and per-job outcomes (the caller's
/// output; this module prints nothing).
pub trait Observer {
    /// After the scan and after each chunk.
    fn progress(&mut self, _summary: &Summary) {}
    /// For each job read, after its chunk was written.
    fn job(&mut self, _job: &Job, _outcome: JobOutcome<'_>) {}
}

/// What a backfill did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Units to scan: job paths given plus top-level directories of roots
    /// (counted first, cheaply; the progress total).
    pub units: usize,
    /// Units scanned so far.
    pub units_done: usize,
    /// Job directories found so far.
    pub found: usize,
    /// Jobs handled so far (loaded, skipped, failed or reported).
    pub done: usize,
    /// New jobs loaded (dry run: would be).
    pub inserted: usize,
    /// Jobs already in the warehouse, reloaded (dry run: would be).
    pub replaced: usize,
    /// Unchanged jobs skipped by metadata alone (nothing read).
    pub unchanged_by_metadata: usize,
    /// Unchanged jobs skipped after reading (same content fingerprint).
    pub unchanged_by_content: usize,
    /// Jobs that failed to load: (tag, error).
    pub failed: Vec<(String, String)>,
    /// Loaded jobs with error diagnostics (input Autotest's parser loses).
    pub with_errors: Vec<String>,
    /// Job directories without a status file (nothing to load).
    pub no_status_file: Vec<String>,
    /// Jobs whose `.parse.lock` stayed held (not loaded).
    pub locked: Vec<String>,
    /// Directories that could not be walked.
    pub walk_errors: Vec<String>,
    /// Rows written.
    pub rows: RowCounts,
    /// Stopped early on request (Ctrl-C).
    pub interrupted: bool,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Summary {
    /// Jobs loaded (inserted or replaced).
    pub fn loaded(&self) -> usize {
        self.inserted + self.replaced
    }

    /// True when everything was loaded or skipped cleanly.
    pub fn clean(&self) -> bool {
        self.failed.is_empty()
            && self.with_errors.is_empty()
            && self.no_status_file.is_empty()
            && self.locked.is_empty()
            && self.walk_errors.is_empty()
            && !self.interrupted
    }
}

/// The metadata signature of a job directory: size, mtime and inode of
/// the files its parse starts from, absent ones counting too: `status.log`
/// (else `status`, read only when there is no `status.log`), `keyval`,
/// `.autoserv_execute` (else the parent's `keyval`, merged only when the
/// top-level job dir is above). A changed test keyval without any of these
/// changing is only seen with `verify`. Costs three `stat`s for a usual job.
pub fn signature(dir: &Path) -> String {
    let mut ctx = md5::Context::new();
    let mut stat = |name: &str| {
        ctx.consume(name.as_bytes());
        match std::fs::metadata(dir.join(name)) {
            Ok(m) => {
                for n in [m.len(), m.mtime() as u64, m.mtime_nsec() as u64, m.ino()] {
                    ctx.consume(n.to_le_bytes());
                }
                true
            }
            Err(_) => {
                ctx.consume(b"-");
                false
            }
        }
    };
    if !stat("status.log") {
        stat("status");
    }
    stat("keyval");
    if !stat(".autoserv_execute") {
        stat("../keyval");
    }
    format!("{:x}", ctx.compute())
}

/// A job to read: where it is and its signature.
struct Todo {
    dir: JobDir,
    signature: String,
}

/// One parsed job on its way to the writer, holding its lock.
struct Ready {
    /// The job's tag.
    tag: String,
    /// The parse, or why the job's files could not be read (then it must
    /// not be loaded: the previous version stays).
    parsed: Result<Parsed, ingest::ReadError>,
    signature: String,
    _lock: Option<File>,
}

/// Autotest's per-job `.parse.lock` (an exclusive flock).
pub enum Lock {
    /// Held until dropped (`None`: the directory is read-only, so no other
    /// parser can be writing it either).
    Held(Option<File>),
    /// Another parser holds it.
    Busy,
}

/// Takes a job directory's `.parse.lock`: waits for it when `wait`, else
/// returns [`Lock::Busy`] at once if it is held.
pub fn lock_job(dir: &Path, wait: bool) -> Lock {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".parse.lock"));
    match file {
        Err(_) => Lock::Held(None),
        Ok(f) if wait => match f.lock() {
            Ok(()) => Lock::Held(Some(f)),
            Err(_) => Lock::Held(None),
        },
        Ok(f) => match f.try_lock() {
            Ok(()) => Lock::Held(Some(f)),
            Err(TryLockError::WouldBlock) => Lock::Busy,
            Err(TryLockError::Error(_)) => Lock::Held(None),
        },
    }
}

/// What the scanner hands the writer: a parsed chunk, with its share of the
/// scan's bookkeeping.
#[derive(Default)]
struct Chunk {
    ready: Vec<Ready>,
    busy: Vec<Todo>,
    /// Ledger rows of the chunk's jobs (for the dry run's verdicts).
    ledger: HashMap<String, LedgerState>,
    units_done: usize,
    found: usize,
    unchanged_by_metadata: usize,
    walk_errors: Vec<String>,
}

/// Runs a backfill of `roots` into `store`, reading the ledger through
/// `reader` (a second connection to the same warehouse, used by the
/// scanning thread). Units are streamed: a root's top-level directories
/// are scanned a round at a time (walk, signatures, ledger rows, then the
/// jobs to read parsed in chunks), so memory does not grow with the root.
/// `stop` is polled between chunks (Ctrl-C: the current batch completes,
/// then it returns); the observer hears about progress and each job read.
pub fn run(
    store: &mut dyn Store,
    reader: &mut dyn Store,
    roots: &[PathBuf],
    opts: &Options,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Summary, crate::store::Error> {
    let start = Instant::now();
    let mut summary = Summary {
        units: discover::units(roots).filter(Result::is_ok).count(),
        ..Summary::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .expect("a rayon pool with default settings builds");
    // A dry run may meet a warehouse not created yet.
    let has_ledger = reader.schema_version()?.is_some();
    observer.progress(&summary);

    let locked = std::thread::scope(|scope| {
        // One chunk parsed ahead of the one being loaded.
        let (tx, rx) = sync_channel::<Chunk>(1);
        let pool = &pool;
        // Stage 1 walks and signs a round while stage 2 reads the ledger
        // rows of the previous one and parses what changed.
        let (walked_tx, walked_rx) = sync_channel::<(Vec<JobDir>, Vec<String>, Chunk)>(1);
        scope.spawn(move || {
            let mut units = discover::units(roots);
            while !stop.load(Ordering::Relaxed) {
                let mut chunk = Chunk::default();
                let mut round = Vec::new();
                for u in units.by_ref().take(opts.units_per_round.max(1)) {
                    match u {
                        Ok(u) => round.push(u),
                        Err(e) => chunk.walk_errors.push(e.to_string()),
                    }
                }
                if round.is_empty() && chunk.walk_errors.is_empty() {
                    return;
                }
                chunk.units_done = round.len();
                let (dirs, signatures) = pool.install(|| {
                    let found: Vec<_> = round
                        .par_iter()
                        .map(|u| discover::jobs_in(u, opts.level))
                        .collect();
                    let mut dirs = Vec::new();
                    for (jobs, errors) in found {
                        dirs.extend(jobs);
                        chunk
                            .walk_errors
                            .extend(errors.iter().map(ToString::to_string));
                    }
                    let sigs: Vec<String> = dirs.par_iter().map(|d| signature(&d.path)).collect();
                    (dirs, sigs)
                });
                if walked_tx.send((dirs, signatures, chunk)).is_err() {
                    return;
                }
            }
        });
        let scanner = scope.spawn(move || -> Result<(), crate::store::Error> {
            for (dirs, signatures, mut chunk) in walked_rx {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                chunk.found = dirs.len();
                let mut ledger = if has_ledger {
                    let tags: Vec<&str> = dirs.iter().map(|d| d.tag.as_str()).collect();
                    reader.ledger_state(&tags)?
                } else {
                    HashMap::new()
                };
                let mut todo = Vec::new();
                for (dir, signature) in dirs.into_iter().zip(signatures) {
                    let state = ledger.get(&dir.tag);
                    if !opts.force
                        && !opts.verify
                        && state.is_some_and(|l| l.unchanged_by_metadata(&signature))
                    {
                        chunk.unchanged_by_metadata += 1;
                    } else {
                        todo.push(Todo { dir, signature });
                    }
                }
                // The scan's counts travel with the round's first chunk.
                let mut pieces = todo.into_iter().peekable();
                loop {
                    let piece: Vec<Todo> = pieces.by_ref().take(opts.chunk_jobs.max(1)).collect();
                    let (ready, busy) = pool.install(|| read_chunk(piece, opts));
                    chunk.ledger = ready
                        .iter()
                        .filter_map(|r| ledger.remove_entry(&r.tag))
                        .collect();
                    chunk.ready = ready;
                    chunk.busy = busy;
                    if tx.send(std::mem::take(&mut chunk)).is_err() {
                        return Ok(());
                    }
                    if pieces.peek().is_none() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            Ok(())
        });
        let mut locked = Vec::new();
        for chunk in rx {
            summary.units_done += chunk.units_done;
            summary.found += chunk.found;
            summary.unchanged_by_metadata += chunk.unchanged_by_metadata;
            summary.done += chunk.unchanged_by_metadata + chunk.busy.len();
            summary.walk_errors.extend(chunk.walk_errors);
            locked.extend(chunk.busy);
            write_chunk(
                store,
                &chunk.ready,
                opts,
                &chunk.ledger,
                &mut summary,
                observer,
            )?;
            summary.elapsed = start.elapsed();
            observer.progress(&summary);
            // The chunk's locks are released here, after its commit.
        }
        scanner.join().expect("the scanner does not panic")?;
        Ok::<_, crate::store::Error>(locked)
    })?;
    summary.interrupted = stop.load(Ordering::Relaxed) && summary.units_done < summary.units;

    // Jobs whose lock was held are tried once more after the pass.
    let mut locked = locked;
    if !locked.is_empty() && !summary.interrupted && !opts.dry_run {
        std::thread::sleep(opts.lock_retry_after);
        summary.done -= locked.len();
        let (ready, busy) = pool.install(|| read_chunk(locked, opts));
        summary.done += busy.len();
        write_chunk(store, &ready, opts, &HashMap::new(), &mut summary, observer)?;
        locked = busy;
    }
    summary.locked = locked.into_iter().map(|t| t.dir.tag).collect();
    summary.elapsed = start.elapsed();
    observer.progress(&summary);
    Ok(summary)
}

/// Takes the locks of and parses one chunk of jobs (in parallel); jobs
/// whose lock is held come back unread.
fn read_chunk(todo: Vec<Todo>, opts: &Options) -> (Vec<Ready>, Vec<Todo>) {
    let results: Vec<Result<Ready, Todo>> = todo
        .into_par_iter()
        .map(|t| {
            let lock = if opts.dry_run {
                None
            } else {
                match lock_job(&t.dir.path, opts.wait_for_locks) {
                    Lock::Held(f) => f,
                    Lock::Busy => return Err(t),
                }
            };
            Ok(Ready {
                parsed: ingest::parse_dir(&t.dir),
                tag: t.dir.tag,
                signature: t.signature,
                _lock: lock,
            })
        })
        .collect();
    let mut ready = Vec::new();
    let mut busy = Vec::new();
    for r in results {
        match r {
            Ok(x) => ready.push(x),
            Err(t) => busy.push(t),
        }
    }
    (ready, busy)
}

/// Loads one parsed chunk (or, dry run, classifies it) and records
/// signatures of everything now known to be in the warehouse.
fn write_chunk(
    store: &mut dyn Store,
    ready: &[Ready],
    opts: &Options,
    ledger: &HashMap<String, LedgerState>,
    summary: &mut Summary,
    observer: &mut dyn Observer,
) -> Result<(), crate::store::Error> {
    let mut items = Vec::new();
    let mut signed = Vec::new();
    for r in ready {
        summary.done += 1;
        let p = match &r.parsed {
            Ok(p) => p,
            Err(e) => {
                summary.failed.push((r.tag.clone(), e.to_string()));
                continue;
            }
        };
        if p.status_file.is_none() {
            summary.no_status_file.push(p.job.tag.clone());
            observer.job(&p.job, JobOutcome::NoStatusFile);
            continue;
        }
        if opts.dry_run {
            let action = match ledger.get(&p.job.tag) {
                Some(l) if l.loaded && l.fingerprint == p.fingerprint && !opts.force => {
                    summary.unchanged_by_content += 1;
                    Action::Skipped
                }
                Some(_) => {
                    summary.replaced += 1;
                    Action::Replaced
                }
                None => {
                    summary.inserted += 1;
                    Action::Inserted
                }
            };
            observer.job(&p.job, JobOutcome::WouldBe(action));
            continue;
        }
        items.push(LoadItem {
            job: &p.job,
            source: p.path.clone(),
            fingerprint: p.fingerprint.clone(),
            force: opts.force,
        });
        signed.push(r);
    }
    if items.is_empty() {
        return Ok(());
    }
    let mut signatures = Vec::new();
    for ((item, r), result) in items.iter().zip(&signed).zip(store.load_jobs(&items)) {
        let tag = &item.job.tag;
        match result {
            Ok(outcome) => {
                match outcome.action {
                    Action::Inserted => summary.inserted += 1,
                    Action::Replaced => summary.replaced += 1,
                    Action::Skipped => summary.unchanged_by_content += 1,
                }
                summary.rows.add(&outcome.rows);
                if item.job.has_errors() && outcome.action != Action::Skipped {
                    summary.with_errors.push(tag.clone());
                }
                signatures.push(Signature {
                    tag: tag.clone(),
                    signature: r.signature.clone(),
                    fingerprint: item.fingerprint.clone(),
                });
                observer.job(item.job, JobOutcome::Loaded(&outcome));
            }
            Err(e) => {
                let text = crate::store::error_chain(&e);
                observer.job(item.job, JobOutcome::Failed(&text));
                summary.failed.push((tag.clone(), text));
            }
        }
    }
    store.record_signatures(&signatures)
}
