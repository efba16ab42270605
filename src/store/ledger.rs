//! The ledger's decisions, made once for both backends. [`load_jobs`] is
//! the one load loop: it refuses a tag given twice in one call and a tag
//! stored from another source path (unless `force`), skips jobs whose
//! ledger row proves the content unchanged, hands the rest to the backend,
//! re-plans jobs whose ledger row another loader changed meanwhile, and
//! records failures. This module also says what a ledger row holds for a
//! loaded or a failed job, when a backfill signature vouches for a job
//! ([`state`]), and which job's values a machine row carries: those of the
//! newest job on the machine ([`JobMachine`]), so the warehouse does not
//! depend on load order or on where a run was interrupted. It also decides
//! deletion ([`delete_jobs`]): whole jobs, in batches, each leaving its
//! ledger row [`DELETED`] so no later load brings it back unasked. The
//! backends ([`Backend`], [`Remover`]) own the SQL and the transactions,
//! nothing else.

use super::{
    error_chain, Action, Deletion, Error, Failure, JobSelection, LedgerState, LoadItem,
    LoadOutcome, Removed, TestPlan, PARSER_VERSION,
};
use crate::model::{Job, Timestamp};
use crate::table::{clean, RowCounts};
use std::collections::HashMap;
use std::path::Path;

/// `tko_ingest_ledger.outcome` of a job whose last load succeeded.
pub(crate) const LOADED: &str = "loaded";
/// `tko_ingest_ledger.outcome` of a job whose last load or read failed.
pub(crate) const FAILED: &str = "failed";
/// `tko_ingest_ledger.outcome` of a job `tko delete`/`tko prune` removed:
/// `job_idx` NULL, source path and fingerprint kept. A later load or
/// backfill skips the tag ([`Action::DeletedEarlier`]) unless `force`.
pub(crate) const DELETED: &str = "deleted";

/// Rounds of planning for jobs whose ledger row changed under us.
const MAX_ROUNDS: usize = 8;

/// The SQL both backends read ledger rows with (and the scan state of
/// their tags); each appends its condition on the list of tags `l.tag`.
pub(crate) const LEDGER_ROWS_SQL: &str = "SELECT l.tag, l.job_idx, l.source_path, \
     l.fingerprint, l.parser_version, l.outcome, s.signature, s.fingerprint, l.read_at \
     FROM tko_ingest_ledger l LEFT JOIN tko_scan_state s ON s.tag = l.tag WHERE ";

/// The decision-relevant columns of one `tko_ingest_ledger` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LedgerRow {
    /// The stored job (`None`: never loaded).
    pub(crate) job_idx: Option<i32>,
    /// The results directory of the last load (or of the failure, when
    /// no version is stored).
    pub(crate) source_path: String,
    /// Content fingerprint of the last attempt.
    pub(crate) fingerprint: String,
    /// tko version of the last attempt.
    pub(crate) parser_version: String,
    /// [`LOADED`] or [`FAILED`].
    pub(crate) outcome: String,
    /// When the read of the stored version began (µs since the epoch).
    pub(crate) read_at: Option<i64>,
}

/// A ledger row with its tag's backfill scan state (signature and the
/// fingerprint it was taken with), as [`LEDGER_ROWS_SQL`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadRow {
    /// The ledger row.
    pub(crate) ledger: LedgerRow,
    /// `tko_scan_state` (signature, fingerprint), if any.
    pub(crate) scan: Option<(String, String)>,
}

/// What backfill may conclude from a ledger row: the signature counts only
/// if it was taken with the content that was loaded by this tko version.
pub(crate) fn state(row: &ReadRow) -> LedgerState {
    let l = &row.ledger;
    state_of(
        l.fingerprint.clone(),
        &l.outcome,
        &l.parser_version,
        row.scan.clone(),
    )
}

/// [`state`] from the columns it reads: the ledger row's fingerprint,
/// outcome and parser version, and the tag's scan state (signature,
/// fingerprint).
pub(crate) fn state_of(
    fingerprint: String,
    outcome: &str,
    parser_version: &str,
    scan: Option<(String, String)>,
) -> LedgerState {
    LedgerState {
        loaded: outcome == LOADED && parser_version == PARSER_VERSION,
        deleted: outcome == DELETED,
        signature: scan
            .filter(|(_, fp)| *fp == fingerprint)
            .map(|(sig, _)| sig),
        fingerprint,
    }
}

/// The backfill's skip check in one statement (PostgreSQL; see
/// `Store::ledger_unproven`): `$1` tags, `$2` their metadata signatures
/// (NULL proves nothing), `$3` [`PARSER_VERSION`]. Returns, for each job
/// whose ledger row does not prove it unchanged, its 1-based position and
/// the columns [`state_of`] reads (NULL when it has no ledger row or scan
/// state). The condition is [`LedgerState::unchanged_by_metadata`] of
/// [`state_of`]: loaded by this version, scan state taken with the
/// loaded content, same signature; a NULL anywhere proves nothing. The
/// lateral subquery makes it two primary-key probes per job whatever the
/// planner thinks of the array's size (a join chose hash joins over whole
/// tables: 46 ms a round of 2,048 on 20,000 jobs, growing with the
/// warehouse).
pub(crate) const UNPROVEN_SQL: &str = "SELECT x.i, j.fingerprint, j.outcome, \
     j.parser_version, j.signature, j.scan_fingerprint \
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(tag, sig, i) \
     LEFT JOIN LATERAL (SELECT l.fingerprint, l.outcome, l.parser_version, \
     s.signature, s.fingerprint AS scan_fingerprint \
     FROM tko_ingest_ledger l LEFT JOIN tko_scan_state s ON s.tag = l.tag \
     WHERE l.tag = x.tag OFFSET 0) j ON true \
     WHERE (j.outcome = 'loaded' AND j.parser_version = $3 \
     AND j.scan_fingerprint = j.fingerprint AND j.signature = x.sig) IS NOT TRUE";

/// The ledger fingerprint of a live load (`tko watch` writing a running
/// job's RUNNING rows): `live:` plus where the status log was read to. It
/// never equals a content fingerprint (`xxh3:` and hex), so the job's final load,
/// and any later `tko load` or backfill of it, always replaces what a live
/// load wrote; a live load of the same bytes again is skipped as
/// unchanged.
pub fn live_fingerprint(file_id: (u64, u64), offset: u64) -> String {
    format!("live:{}:{}:{offset}", file_id.0, file_id.1)
}

/// A source path as the ledger stores and compares it.
pub(crate) fn source_text(path: &Path) -> String {
    clean(&path.to_string_lossy())
}

/// What to do with one item, given its tag's ledger row.
#[derive(Debug)]
pub(crate) enum Plan {
    /// The same content was loaded by this tko version: nothing to write.
    Skip(LoadOutcome),
    /// Not loaded, ledger untouched (the stored version came from another
    /// source path).
    Refuse(Error),
    /// Load it.
    Write,
}

/// Decides one item. The source-path rule comes first: a tag stored from
/// another results directory is replaced only with `force`. A failed row
/// is never "unchanged". Content read before the stored version was read
/// is skipped too (unless `force`): it is older.
pub(crate) fn plan(item: &LoadItem<'_>, row: Option<&LedgerRow>) -> Plan {
    let Some(row) = row else {
        return Plan::Write;
    };
    if row.outcome == DELETED && !item.force {
        // Deleted on purpose: not reloaded silently.
        return Plan::Skip(LoadOutcome {
            tag: item.job.tag.clone(),
            job_idx: 0,
            action: Action::DeletedEarlier,
            tests_kept: 0,
            tests_deleted: 0,
            rows: RowCounts::default(),
        });
    }
    let source = source_text(&item.source);
    if row.job_idx.is_some() && row.source_path != source && !item.force {
        return Plan::Refuse(Error::SourceConflict {
            tag: item.job.tag.clone(),
            stored: row.source_path.clone(),
            new: source,
        });
    }
    // Of two loads racing on one job, the later read wins: content read
    // before the stored version was read is older, whatever order the
    // loaders commit in.
    let read_earlier = matches!(
        (item.read_at, row.read_at),
        (Some(mine), Some(stored)) if mine < stored
    );
    match row.job_idx {
        Some(job_idx)
            if !item.force
                && row.outcome == LOADED
                && ((row.fingerprint == item.fingerprint
                    && row.parser_version == PARSER_VERSION)
                    || read_earlier) =>
        {
            Plan::Skip(LoadOutcome {
                tag: item.job.tag.clone(),
                job_idx: i64::from(job_idx),
                action: Action::Skipped,
                tests_kept: 0,
                tests_deleted: 0,
                rows: RowCounts::default(),
            })
        }
        _ => Plan::Write,
    }
}

/// A job to write and the ledger row it was planned on.
#[derive(Debug)]
pub(crate) struct Planned<'i, 'j> {
    /// The item.
    pub(crate) item: &'i LoadItem<'j>,
    /// Its ledger row when planned; the backend writes the job only if the
    /// row is still this one (checked inside the job's transaction, after
    /// the job row is locked), else it answers [`Written::Stale`].
    pub(crate) seen: Option<LedgerRow>,
}

impl Planned<'_, '_> {
    /// True when `now` (the row read inside the job's transaction) is the
    /// row this job was planned on.
    pub(crate) fn still_current(&self, now: Option<&LedgerRow>) -> bool {
        self.seen.as_ref() == now
    }
}

/// What a backend did with one [`Planned`] job.
#[derive(Debug)]
pub(crate) enum Written {
    /// Written and committed with its ledger row `loaded`.
    Done(LoadOutcome),
    /// Nothing written: the ledger row changed since planning.
    Stale,
    /// Nothing written (the job's transaction was rolled back).
    Failed(Error),
}

/// The ledger row of a loaded job.
#[derive(Debug, Clone)]
pub(crate) struct LoadedRow {
    pub(crate) tag: String,
    pub(crate) job_idx: i32,
    pub(crate) source_path: String,
    pub(crate) fingerprint: String,
    pub(crate) counts: RowCounts,
    pub(crate) read_at: Option<i64>,
}

/// The ledger row of a job that failed. Written with outcome [`FAILED`]
/// and `parser_version` [`PARSER_VERSION`]; `job_idx` and the counts keep
/// what they were, and so does `source_path` when a version is stored (it
/// names where that version came from; the error names the failed source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedRow {
    pub(crate) tag: String,
    pub(crate) source_path: String,
    pub(crate) fingerprint: String,
    pub(crate) error: String,
}

/// A loaded job's outcome and ledger row.
pub(crate) fn loaded(
    item: &LoadItem<'_>,
    job_idx: i32,
    inserted: bool,
    plan: &TestPlan,
    counts: RowCounts,
) -> (LoadOutcome, LoadedRow) {
    let outcome = LoadOutcome {
        tag: item.job.tag.clone(),
        job_idx: i64::from(job_idx),
        action: if inserted {
            Action::Inserted
        } else {
            Action::Replaced
        },
        tests_kept: plan.kept.iter().filter(|k| k.is_some()).count(),
        tests_deleted: plan.vanished.len(),
        rows: counts,
    };
    let row = LoadedRow {
        tag: clean(&item.job.tag),
        job_idx,
        source_path: source_text(&item.source),
        fingerprint: clean(&item.fingerprint),
        counts,
        read_at: item.read_at,
    };
    (outcome, row)
}

/// The ledger row of a failure (`fingerprint` empty when nothing was read).
fn failed(tag: &str, source: &Path, fingerprint: &str, error: &str) -> FailedRow {
    let source = source_text(source);
    FailedRow {
        tag: clean(tag),
        error: clean(&format!("{source}: {error}")),
        source_path: source,
        fingerprint: clean(fingerprint),
    }
}

/// The ledger rows of failures reported by the caller (e.g. unreadable
/// job files): the job's rows are not touched.
pub(crate) fn failure_rows(failures: &[Failure]) -> Vec<FailedRow> {
    failures
        .iter()
        .map(|f| failed(&f.tag, &f.source, "", &f.error))
        .collect()
}

/// What a job says about its machine, and how new the job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobMachine {
    /// `tko_machines.hostname`.
    pub(crate) hostname: String,
    /// The job's machine group (platforms).
    pub(crate) machine_group: String,
    /// The job's machine owner, if it names one.
    pub(crate) owner: Option<String>,
    /// [`newest_key`] of the job.
    pub(crate) newest: String,
}

impl JobMachine {
    /// The machine values of `job`. A machine row carries the group of the
    /// job with the greatest `newest` key on that machine, and the owner of
    /// the newest job that names one (Autotest's serial writes, replayed in
    /// time order: the group is always set, the owner only when known).
    pub(crate) fn of(job: &Job) -> JobMachine {
        JobMachine {
            hostname: clean(&job.machine),
            machine_group: clean(&job.machine_group),
            owner: job.machine_owner.as_deref().map(clean),
            newest: newest_key(job),
        }
    }
}

/// Offset making every `i64` epoch a non-negative 20-digit number.
const KEY_OFFSET: i128 = 1 << 62;

/// A text key ordering jobs from oldest to newest by finished, then started,
/// then queued time (a missing time is older than any), then tag. Plain
/// byte order of the key is the order (`COLLATE "C"` in PostgreSQL), so
/// both stores and the migration that fills it agree.
pub(crate) fn newest_key(job: &Job) -> String {
    let mut key = String::with_capacity(70 + job.tag.len());
    for t in [job.finished_time, job.started_time, job.queued_time] {
        push_time(&mut key, t);
    }
    key.push_str(&clean(&job.tag));
    key
}

fn push_time(key: &mut String, t: Option<Timestamp>) {
    use std::fmt::Write;
    match t {
        None => key.push('0'),
        Some(s) => {
            // Clamped so the number has 20 digits whatever the input.
            let n = (i128::from(s) + KEY_OFFSET).clamp(0, 10i128.pow(20) - 1);
            write!(key, "1{n:020}").expect("writing to a String cannot fail");
        }
    }
}

/// The SQL side of a load, one implementation per database.
pub(crate) trait Backend {
    /// Ledger rows (and scan state) of `tags`, by tag, as committed.
    fn ledger_rows(&mut self, tags: &[String]) -> Result<HashMap<String, ReadRow>, Error>;
    /// Writes `jobs` (sorted by tag, no tag twice), each atomically with
    /// its machine and kernel rows and its ledger row; one answer per job.
    fn write_jobs(&mut self, jobs: &[Planned<'_, '_>]) -> Vec<Written>;
    /// Upserts the ledger rows of failures (see [`FailedRow`]).
    fn write_failures(&mut self, rows: &[FailedRow]) -> Result<(), Error>;
}

/// A job chosen for deletion: its tag and `job_idx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doomed {
    pub(crate) tag: String,
    pub(crate) job_idx: i32,
}

/// The SQL side of `tko delete`/`tko prune`, one implementation per
/// database.
pub(crate) trait Remover {
    /// The jobs `sel` chooses, sorted by tag.
    fn find_jobs(&mut self, sel: &JobSelection) -> Result<Vec<Doomed>, Error>;
    /// Deletes `jobs` whole in one transaction (committed, or rolled back
    /// when `dry_run`): every row of each job and of its tests (user rows
    /// too), its `tko_job_machines` row, its scan state; recomputes the
    /// machine rows the jobs were on from the newest remaining job (the
    /// same statement a load runs); sets each ledger row to [`DELETED`]
    /// (`job_idx` NULL, counts 0, source path and fingerprint kept; a row
    /// is created for a job that had none). A job no longer there is left
    /// out.
    fn delete_batch(&mut self, jobs: &[Doomed], dry_run: bool) -> Result<Vec<Removed>, Error>;
}

/// Deletes the jobs `sel` chooses, `batch_jobs` per transaction, calling
/// `each` for every job removed (or, `dry_run`, that would be) once its
/// batch is committed. Tags `sel` names that the warehouse does not hold
/// come back in [`Deletion::missing`]. A failing batch stops the run with
/// its error: earlier batches stay deleted, the failing one is whole.
pub(crate) fn delete_jobs(
    backend: &mut dyn Remover,
    sel: &JobSelection,
    batch_jobs: usize,
    dry_run: bool,
    each: &mut dyn FnMut(&Removed),
) -> Result<Deletion, Error> {
    let jobs = backend.find_jobs(sel)?;
    let mut out = Deletion::default();
    if let JobSelection::Tags(tags) = sel {
        let found: std::collections::HashSet<&str> = jobs.iter().map(|d| d.tag.as_str()).collect();
        out.missing = tags
            .iter()
            .filter(|t| !found.contains(clean(t).as_str()))
            .cloned()
            .collect();
    }
    for batch in jobs.chunks(batch_jobs.max(1)) {
        for r in backend.delete_batch(batch, dry_run)? {
            out.jobs += 1;
            out.rows.add(&r.rows);
            out.labels += r.labels;
            each(&r);
        }
    }
    Ok(out)
}

/// Splits `todo` (item indices) sorted by tag, so concurrent loaders lock
/// job rows in one order, into batches of at most `size`.
fn batches(items: &[LoadItem<'_>], mut todo: Vec<usize>, size: usize) -> Vec<Vec<usize>> {
    todo.sort_by(|&a, &b| items[a].job.tag.cmp(&items[b].job.tag));
    todo.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Loads `items` through `backend` in batches of `batch_jobs`: one result
/// per item, in item order (see [`super::Store::load_jobs`]).
pub(crate) fn load_jobs(
    backend: &mut dyn Backend,
    items: &[LoadItem<'_>],
    batch_jobs: usize,
) -> Vec<Result<LoadOutcome, Error>> {
    let mut results: Vec<Option<Result<LoadOutcome, Error>>> =
        (0..items.len()).map(|_| None).collect();
    // A tag given twice: the first is loaded, the others are errors (the
    // database would see one row written twice).
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut todo = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match first.get(&clean(&item.job.tag)) {
            Some(&f) => {
                results[i] = Some(Err(Error::DuplicateTag {
                    tag: item.job.tag.clone(),
                    first: source_text(&items[f].source),
                    second: source_text(&item.source),
                }));
            }
            None => {
                first.insert(clean(&item.job.tag), i);
                todo.push(i);
            }
        }
    }
    for batch in batches(items, todo, batch_jobs) {
        load_batch(backend, items, batch, &mut results);
    }
    results
        .into_iter()
        .map(|r| r.expect("every item gets a result"))
        .collect()
}

/// Plans, writes and re-plans one batch until every item has a result.
fn load_batch(
    backend: &mut dyn Backend,
    items: &[LoadItem<'_>],
    mut todo: Vec<usize>,
    results: &mut [Option<Result<LoadOutcome, Error>>],
) {
    for round in 0..MAX_ROUNDS {
        let tags: Vec<String> = todo.iter().map(|&i| clean(&items[i].job.tag)).collect();
        let rows = match backend.ledger_rows(&tags) {
            Ok(r) => r,
            Err(e) => {
                let text = error_chain(&e);
                for &i in &todo {
                    results[i] = Some(Err(Error::Load {
                        tag: items[i].job.tag.clone(),
                        table: "tko_ingest_ledger",
                        source: text.clone().into(),
                    }));
                }
                return;
            }
        };
        let mut planned = Vec::new();
        let mut which = Vec::new();
        for (&i, tag) in todo.iter().zip(&tags) {
            let row = rows.get(tag).map(|r| &r.ledger);
            match plan(&items[i], row) {
                Plan::Skip(o) => results[i] = Some(Ok(o)),
                Plan::Refuse(e) => results[i] = Some(Err(e)),
                Plan::Write => {
                    planned.push(Planned {
                        item: &items[i],
                        seen: row.cloned(),
                    });
                    which.push(i);
                }
            }
        }
        if planned.is_empty() {
            return;
        }
        let written = backend.write_jobs(&planned);
        debug_assert_eq!(written.len(), planned.len());
        let mut failures = Vec::new();
        let mut stale = Vec::new();
        for ((i, p), w) in which.into_iter().zip(&planned).zip(written) {
            match w {
                Written::Done(o) => results[i] = Some(Ok(o)),
                Written::Failed(e) => {
                    failures.push(failed(
                        &p.item.job.tag,
                        &p.item.source,
                        &p.item.fingerprint,
                        &error_chain(&e),
                    ));
                    results[i] = Some(Err(e));
                }
                Written::Stale if round + 1 == MAX_ROUNDS => {
                    results[i] = Some(Err(Error::Load {
                        tag: p.item.job.tag.clone(),
                        table: "tko_ingest_ledger",
                        source: "other loaders kept changing this job's ledger row".into(),
                    }));
                }
                Written::Stale => stale.push(i),
            }
        }
        // Best effort: the failure is returned either way (and a lost
        // connection, the usual cause, may not take the write).
        let _ = backend.write_failures(&failures);
        if stale.is_empty() {
            return;
        }
        todo = stale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn job(tag: &str, finished: Option<i64>) -> Job {
        Job {
            tag: tag.into(),
            afe_job_id: None,
            status_version: 1,
            label: None,
            user: None,
            machine: "m".into(),
            machine_group: String::new(),
            machine_owner: None,
            queued_time: Some(5),
            started_time: Some(10),
            finished_time: finished,
            aborted_by: None,
            aborted_on: None,
            keyval: Default::default(),
            tests: vec![],
            diagnostics: vec![],
        }
    }

    fn item<'a>(job: &'a Job, source: &str, force: bool) -> LoadItem<'a> {
        LoadItem {
            job,
            source: PathBuf::from(source),
            fingerprint: "fp".into(),
            force,
            read_at: None,
        }
    }

    fn row(job_idx: Option<i32>, source: &str, outcome: &str) -> LedgerRow {
        LedgerRow {
            job_idx,
            source_path: source.into(),
            fingerprint: "fp".into(),
            parser_version: PARSER_VERSION.into(),
            outcome: outcome.into(),
            read_at: None,
        }
    }

    #[test]
    fn newest_key_orders_by_times_then_tag() {
        let keys: Vec<String> = [
            job("9-x", None),
            job("10-x", Some(-5)),
            job("9-x", Some(-5)),
            job("1-x", Some(0)),
            job("10-x", Some(100)),
            job("9-x", Some(100)),
            job("0-x", Some(i64::MAX)),
        ]
        .iter()
        .map(newest_key)
        .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(
            keys.iter().collect::<std::collections::BTreeSet<_>>().len(),
            7
        );
        assert_eq!(
            &keys[4][..21],
            "104611686018427388004",
            "fixed width: '1' and 20 digits"
        );
    }

    #[test]
    fn plan_refuses_other_source_skips_unchanged_retries_failed() {
        let j = job("1-a/h", Some(1));
        let same = item(&j, "/r/1-a/h", false);
        let other = item(&j, "/elsewhere/1-a/h", false);
        let forced = item(&j, "/elsewhere/1-a/h", true);
        let loaded = row(Some(3), "/r/1-a/h", LOADED);
        assert!(matches!(plan(&same, None), Plan::Write));
        assert!(matches!(plan(&same, Some(&loaded)), Plan::Skip(o) if o.job_idx == 3));
        match plan(&other, Some(&loaded)) {
            Plan::Refuse(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("/r/1-a/h") && text.contains("/elsewhere/1-a/h"),
                    "{text}"
                );
            }
            p => panic!("{p:?}"),
        }
        assert!(matches!(plan(&forced, Some(&loaded)), Plan::Write));
        let failed_row = row(Some(3), "/r/1-a/h", FAILED);
        assert!(matches!(plan(&same, Some(&failed_row)), Plan::Write));
        // Never loaded: any source may load it.
        let never = row(None, "/r/1-a/h", FAILED);
        assert!(matches!(plan(&other, Some(&never)), Plan::Write));
        let mut old_version = loaded.clone();
        old_version.parser_version = "0.0.0-old".into();
        assert!(matches!(plan(&same, Some(&old_version)), Plan::Write));
    }

    #[test]
    fn signature_counts_only_for_loaded_content() {
        let mut r = ReadRow {
            ledger: row(Some(1), "/r", LOADED),
            scan: Some(("sig".into(), "fp".into())),
        };
        assert!(state(&r).unchanged_by_metadata("sig"));
        r.scan = Some(("sig".into(), "other".into()));
        assert!(!state(&r).unchanged_by_metadata("sig"));
        r.scan = Some(("sig".into(), "fp".into()));
        r.ledger.outcome = FAILED.into();
        assert!(!state(&r).unchanged_by_metadata("sig"));
    }

    #[test]
    fn deleted_jobs_are_skipped_unless_forced_whatever_the_source() {
        let j = job("1-a/h", Some(1));
        let gone = row(None, "/results/1-a/h", DELETED);
        for source in ["/results/1-a/h", "/elsewhere/1-a/h"] {
            match plan(&item(&j, source, false), Some(&gone)) {
                Plan::Skip(o) => assert_eq!(o.action, Action::DeletedEarlier),
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                plan(&item(&j, source, true), Some(&gone)),
                Plan::Write
            ));
        }
        let r = ReadRow {
            ledger: gone,
            scan: None,
        };
        assert!(state(&r).deleted);
        assert!(!state(&r).loaded);
    }
}
