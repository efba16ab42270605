//! The warehouse: opens a PostgreSQL or SQLite database by URL, creates and
//! migrates the TKO schema, and loads parsed [`Job`]s with Autotest's reparse
//! semantics (spec §6.3–6.4). This module owns the [`Store`] trait, the load
//! API types, the error type and the backend-independent reparse plan;
//! `ledger` owns every load decision (skip, source paths, outcomes, machine
//! rows); the backends own their SQL. It never parses results files (see `parse`) and
//! never builds SQL from values: every value travels as a bound parameter or
//! in a binary COPY stream.

use crate::model::Job;
use crate::table::RowCounts;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

mod ledger;
pub use ledger::live_fingerprint;
mod listing;
pub mod pgconfig;
pub mod pgconnect;
mod pgcopy;
pub mod postgres;
pub mod schema;
pub mod sqlite;

/// The database used when none is given.
pub const DEFAULT_URL: &str = "sqlite:tko.db";

/// Recorded in `tko_ingest_ledger.parser_version`; a change forces reparse.
pub const PARSER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A boxed error from a database driver or the file system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in the store, with where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL names no supported database.
    #[error("unsupported database URL {url:?}: expected postgres://..., postgresql://... or sqlite:PATH")]
    Url {
        /// The URL given, as [`display_url`] shows it.
        url: String,
    },
    /// A command that only reads found no warehouse (and created none).
    #[error("no tko warehouse at {target} (load one with `tko load` or `tko backfill`)")]
    NoWarehouse {
        /// The database, as [`display_url`] shows it.
        target: String,
    },
    /// Could not connect or open.
    #[error("cannot open database {target}")]
    Connect {
        /// The URL, as [`display_url`] shows it.
        target: String,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// `migrate` on a database without the tko schema.
    #[error("the database has no tko schema; run `tko db init` first")]
    NotInitialized,
    /// The database was migrated by a newer tko.
    #[error("schema version {found} is newer than this tko supports ({supported})")]
    TooNew {
        /// Version in the database.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A schema migration failed (and was rolled back).
    #[error("schema migration {version:03}_{name} failed")]
    Migrate {
        /// Migration number.
        version: u32,
        /// Migration name.
        name: &'static str,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// Loading a job failed; its previous version (if any) is intact.
    #[error("loading job {tag:?} failed at {table}")]
    Load {
        /// Job tag.
        tag: String,
        /// The table (or step) being written.
        table: &'static str,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// The tag is in the warehouse loaded from another results directory:
    /// not replaced without `force` (stored version and ledger untouched).
    #[error(
        "job {tag:?} from {new} was not loaded: the warehouse holds that tag loaded from \
         {stored} (use --force to replace it)"
    )]
    SourceConflict {
        /// Job tag.
        tag: String,
        /// Source path of the stored version.
        stored: String,
        /// Source path of the refused item.
        new: String,
    },
    /// Deleting a job failed; its batch was rolled back (the job is whole).
    #[error("deleting job {tag:?} failed at {table}")]
    Delete {
        /// Job tag.
        tag: String,
        /// The table being deleted from.
        table: &'static str,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// A second item with the same tag in one load (the first was loaded).
    #[error("job {tag:?} from {second} was not loaded: {first} has the same tag in this load")]
    DuplicateTag {
        /// Job tag.
        tag: String,
        /// Source path of the item loaded.
        first: String,
        /// Source path of this item.
        second: String,
    },
    /// Some other database statement failed.
    #[error("database error during {what}")]
    Db {
        /// What the store was doing.
        what: &'static str,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// File I/O (benchmark export and import).
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// One job to load.
#[derive(Debug, Clone)]
pub struct LoadItem<'a> {
    /// The parsed job.
    pub job: &'a Job,
    /// The results directory it came from (recorded in the ledger).
    pub source: PathBuf,
    /// Fingerprint of the job directory's content; an unchanged fingerprint
    /// (with the same parser version) skips the job unless `force`.
    pub fingerprint: String,
    /// Reload even if the fingerprint is unchanged.
    pub force: bool,
    /// When the read of this content began (microseconds since the Unix
    /// epoch), taken under the job's `.parse.lock`. A load whose read began
    /// before the read of the version already stored is skipped unless
    /// `force`: of two loaders racing on one job, the later read wins, not
    /// the later commit. `None`: unknown (never skipped for this reason).
    pub read_at: Option<i64>,
}

/// What loading did to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new `tko_jobs` row.
    Inserted,
    /// The tag existed: its tests were replaced in place (reparse).
    Replaced,
    /// Fingerprint unchanged: nothing written.
    Skipped,
    /// The tag was removed by `tko delete`/`tko prune` (ledger outcome
    /// `deleted`): nothing written unless `force`.
    DeletedEarlier,
}

/// The outcome of one successfully handled [`LoadItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    /// Job tag.
    pub tag: String,
    /// `tko_jobs.job_idx`.
    pub job_idx: i64,
    /// What happened.
    pub action: Action,
    /// Tests that kept their `test_idx` (reparse).
    pub tests_kept: usize,
    /// Old tests deleted because they disappeared.
    pub tests_deleted: usize,
    /// Rows written per table (zero when skipped).
    pub rows: RowCounts,
}

/// A job that could not be read (see [`Store::record_failures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Job tag.
    pub tag: String,
    /// The results directory.
    pub source: PathBuf,
    /// What went wrong (recorded in `tko_ingest_ledger.error`).
    pub error: String,
}

/// `tko db status`: schema version and row counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// Applied schema version (`None`: not initialized).
    pub schema_version: Option<u32>,
    /// Newest schema version this build knows.
    pub latest_version: u32,
    /// Row count per table (empty when not initialized).
    pub tables: Vec<(&'static str, i64)>,
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.schema_version {
            Some(v) => writeln!(
                f,
                "{} schema version {v} (latest {})",
                self.backend, self.latest_version
            )?,
            None => writeln!(f, "{}: no tko schema (run `tko db init`)", self.backend)?,
        }
        for (t, n) in &self.tables {
            writeln!(f, "{t:<28} {n:>12}")?;
        }
        Ok(())
    }
}

/// A warehouse database.
pub trait Store: Send {
    /// Creates the schema if absent, else brings it up to date; returns the
    /// migration versions applied.
    fn init(&mut self) -> Result<Vec<u32>, Error>;
    /// Applies newer numbered schema files in place; fails with
    /// [`Error::NotInitialized`] on a database without the schema.
    fn migrate(&mut self) -> Result<Vec<u32>, Error>;
    /// Schema version and row counts.
    fn status(&mut self) -> Result<StatusReport, Error>;
    /// Loads jobs; one result per item, in item order. Each job is atomic
    /// with its machine, kernel and ledger rows: a failed job leaves its
    /// previous version intact and is recorded in `tko_ingest_ledger` with
    /// its error. Refused without writing anything: a second item with the
    /// same tag ([`Error::DuplicateTag`]), and without `force` a tag stored
    /// from another source path ([`Error::SourceConflict`]).
    fn load_jobs(&mut self, items: &[LoadItem<'_>]) -> Vec<Result<LoadOutcome, Error>>;
    /// How many jobs go into one transaction (default 100).
    fn set_batch_jobs(&mut self, jobs: usize);
    /// Whether a second connection can load batches while this one does
    /// (PostgreSQL); a SQLite file has one writer at a time.
    fn writes_concurrently(&self) -> bool {
        false
    }
    /// After a run that loaded `loaded_jobs`, the tables whose planner
    /// statistics are stale, each with its size in pages (to share the
    /// [`Store::analyze`] work among connections): all of them when the jobs
    /// loaded are at least as many as the statistics know of (the warehouse
    /// at least doubled since they were taken: a first backfill, say), so
    /// the reads right after it are planned for the tables as they now
    /// are, not as empty ones; else none, left to the database
    /// (PostgreSQL's autovacuum). A store without such statistics: none.
    fn stale_statistics(&mut self, loaded_jobs: usize) -> Result<Vec<(&'static str, u64)>, Error> {
        let _ = loaded_jobs;
        Ok(Vec::new())
    }
    /// Brings the planner's statistics of `tables` up to date.
    fn analyze(&mut self, tables: &[&str]) -> Result<(), Error> {
        let _ = tables;
        Ok(())
    }
    /// The applied schema version (`None`: not initialized). Cheap.
    fn schema_version(&mut self) -> Result<Option<u32>, Error>;
    /// The ledger rows of `tags` (those that have one), with their backfill
    /// signatures, keyed by tag.
    fn ledger_state(&mut self, tags: &[&str]) -> Result<HashMap<String, LedgerState>, Error>;
    /// The backfill's skip check: of `jobs` (tag, metadata signature;
    /// `None`: prove nothing), the positions of those whose ledger row
    /// does not prove them unchanged ([`LedgerState::unchanged_by_metadata`]),
    /// each with its ledger state if it has one. A position left out is
    /// unchanged: an unchanged re-run gets nothing back to decode.
    fn ledger_unproven(
        &mut self,
        jobs: &[(&str, Option<&str>)],
    ) -> Result<Vec<(usize, Option<LedgerState>)>, Error> {
        let tags: Vec<&str> = jobs.iter().map(|j| j.0).collect();
        let mut states = self.ledger_state(&tags)?;
        Ok(jobs
            .iter()
            .enumerate()
            .filter_map(|(i, (tag, sig))| {
                let state = states.remove(*tag);
                let proven =
                    matches!((&state, sig), (Some(s), Some(sig)) if s.unchanged_by_metadata(sig));
                (!proven).then_some((i, state))
            })
            .collect())
    }
    /// Records (tag, signature, fingerprint) after a backfill handled the
    /// jobs, so that the next run can skip them by metadata alone.
    fn record_signatures(&mut self, rows: &[Signature]) -> Result<(), Error>;
    /// What is recorded for a round's top-level directories, a root at a
    /// time (`spans`): the [`Listing`](crate::discover::Listing)s of its
    /// directories (what an earlier backfill found in them), and the
    /// directories in its spans with a listing that are gone (see
    /// [`TopSpan`](crate::discover::TopSpan)). A backfill asks for one
    /// round's at a time, so they take memory for a round, not for the
    /// whole tree; one range of rows is read per root.
    fn listings_of(
        &mut self,
        spans: &[crate::discover::TopSpan<'_>],
    ) -> Result<crate::discover::Recorded, Error>;
    /// Records `listings` (top-level directories just listed), replacing
    /// those of the same paths, and forgets those of `gone` (directories
    /// no longer there).
    fn record_top_listings(
        &mut self,
        listings: &[(PathBuf, crate::discover::Listing)],
        gone: &[PathBuf],
    ) -> Result<(), Error>;
    /// Records jobs that could not be read as `failed` in the ledger (with
    /// their error), touching none of their rows: a stored version stays
    /// as it is, and the next run tries the job again.
    fn record_failures(&mut self, failures: &[Failure]) -> Result<(), Error>;
    /// Deletes the jobs `sel` chooses, whole, `set_batch_jobs` per
    /// transaction (`dry_run`: each batch rolled back), calling `each` per
    /// job once its batch is done; the ledger keeps each tag as `deleted`
    /// so a later load skips it unless forced.
    fn delete_jobs(
        &mut self,
        sel: &JobSelection,
        dry_run: bool,
        each: &mut dyn FnMut(&Removed),
    ) -> Result<Deletion, Error>;
    /// Deletes the kernels (and their patches) of `kernel_hashes` that no
    /// test refers to: those only a live load's RUNNING rows used (`tko
    /// watch`, after a job's final load). Returns how many were deleted.
    fn drop_unused_kernels(&mut self, kernel_hashes: &[String]) -> Result<usize, Error>;
}

/// Which jobs `tko delete`/`tko prune` remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSelection {
    /// These job tags.
    Tags(Vec<String>),
    /// Jobs whose time (finished, else started, else queued; a job with no
    /// time is never chosen) is before `before` (`YYYY-MM-DD HH:MM:SS`,
    /// UTC, as [`crate::query::filter::time_text`] writes it), optionally
    /// only those whose label matches the glob `label`.
    Before {
        /// The cut-off, exclusive.
        before: String,
        /// Job label glob (`*`, `?`, `\` escapes).
        label: Option<String>,
    },
}

/// One job removed (or, dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Job tag.
    pub tag: String,
    /// Its former `tko_jobs.job_idx`.
    pub job_idx: i64,
    /// Rows removed per table.
    pub rows: RowCounts,
    /// User label links (`tko_test_labels_tests`) removed with its tests.
    pub labels: usize,
}

/// What a deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletion {
    /// Jobs removed.
    pub jobs: usize,
    /// Rows removed, summed.
    pub rows: RowCounts,
    /// User label links removed, summed.
    pub labels: usize,
    /// Tags asked for that the warehouse does not hold.
    pub missing: Vec<String>,
}

/// What the warehouse knows about one job tag (for backfill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerState {
    /// Content fingerprint of the last load attempt.
    pub fingerprint: String,
    /// The last load succeeded with this parser version.
    pub loaded: bool,
    /// The job was removed by `tko delete`/`tko prune`: a load skips it
    /// unless forced.
    pub deleted: bool,
    /// The metadata signature recorded with `fingerprint`, if any.
    pub signature: Option<String>,
}

impl LedgerState {
    /// True when `signature` proves the job unchanged since it was loaded.
    pub fn unchanged_by_metadata(&self, signature: &str) -> bool {
        self.loaded && self.signature.as_deref() == Some(signature)
    }
}

/// A job's metadata signature and the content fingerprint it vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Job tag.
    pub tag: String,
    /// Metadata signature.
    pub signature: String,
    /// Content fingerprint.
    pub fingerprint: String,
}

pub use pgconfig::display_url;

/// Opens `postgres://…`/`postgresql://…` (libpq URL and `PG*` environment,
/// see [`pgconfig`]) or `sqlite:PATH` (created if missing).
pub fn open(url: &str) -> Result<Box<dyn Store>, Error> {
    Ok(open_backend(url, false)?.into_store())
}

/// A database opened by [`open_existing`], by backend.
pub enum Opened {
    /// PostgreSQL.
    Postgres(Box<postgres::PgStore>),
    /// SQLite.
    Sqlite(Box<sqlite::SqliteStore>),
}

impl Opened {
    /// As a [`Store`].
    pub fn into_store(self) -> Box<dyn Store> {
        match self {
            Opened::Postgres(s) => s,
            Opened::Sqlite(s) => s,
        }
    }
}

/// Opens a warehouse that must already exist (for commands that only
/// read): never creates a SQLite file, and fails with
/// [`Error::NoWarehouse`] on a missing file or a database without the tko
/// schema.
pub fn open_existing(url: &str) -> Result<Opened, Error> {
    let mut opened = open_backend(url, true)?;
    if let Opened::Postgres(pg) = &mut opened {
        if pg.schema_version()?.is_none() {
            return Err(Error::NoWarehouse {
                target: display_url(url),
            });
        }
    }
    Ok(opened)
}

/// Whether `url` names a PostgreSQL server (else a SQLite file, or
/// nothing [`open`] accepts).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn open_backend(url: &str, existing: bool) -> Result<Opened, Error> {
    if is_postgres_url(url) {
        Ok(Opened::Postgres(Box::new(postgres::PgStore::connect(url)?)))
    } else if let Some(path) = url.strip_prefix("sqlite:") {
        Ok(Opened::Sqlite(Box::new(if existing {
            sqlite::SqliteStore::open_existing(path)?
        } else {
            sqlite::SqliteStore::open(path)?
        })))
    } else {
        Err(Error::Url {
            url: display_url(url),
        })
    }
}

/// Default jobs per transaction (measured: 100 jobs per transaction reach
/// ~1.1M rows/s, one per transaction ~0.1M).
pub const DEFAULT_BATCH_JOBS: usize = 100;

/// A test row already in the database for a job being reloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OldTest {
    pub(crate) test_idx: i32,
    pub(crate) test: Option<String>,
    pub(crate) subdir: Option<String>,
    pub(crate) invalid: bool,
}

/// How a reload maps new tests onto old rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TestPlan {
    /// Per new test: the kept `test_idx`, or `None` for a new one.
    pub(crate) kept: Vec<Option<i32>>,
    /// Per new test: the `invalid` flag to keep.
    pub(crate) invalid: Vec<bool>,
    /// Every old test id.
    pub(crate) old: Vec<i32>,
    /// Old ids no new test took (deleted with all their rows).
    pub(crate) vanished: Vec<i32>,
}

impl TestPlan {
    /// How many new test ids are needed.
    pub(crate) fn new_ids(&self) -> usize {
        self.kept.iter().filter(|k| k.is_none()).count()
    }
}

/// Pairs new tests with old rows on (test name, subdir) as stored — NULL
/// subdir matches `None` — taking duplicates in id order (legacy behaviour
/// with NULLs matched, duplicates paired instead of last-wins).
pub(crate) fn plan_tests(old: &[OldTest], job: &Job) -> TestPlan {
    let mut by_key: HashMap<(Option<String>, Option<String>), VecDeque<&OldTest>> = HashMap::new();
    for o in old {
        by_key
            .entry((o.test.clone(), o.subdir.clone()))
            .or_default()
            .push_back(o);
    }
    let mut plan = TestPlan {
        old: old.iter().map(|o| o.test_idx).collect(),
        ..TestPlan::default()
    };
    for t in &job.tests {
        let key = (
            Some(crate::table::clean(&t.testname)),
            t.subdir.as_deref().map(crate::table::clean),
        );
        let hit = by_key.get_mut(&key).and_then(VecDeque::pop_front);
        plan.kept.push(hit.map(|o| o.test_idx));
        plan.invalid.push(hit.is_some_and(|o| o.invalid));
    }
    let mut vanished: Vec<i32> = by_key.into_values().flatten().map(|o| o.test_idx).collect();
    vanished.sort_unstable();
    plan.vanished = vanished;
    plan
}

/// An error and its sources, `: `-joined, for the ledger and summaries.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kernel, Status, Test};

    fn test(name: &str, subdir: Option<&str>) -> Test {
        Test {
            subdir: subdir.map(Into::into),
            testname: name.into(),
            status: Status::Good,
            reason: None,
            started_time: None,
            finished_time: None,
            machine: "m".into(),
            kernel: Kernel::unknown(),
            attributes: Default::default(),
            iterations: vec![],
            labels: vec![],
            information: None,
        }
    }

    fn old(id: i32, name: &str, subdir: Option<&str>) -> OldTest {
        OldTest {
            test_idx: id,
            test: Some(name.into()),
            subdir: subdir.map(Into::into),
            invalid: id == 2,
        }
    }

    #[test]
    fn plan_matches_null_subdir_and_pairs_duplicates_in_order() {
        let job = Job {
            tag: "t".into(),
            afe_job_id: None,
            status_version: 1,
            label: None,
            user: None,
            machine: "m".into(),
            machine_group: String::new(),
            machine_owner: None,
            queued_time: None,
            started_time: None,
            finished_time: None,
            aborted_by: None,
            aborted_on: None,
            keyval: Default::default(),
            tests: vec![
                test("boot.0", None),
                test("boot.0", None),
                test("boot.0", None),
                test("dbench", Some("dbench")),
            ],
            diagnostics: vec![],
        };
        let olds = [
            old(1, "boot.0", None),
            old(2, "boot.0", None),
            old(3, "dbench", Some("other")),
        ];
        let p = plan_tests(&olds, &job);
        assert_eq!(p.kept, vec![Some(1), Some(2), None, None]);
        assert_eq!(p.invalid, vec![false, true, false, false]);
        assert_eq!(p.vanished, vec![3]);
        assert_eq!(p.new_ids(), 2);
    }
}
