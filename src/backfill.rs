//! Backfill: loads whole results roots (years of jobs) into the warehouse,
//! resumably and without redoing unchanged work. Jobs are found with
//! `discover`; a job whose metadata signature (size, mtime and inode of the
//! files its parse starts from) and ledger row prove it unchanged is skipped
//! without reading a byte; the others are parsed in parallel in bounded
//! chunks (so memory stays flat however large the root), each under
//! Autotest's per-job `.parse.lock`, and streamed to the writers (one, or
//! on PostgreSQL several connections at once: [`write`]), which load them
//! in batches through [`Store::load_jobs`] (each job atomic). Every
//! committed batch is recorded in the ledger, so a killed run resumes where
//! it stopped. This module does no terminal output: callers get a
//! [`Summary`] after each chunk and at the end.

use crate::discover::{self, JobDir};
use crate::ingest::{self, Parsed};
use crate::model::Job;
use crate::store::postgres::timing;
use crate::store::{Action, Failure, LedgerState, LoadOutcome, Store};
use crate::table::RowCounts;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod write;

/// `tko backfill --batch` by default: jobs per transaction and per parsed
/// chunk. Large, because each batch costs some 25 round trips whatever its
/// size (on a loaded machine each waits for the server to be scheduled);
/// chunks stay bounded by [`Options::chunk_bytes`] of input all the same.
pub const DEFAULT_BATCH_JOBS: usize = 1000;

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tag level (`--level`; `None`: detected, see `discover::Level`).
    pub level: Option<usize>,
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
    /// Input bytes read per chunk (`ingest::read_bounded`; the jobs being
    /// read when it is reached finish): memory is bounded by bytes, not
    /// only by jobs.
    pub chunk_bytes: u64,
    /// Top-level directories scanned per round: the jobs found in them,
    /// their signatures and ledger rows are all that is held besides the
    /// chunks in flight.
    pub units_per_round: usize,
    /// How long jobs whose `.parse.lock` is held are waited for, after
    /// the pass (holding no other lock), before they are reported as
    /// locked.
    pub lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            level: None,
            threads: 0,
            dry_run: false,
            force: false,
            verify: false,
            chunk_jobs: 200,
            chunk_bytes: 2 << 20,
            units_per_round: 2048,
            lock_timeout: crate::lock::DEFAULT_TIMEOUT,
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
    /// For each job that could not be read (not loaded; its previous
    /// version stays).
    fn unread(&mut self, _tag: &str, _error: &str) {}
    /// A discovery notice (no effect on the outcome), e.g. the level
    /// chosen for the scheduler's layout.
    fn notice(&mut self, _text: &str) {}
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
    /// Jobs skipped because `tko delete`/`tko prune` removed them (ledger
    /// outcome `deleted`; `--force` reloads them).
    pub deleted_earlier: usize,
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

    /// What the run asks of the person who started it (the exit status).
    /// Job directories without a status file are normal (a job whose
    /// verify failed) and only counted.
    pub fn verdict(&self) -> Verdict {
        if self.found == 0 {
            Verdict::NothingFound
        } else if self.failed.is_empty()
            && self.with_errors.is_empty()
            && self.locked.is_empty()
            && self.walk_errors.is_empty()
            && !self.interrupted
        {
            Verdict::Clean
        } else {
            Verdict::NeedsAttention
        }
    }
}

/// The outcome of a run as its exit status gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything found was loaded or already current (exit 0).
    Clean,
    /// Something in this run needs attention (exit 1): a job not read or
    /// not loaded, still locked, loaded now with error diagnostics, a walk
    /// error, an interrupted run.
    NeedsAttention,
    /// No job directory found at all (exit 2).
    NothingFound,
}

impl Verdict {
    /// 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Clean => 0,
            Verdict::NeedsAttention => 1,
            Verdict::NothingFound => 2,
        }
    }
}

/// The metadata signature of a job directory: size, mtime and inode of
/// the files its parse starts from, absent ones counting too: `status.log`
/// (else `status`, read only when there is no `status.log`), `keyval`,
/// `.autoserv_execute` (else the parent's `keyval`, merged only when the
/// top-level job dir is above). A changed test keyval without any of these
/// changing is only seen with `verify`. Costs three `stat`s for a usual job.
pub fn signature(dir: &Path) -> String {
    discover::signature_with(|name| {
        std::fs::metadata(dir.join(name))
            .ok()
            .map(|m| discover::stamp(&m))
    })
}

/// A job to read: where it is and its signature.
struct Todo {
    dir: JobDir,
    signature: String,
}

/// One parsed job on its way to the writer. Its `.parse.lock` was held
/// while it was read and is already released (see [`crate::lock`]).
struct Ready {
    parsed: Parsed,
    signature: String,
    /// When its read began, under the lock (see [`LoadItem::read_at`]).
    read_at: Option<i64>,
}

/// What the scanner hands the writer: a parsed chunk, with its share of the
/// scan's bookkeeping.
#[derive(Default)]
struct Chunk {
    ready: Vec<Ready>,
    busy: Vec<Todo>,
    /// Jobs that could not be read, with the reason.
    failed: Vec<Failure>,
    /// Ledger rows of the chunk's jobs (for the dry run's verdicts).
    ledger: HashMap<String, LedgerState>,
    units_done: usize,
    found: usize,
    unchanged_by_metadata: usize,
    walk_errors: Vec<String>,
    /// Discovery notices (level detected, cycles, aliases).
    notices: Vec<String>,
    /// Top-level directories listed by the walk, to be recorded for the
    /// next run (see `discover::Listing`).
    listings: Vec<(PathBuf, discover::Listing)>,
    /// Top-level directories gone whose listings are to be forgotten
    /// (see `discover::TopSpan`).
    gone: Vec<PathBuf>,
}

/// A walked round on its way to the scanner: its jobs, their signatures
/// and the chunk carrying its counts; or why the walk stopped.
type Walked = Result<(Vec<JobDir>, Vec<String>, Chunk), crate::store::Error>;

/// The reader, for one statement.
fn lock_reader<'a, 'b>(reader: &'a Mutex<&'b mut dyn Store>) -> MutexGuard<'a, &'b mut dyn Store> {
    // A panicking holder ends the whole backfill anyway.
    reader.lock().unwrap_or_else(|e| e.into_inner())
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
    run_with(&mut [store], reader, roots, opts, stop, observer)
}

/// [`run`] with several writers: each of `writers` (connections to the
/// same warehouse, at least one) loads whole chunks, at the same time as
/// the others (see [`write`]); the first also loads the jobs waited for
/// after the pass, and all share the closing `ANALYZE`.
pub fn run_with(
    writers: &mut [&mut (dyn Store + '_)],
    reader: &mut dyn Store,
    roots: &[PathBuf],
    opts: &Options,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> Result<Summary, crate::store::Error> {
    assert!(!writers.is_empty(), "a backfill needs a writer");
    let start = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .expect("a rayon pool with default settings builds");
    // A dry run may meet a warehouse not created yet, or an older one.
    let version = reader.schema_version()?;
    let has_ledger = version.is_some();
    // The listings of the last run are used unless everything is to be
    // looked at (a warehouse older than their table has none).
    let use_listings = !opts.force
        && !opts.verify
        && version
            .is_some_and(|v| crate::store::schema::tables_at(v).any(|t| t == "tko_scan_listing"));
    let mut summary = Summary {
        units: discover::count_units(roots),
        ..Summary::default()
    };
    observer.progress(&summary);
    // The walker looks up each round's listings through the reader, the
    // scanner the ledger rows of the round before.
    let reader = Mutex::new(reader);
    let reader = &reader;
    let listings_of = |p: &discover::Pending| -> Result<discover::Recorded, crate::store::Error> {
        if !use_listings {
            return Ok(discover::Recorded::default());
        }
        let t0 = Instant::now();
        let recorded = lock_reader(reader).listings_of(&p.spans());
        timing::add("backfill: reading the listings of the last run", t0);
        recorded
    };

    let locked = std::thread::scope(|scope| {
        // One chunk parsed ahead of the one being loaded (with several
        // writers, the others' chunks are that one).
        let ahead = if writers.len() > 1 { 0 } else { 1 };
        let (tx, rx) = sync_channel::<Chunk>(ahead);
        let pool = &pool;
        // Stage 1 walks and signs a round while stage 2 reads the ledger
        // rows of the previous one and parses what changed.
        let (walked_tx, walked_rx) = sync_channel::<Walked>(1);
        scope.spawn(move || {
            // The walk signs most jobs with the `stat`s it makes anyway.
            let mut discovery = discover::Discovery::new(roots, opts.level)
                .signing()
                .remembering();
            let max = opts.units_per_round.max(1);
            let mut next = discovery.take_round(max);
            let mut prior = next.as_ref().map(listings_of).transpose();
            while let Some(pending) = next {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let recorded = match prior {
                    Ok(recorded) => recorded.unwrap_or_default(),
                    Err(e) => {
                        let _ = walked_tx.send(Err(e));
                        return;
                    }
                };
                // This round is walked while the next one's listings are
                // looked up.
                next = discovery.take_round(max);
                let t0 = Instant::now();
                let (round, fetched) = std::thread::scope(|s| {
                    let fetching = next
                        .as_ref()
                        .filter(|_| use_listings)
                        .map(|n| s.spawn(|| listings_of(n)));
                    let round = pool.install(|| discovery.walk_round(pending, &recorded.listings));
                    let fetched = fetching.map(|f| f.join().expect("a lookup does not panic"));
                    (round, fetched)
                });
                prior = fetched.transpose();
                timing::add("backfill: walking", t0);
                let Some(round) = round else {
                    return;
                };
                let chunk = Chunk {
                    units_done: round.units,
                    walk_errors: round.errors.iter().map(ToString::to_string).collect(),
                    notices: round.notices.iter().map(ToString::to_string).collect(),
                    listings: round.listings,
                    gone: recorded.gone,
                    ..Chunk::default()
                };
                let dirs = round.jobs;
                let signatures: Vec<String> = pool.install(|| {
                    dirs.par_iter()
                        .zip(round.signatures)
                        .map(|(d, s)| s.unwrap_or_else(|| signature(&d.path)))
                        .collect()
                });
                if walked_tx.send(Ok((dirs, signatures, chunk))).is_err() {
                    return;
                }
            }
        });
        let scanner = scope.spawn(move || -> Result<(), crate::store::Error> {
            for walked in walked_rx {
                let (dirs, signatures, mut chunk) = walked?;
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                chunk.found = dirs.len();
                // The jobs the ledger does not prove unchanged (all of them
                // without a ledger, or with --force/--verify), with their
                // ledger rows; the others are skipped.
                let prove = !opts.force && !opts.verify;
                let mut unproven = if has_ledger {
                    let jobs: Vec<(&str, Option<&str>)> = dirs
                        .iter()
                        .zip(&signatures)
                        .map(|(d, s)| (d.tag.as_str(), prove.then_some(s.as_str())))
                        .collect();
                    let t0 = Instant::now();
                    let unproven = lock_reader(reader).ledger_unproven(&jobs)?;
                    timing::add("backfill: checking the ledger", t0);
                    unproven
                } else {
                    (0..dirs.len()).map(|i| (i, None)).collect()
                };
                unproven.sort_unstable_by_key(|u| u.0);
                let mut ledger = HashMap::new();
                let mut todo = Vec::with_capacity(unproven.len());
                let mut dirs: Vec<Option<(JobDir, String)>> =
                    dirs.into_iter().zip(signatures).map(Some).collect();
                for (i, state) in unproven {
                    let Some((dir, signature)) = dirs.get_mut(i).and_then(Option::take) else {
                        continue;
                    };
                    if let Some(state) = state {
                        ledger.insert(dir.tag.clone(), state);
                    }
                    todo.push(Todo { dir, signature });
                }
                chunk.unchanged_by_metadata = dirs.iter().filter(|d| d.is_some()).count();
                // The scan's counts travel with the round's first chunk.
                let mut rest = todo;
                loop {
                    // At most `chunk_jobs` jobs and `chunk_bytes` of input
                    // read (and the jobs being read then).
                    let (read, tail) = pool.install(|| {
                        read_chunk(
                            std::mem::take(&mut rest),
                            opts.chunk_jobs,
                            opts.chunk_bytes,
                            opts,
                        )
                    });
                    rest = tail;
                    chunk.ledger = read
                        .ready
                        .iter()
                        .filter_map(|r| ledger.remove_entry(&r.parsed.job.tag))
                        .collect();
                    chunk.ready = read.ready;
                    chunk.busy = read.busy;
                    chunk.failed = read.failed;
                    let t0 = Instant::now();
                    if tx.send(std::mem::take(&mut chunk)).is_err() {
                        return Ok(());
                    }
                    timing::add("backfill: parsed chunk waits for the writer", t0);
                    if rest.is_empty() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            Ok(())
        });
        let mut locked = Vec::new();
        let writers = writers.iter_mut().map(|w| &mut **w).collect();
        write::run_writers(scope, writers, rx, opts, |written| {
            write::account(written, opts, &mut summary, observer, &mut locked)?;
            summary.elapsed = start.elapsed();
            observer.progress(&summary);
            Ok(())
        })?;
        scanner.join().expect("the scanner does not panic")?;
        Ok::<_, crate::store::Error>(locked)
    })?;
    summary.interrupted = stop.load(Ordering::Relaxed)
        && (summary.units_done < summary.units || summary.done < summary.found);

    // Jobs whose lock was held are waited for after the pass, holding no
    // other lock, for at most `lock_timeout`.
    let mut locked = locked;
    if !locked.is_empty() && !summary.interrupted && !opts.dry_run {
        summary.done -= locked.len();
        let mut waiter = crate::lock::Waiter::new(opts.lock_timeout);
        while !locked.is_empty() && !stop.load(Ordering::Relaxed) && waiter.pause() {
            let all = std::mem::take(&mut locked);
            let (mut chunk, _) = pool.install(|| read_chunk(all, usize::MAX, u64::MAX, opts));
            // Still locked: waited for again, not counted yet.
            locked = std::mem::take(&mut chunk.busy);
            let written = write::Written::by(&mut *writers[0], chunk, opts);
            write::account(written, opts, &mut summary, observer, &mut Vec::new())?;
            summary.elapsed = start.elapsed();
            observer.progress(&summary);
        }
        summary.done += locked.len();
    }
    summary.locked = locked.into_iter().map(|t| t.dir.tag).collect();
    if !opts.dry_run {
        write::refresh_statistics(writers, summary.inserted + summary.replaced)?;
    }
    summary.elapsed = start.elapsed();
    observer.progress(&summary);
    Ok(summary)
}

/// Reads a chunk of jobs from the front of `todo` in parallel, each under
/// its `.parse.lock` (taken without waiting, released as soon as the job
/// is read), until `max_jobs` jobs or `max_bytes` of input are read
/// (`ingest::read_bounded`); returns the chunk and the jobs not read.
/// Jobs whose lock is held come back unread in `busy`; jobs that could not
/// be read come back in `failed` with the reason.
fn read_chunk(
    mut todo: Vec<Todo>,
    max_jobs: usize,
    max_bytes: u64,
    opts: &Options,
) -> (Chunk, Vec<Todo>) {
    enum Read {
        Ready(Box<Parsed>, Option<i64>),
        Busy,
        Failed(String),
    }
    let results = ingest::read_bounded(&todo, max_jobs, max_bytes, |t| {
        let _lock = if opts.dry_run {
            None
        } else {
            match crate::lock::try_lock(&t.dir.path) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) => return (Read::Busy, 0),
                Err(e) => {
                    let path = t.dir.path.join(crate::lock::LOCK_FILE);
                    return (
                        Read::Failed(format!("cannot open {}: {e}", path.display())),
                        0,
                    );
                }
            }
        };
        let read_at = read_start();
        match ingest::parse_dir(&t.dir) {
            Ok(parsed) => {
                let bytes = parsed.input_bytes;
                (Read::Ready(Box::new(parsed), read_at), bytes)
            }
            // A read error is never a parse result: the job fails and
            // its stored version stays.
            Err(e) => (Read::Failed(e.to_string()), 0),
        }
    });
    let rest = todo.split_off(results.len());
    let mut chunk = Chunk::default();
    for (t, r) in todo.into_iter().zip(results) {
        match r {
            Read::Ready(parsed, read_at) => chunk.ready.push(Ready {
                parsed: *parsed,
                signature: t.signature,
                read_at,
            }),
            Read::Busy => chunk.busy.push(t),
            Read::Failed(error) => chunk.failed.push(Failure {
                error,
                tag: t.dir.tag,
                source: t.dir.path,
            }),
        }
    }
    (chunk, rest)
}

/// Now, in microseconds since the Unix epoch (`None` before 1970).
pub(crate) fn read_start() -> Option<i64> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since.as_micros()).ok()
}
