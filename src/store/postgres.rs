//! PostgreSQL backend: binary COPY of the job tree, many jobs per
//! transaction, one job per transaction on retry. Every row a job writes
//! (its machine and kernel rows included) is written in that transaction,
//! so a failed or interrupted job changes nothing; machine rows are locked
//! in hostname order for the transaction, so concurrent loaders recompute
//! them one at a time. Serialization failures and deadlocks are retried
//! here and never reach the caller. What to load and what the ledger says
//! is decided in `ledger`; this module holds the SQL. This module must not build SQL from values: only
//! table and column names from `table`/`schema` constants are formatted in.

use super::ledger::{
    self, Backend, Doomed, FailedRow, JobMachine, LedgerRow, LoadedRow, Planned, ReadRow, Remover,
    Written,
};
use super::pgconnect::{ConnectError, Connector};
use super::pgcopy::{TreeCopy, TREE_TABLES};
use super::{
    error_chain, plan_tests, schema, BoxError, Deletion, Error, Failure, JobSelection, LedgerState,
    LoadItem, LoadOutcome, OldTest, Removed, Signature, StatusReport, Store, DEFAULT_BATCH_JOBS,
    PARSER_VERSION,
};
use crate::discover::{Listing, Recorded, TopSpan};
use crate::model::{Kernel, Timestamp};
use crate::query::filter::glob_to_like;
use crate::table::{build_rows, clean, JobRow, KernelRow, PatchRow, RowCounts, TreeIds};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time spent per load phase, summed over batches, when the environment
/// variable `TKO_PG_TIMING` is set (for finding where load time goes;
/// `bench_load` prints it). Off, it costs one cached check per phase.
pub mod timing {
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;

    static PHASES: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

    /// Whether `TKO_PG_TIMING` is set.
    pub fn on() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("TKO_PG_TIMING").is_some())
    }

    /// Adds the time since `since` to `phase`.
    pub(crate) fn add(phase: &'static str, since: Instant) {
        if !on() {
            return;
        }
        let d = since.elapsed().as_secs_f64();
        let mut t = PHASES.lock().unwrap_or_else(|p| p.into_inner());
        match t.iter_mut().find(|e| e.0 == phase) {
            Some(e) => e.1 += d,
            None => t.push((phase, d)),
        }
    }

    /// The phases and their seconds so far, in first-seen order.
    pub fn phases() -> Vec<(&'static str, f64)> {
        PHASES.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How often a statement group is retried on serialization failure/deadlock.
const MAX_RETRIES: u32 = 20;

/// A connection to a PostgreSQL warehouse.
pub struct PgStore {
    connector: Connector,
    target: String,
    client: Client,
    batch_jobs: usize,
    status_idx: HashMap<String, i32>,
    kernels: HashMap<String, i32>,
}

/// A failed step: the job (if one job's statement failed) and the table.
struct StepError {
    tag: Option<String>,
    table: &'static str,
    retry: bool,
    source: BoxError,
}

fn step<T>(
    tag: Option<&str>,
    table: &'static str,
    r: Result<T, postgres::Error>,
) -> Result<T, StepError> {
    r.map_err(|e| StepError {
        tag: tag.map(str::to_owned),
        table,
        retry: retryable(&e),
        source: Box::new(e),
    })
}

/// A failed COPY write (the client's error is inside the `io::Error`).
fn io_step(table: &'static str, e: std::io::Error) -> StepError {
    let retry = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<postgres::Error>())
        .is_some_and(retryable);
    StepError {
        tag: None,
        table,
        retry,
        source: Box::new(e),
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(5 * u64::from(attempt + 1)));
}

/// An epoch timestamp as a `timestamp without time zone` parameter (UTC).
fn ts(t: Option<Timestamp>) -> Option<SystemTime> {
    t.map(|s| {
        if s >= 0 {
            UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
        }
    })
}

fn db(what: &'static str) -> impl FnOnce(postgres::Error) -> Error {
    move |e| Error::Db {
        what,
        source: Box::new(e),
    }
}

impl PgStore {
    /// Connects as `psql` would: a libpq URL merged with the `PG*`
    /// environment, the password file and TLS settings (see `pgconfig`).
    pub fn connect(url: &str) -> Result<PgStore, Error> {
        let target = super::display_url(url);
        let fail = |e: ConnectError| Error::Connect {
            target: target.clone(),
            source: Box::new(e),
        };
        let connector = Connector::new(url).map_err(fail)?;
        let client = connector.connect().map_err(fail)?;
        Ok(PgStore {
            connector,
            target,
            client,
            batch_jobs: DEFAULT_BATCH_JOBS,
            status_idx: HashMap::new(),
            kernels: HashMap::new(),
        })
    }

    /// The underlying client (for tests and benchmarks).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    fn reconnect_if_closed(&mut self) -> Result<(), Error> {
        if self.client.is_closed() {
            self.client = self.connector.connect().map_err(|e| Error::Connect {
                target: self.target.clone(),
                source: Box::new(e),
            })?;
        }
        Ok(())
    }

    /// Upserts rows of three columns in one statement: `sql` takes the
    /// columns as arrays `$1`, `$2`, `$3` (`unnest`) and says what a
    /// conflict updates; an error says it was `what`.
    fn upsert_rows<T: postgres::types::ToSql + Sync>(
        &mut self,
        what: &'static str,
        sql: &str,
        rows: &[[T; 3]],
    ) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let column = |i: usize| rows.iter().map(|r| &r[i]).collect::<Vec<&T>>();
        let (a, b, c) = (column(0), column(1), column(2));
        self.client.execute(sql, &[&a, &b, &c]).map_err(db(what))?;
        Ok(())
    }

    fn apply(&mut self, require_init: bool) -> Result<Vec<u32>, Error> {
        let mut tx = self.client.transaction().map_err(db("schema migration"))?;
        // Concurrent `init`s would race on CREATE TABLE; serialize them.
        tx.execute("SELECT pg_advisory_xact_lock(7235001)", &[])
            .map_err(db("schema lock"))?;
        let current = current_version(&mut tx)?;
        let applied = schema::apply_pending(schema::POSTGRES, current, require_init, |m| {
            tx.batch_execute(m.sql)?;
            tx.execute(
                "INSERT INTO tko_schema_version (version, name) VALUES ($1, $2)",
                &[&(m.version as i32), &m.name],
            )
            .map(drop)
        })?;
        tx.commit().map_err(db("schema migration commit"))?;
        Ok(applied)
    }

    fn load_status_words(&mut self) -> Result<(), Error> {
        if self.status_idx.is_empty() {
            for r in self
                .client
                .query("SELECT word, status_idx FROM tko_status", &[])
                .map_err(db("reading tko_status"))?
            {
                let word: Option<String> = r.get(0);
                if let Some(w) = word {
                    self.status_idx.insert(w, r.get(1));
                }
            }
        }
        Ok(())
    }

    /// Writes `jobs` in one transaction (all or nothing): creates their
    /// machine rows if new, adds missing kernels, upserts the job rows
    /// (locking them), checks that their ledger rows are still those they
    /// were planned on (else rolls back: [`Batch::Stale`]), then replaces
    /// their trees and writes their ledger rows; last, it locks their
    /// machine rows, records their machine values and recomputes the
    /// machine rows. Locks are taken jobs (in tag order), then machines (in
    /// hostname order), so concurrent loaders queue rather than deadlock;
    /// and as the machine rows are locked only at the end, a second writer
    /// streams its batch while the first finishes (`tko backfill
    /// --writers`): they queue only for the machine step and the commit.
    fn write_batch(&mut self, jobs: &[&Planned<'_, '_>]) -> Result<Batch, StepError> {
        let PgStore {
            client,
            status_idx,
            kernels: kernel_cache,
            ..
        } = self;
        let status_idx = &*status_idx;
        let mut tx = step(None, "BEGIN", client.transaction())?;
        let one = (jobs.len() == 1).then(|| jobs[0].item.job.tag.as_str());
        let t0 = std::time::Instant::now();

        // Machines: created if new; locked at the end (see `machine_values`).
        let machines: Vec<JobMachine> = jobs.iter().map(|p| JobMachine::of(p.item.job)).collect();
        let mut hosts: Vec<&str> = machines.iter().map(|m| m.hostname.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        // Looked up first: an `INSERT ... ON CONFLICT` of a row another
        // writer is updating (its machine step) would wait for its commit.
        let select = |tx: &mut Transaction<'_>, hosts: &[&str]| {
            step(
                one,
                "tko_machines",
                tx.query(
                    "SELECT hostname, machine_idx FROM tko_machines WHERE hostname = ANY($1)",
                    &[&hosts],
                ),
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, i32>(1)))
                    .collect::<Vec<_>>()
            })
        };
        let mut machine_idx: HashMap<String, i32> = select(&mut tx, &hosts)?.into_iter().collect();
        let missing: Vec<&str> = hosts
            .iter()
            .copied()
            .filter(|h| !machine_idx.contains_key(*h))
            .collect();
        if !missing.is_empty() {
            step(
                one,
                "tko_machines",
                tx.execute(
                    "INSERT INTO tko_machines (hostname) SELECT h FROM unnest($1::text[]) AS u(h) \
                     ORDER BY h ON CONFLICT (hostname) DO NOTHING",
                    &[&missing],
                ),
            )?;
            machine_idx.extend(select(&mut tx, &missing)?);
        }
        timing::add("write: machines", t0);

        // Kernels (and patches) this loader has not seen committed yet.
        let t0 = std::time::Instant::now();
        let mut wanted: BTreeMap<&str, &Kernel> = BTreeMap::new();
        for p in jobs {
            for t in &p.item.job.tests {
                if !kernel_cache.contains_key(&t.kernel.kernel_hash) {
                    wanted.insert(&t.kernel.kernel_hash, &t.kernel);
                }
            }
        }
        let mut new_kernels: HashMap<String, i32> = HashMap::new();
        if !wanted.is_empty() {
            let hashes: Vec<String> = wanted.keys().map(|h| clean(h)).collect();
            let found: HashMap<String, i32> = step(
                one,
                "tko_kernels",
                tx.query(
                    "SELECT kernel_hash, kernel_idx FROM tko_kernels WHERE kernel_hash = ANY($1)",
                    &[&hashes],
                ),
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
            for (hash, kernel) in wanted {
                let idx = match found.get(&clean(hash)) {
                    Some(&i) => i,
                    None => step(one, "tko_kernels", insert_kernel(&mut tx, kernel))?,
                };
                new_kernels.insert(hash.to_owned(), idx);
            }
        }
        let kernel_idx = |hash: &str| -> i32 {
            *kernel_cache
                .get(hash)
                .or_else(|| new_kernels.get(hash))
                .expect("every kernel of the batch was resolved")
        };
        timing::add("write: kernels", t0);

        // Job rows, upserted in one statement (rows locked in tag order,
        // like concurrent loaders).
        let t0 = std::time::Instant::now();
        let mut jrs = Vec::with_capacity(jobs.len());
        let mut job_machine = Vec::with_capacity(jobs.len());
        for (p, m) in jobs.iter().zip(&machines) {
            let idx = machine_idx[&m.hostname];
            job_machine.push(idx);
            jrs.push(JobRow::new(p.item.job, idx));
        }
        let tags: Vec<&str> = jrs.iter().map(|r| r.tag.as_str()).collect();
        let labels: Vec<Option<&str>> = jrs.iter().map(|r| r.label.as_deref()).collect();
        let users: Vec<Option<&str>> = jrs.iter().map(|r| r.username.as_deref()).collect();
        let queued: Vec<Option<SystemTime>> = jrs.iter().map(|r| ts(r.queued_time)).collect();
        let started: Vec<Option<SystemTime>> = jrs.iter().map(|r| ts(r.started_time)).collect();
        let finished: Vec<Option<SystemTime>> = jrs.iter().map(|r| ts(r.finished_time)).collect();
        let afe: Vec<Option<i64>> = jrs.iter().map(|r| r.afe_job_id).collect();
        let rows = step(
            one,
            "tko_jobs",
            tx.query(
                "INSERT INTO tko_jobs (tag, label, username, machine_idx, queued_time, \
                    started_time, finished_time, afe_job_id) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], \
                    $5::timestamp[], $6::timestamp[], $7::timestamp[], $8::int8[]) \
                    AS u(tag, label, username, machine_idx, queued_time, started_time, \
                        finished_time, afe_job_id) \
                 ORDER BY tag \
                 ON CONFLICT (tag) DO UPDATE SET label = EXCLUDED.label, \
                    username = EXCLUDED.username, machine_idx = EXCLUDED.machine_idx, \
                    queued_time = EXCLUDED.queued_time, started_time = EXCLUDED.started_time, \
                    finished_time = EXCLUDED.finished_time, afe_job_id = EXCLUDED.afe_job_id \
                 RETURNING tag, job_idx, (xmax = 0) AS inserted",
                &[
                    &tags,
                    &labels,
                    &users,
                    &job_machine,
                    &queued,
                    &started,
                    &finished,
                    &afe,
                ],
            ),
        )?;
        let returned: HashMap<&str, (i32, bool)> = rows
            .iter()
            .map(|r| (r.get::<_, &str>(0), (r.get(1), r.get(2))))
            .collect();

        // With the job rows locked, their ledger rows cannot change under
        // us any more: are they still the ones the jobs were planned on?
        let owned_tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        let now = step(one, "tko_ingest_ledger", read_ledger(&mut tx, &owned_tags))?;
        let stale = jobs
            .iter()
            .zip(&tags)
            .any(|(p, t)| !p.still_current(now.get(*t).map(|r| &r.ledger)));
        if stale {
            return Ok(Batch::Stale); // dropping `tx` rolls back
        }

        let mut staged = Vec::with_capacity(jobs.len());
        let mut job_ids = Vec::with_capacity(jobs.len());
        for (i, p) in jobs.iter().enumerate() {
            let job = p.item.job;
            let &(job_idx, inserted) = returned.get(tags[i]).ok_or_else(|| StepError {
                tag: Some(job.tag.clone()),
                table: "tko_jobs",
                retry: false,
                source: "job row missing from the upsert's RETURNING".into(),
            })?;
            let tag = Some(job.tag.as_str());
            let old = if inserted {
                Vec::new()
            } else {
                remove_old_rows(&mut tx, job_idx, tag)?
            };
            let plan = plan_tests(&old, job);
            remove_vanished(&mut tx, &plan.vanished, tag)?;
            job_ids.push(job_idx);
            staged.push((job_idx, job_machine[i], inserted, plan));
        }
        let all_new = staged.iter().all(|s| s.2);
        timing::add("write: job upsert, old rows", t0);
        let t0 = std::time::Instant::now();
        // Ids for the new tests, in one round trip.
        let need: usize = staged.iter().map(|s| s.3.new_ids()).sum();
        let mut fresh = if need > 0 {
            step(
                None,
                "tko_tests",
                tx.query(
                    "SELECT nextval('tko_tests_test_idx_seq')::int4 FROM generate_series(1, $1)",
                    &[&(need as i32)],
                ),
            )?
            .into_iter()
            .map(|r| r.get::<_, i32>(0))
            .collect::<Vec<_>>()
        } else {
            Vec::new()
        }
        .into_iter();
        timing::add("write: test ids", t0);
        let t0 = std::time::Instant::now();
        // Ids and checks per job, then the rows of every job, one COPY per
        // table.
        let mut prepared = Vec::with_capacity(jobs.len());
        for (p, (_, _, _, plan)) in jobs.iter().zip(&staged) {
            let job = p.item.job;
            let test_idx: Vec<i32> = plan
                .kept
                .iter()
                .map(|k| k.unwrap_or_else(|| fresh.next().expect("allocated enough test ids")))
                .collect();
            let kernel_ids: Vec<i32> = job
                .tests
                .iter()
                .map(|t| kernel_idx(&t.kernel.kernel_hash))
                .collect();
            for t in &job.tests {
                if !status_idx.contains_key(t.status.word()) {
                    return Err(StepError {
                        tag: Some(job.tag.clone()),
                        table: "tko_status",
                        retry: false,
                        source: format!("status word {} missing from tko_status", t.status).into(),
                    });
                }
            }
            prepared.push((test_idx, kernel_ids));
        }
        timing::add("write: id mapping, checks", t0);
        let t1 = std::time::Instant::now();
        let mut all = TreeCopy::default();
        let counts: Vec<RowCounts> = (0..jobs.len())
            .map(|i| {
                let (job_idx, machine_idx, _, plan) = &staged[i];
                let ids = TreeIds {
                    job_idx: *job_idx,
                    machine_idx: *machine_idx,
                    test_idx: &prepared[i].0,
                    kernel_idx: &prepared[i].1,
                    invalid: &plan.invalid,
                };
                build_rows(jobs[i].item.job, &ids, |s| status_idx[s.word()], &mut all)
            })
            .collect();
        all.finish();
        timing::add("write: build and encode rows", t1);
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut ledger_rows = Vec::with_capacity(jobs.len());
        for ((p, (job_idx, _, inserted, plan)), counts) in jobs.iter().zip(&staged).zip(counts) {
            let (o, row) = ledger::loaded(p.item, *job_idx, *inserted, plan, counts);
            outcomes.push(o);
            ledger_rows.push(row);
        }
        let t0 = std::time::Instant::now();
        write_ledger(&mut tx, &ledger_rows, one)?;
        timing::add("write: ledger upsert", t0);
        let t0 = std::time::Instant::now();
        copy_tree(&mut tx, &all)?;
        timing::add("write: COPY (all tables)", t0);
        let t0 = std::time::Instant::now();
        machine_values(
            &mut tx,
            &job_ids,
            &job_machine,
            &machines,
            &hosts,
            all_new,
            one,
        )?;
        timing::add("write: machine rows (locked)", t0);
        let t0 = std::time::Instant::now();
        step(None, "COMMIT", tx.commit())?;
        timing::add("write: COMMIT", t0);
        kernel_cache.extend(new_kernels);
        Ok(Batch::Done(outcomes))
    }

    /// One batch transaction, retried on serialization failures and
    /// deadlocks.
    fn load_batch(&mut self, jobs: &[&Planned<'_, '_>]) -> Result<Batch, StepError> {
        let mut attempt = 0;
        loop {
            match self.write_batch(jobs) {
                Err(e) if e.retry && attempt < MAX_RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                r => return r,
            }
        }
    }

    /// Exports the job-tree tables as binary COPY files `<table>.bin` in
    /// `dir` (benchmarks: "the same rows" for [`PgStore::raw_copy_from_dir`]).
    /// Returns the row count per table.
    pub fn export_rows_to_dir(&mut self, dir: &Path) -> Result<Vec<(&'static str, u64)>, Error> {
        let mut out = Vec::new();
        for (table, cols) in COPY_TABLES {
            let path = dir.join(format!("{table}.bin"));
            let io = |source| Error::Io {
                path: path.clone(),
                source,
            };
            let mut file = std::fs::File::create(&path).map_err(io)?;
            let mut reader = self
                .client
                .copy_out(&format!(
                    "COPY {table} ({}) TO STDOUT (FORMAT binary)",
                    cols.join(", ")
                ))
                .map_err(db("COPY TO"))?;
            let mut buf = Vec::new();
            reader.read_to_end(&mut buf).map_err(io)?;
            file.write_all(&buf).map_err(io)?;
            drop(reader);
            let n: i64 = self
                .client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .map_err(db("count"))?
                .get(0);
            out.push((*table, n as u64));
        }
        Ok(out)
    }

    /// Empties the job-tree tables and COPYs the files written by
    /// [`PgStore::export_rows_to_dir`] back in one transaction: the raw
    /// `COPY FROM` ceiling to compare [`Store::load_jobs`] against.
    pub fn raw_copy_from_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let mut tx = self.client.transaction().map_err(db("BEGIN"))?;
        for (table, cols) in COPY_TABLES {
            let path = dir.join(format!("{table}.bin"));
            let data = std::fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            tx.execute(&format!("TRUNCATE {table}"), &[])
                .map_err(db("TRUNCATE"))?;
            let mut w = tx
                .copy_in(&format!(
                    "COPY {table} ({}) FROM STDIN (FORMAT binary)",
                    cols.join(", ")
                ))
                .map_err(db("COPY FROM"))?;
            w.write_all(&data).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            w.finish().map_err(db("COPY FROM"))?;
        }
        tx.commit().map_err(db("COMMIT"))
    }
}

/// What one batch transaction did.
enum Batch {
    /// Committed: one outcome per job.
    Done(Vec<LoadOutcome>),
    /// Rolled back: a job's ledger row changed since planning (all of the
    /// batch are planned again).
    Stale,
}

/// Inserts a kernel and its patches, or returns the id another loader
/// committed first (its insert of the same hash is waited for).
fn insert_kernel(tx: &mut Transaction<'_>, kernel: &Kernel) -> Result<i32, postgres::Error> {
    let row0 = KernelRow::new(kernel, 0);
    let inserted = tx.query_opt(
        "INSERT INTO tko_kernels (kernel_hash, base, printable) VALUES ($1, $2, $3) \
         ON CONFLICT (kernel_hash) DO NOTHING RETURNING kernel_idx",
        &[&row0.kernel_hash, &row0.base, &row0.base],
    )?;
    let Some(r) = inserted else {
        return Ok(tx
            .query_one(
                "SELECT kernel_idx FROM tko_kernels WHERE kernel_hash = $1",
                &[&row0.kernel_hash],
            )?
            .get(0));
    };
    let idx: i32 = r.get(0);
    let row = KernelRow::new(kernel, i64::from(idx));
    if row.printable != row.base {
        tx.execute(
            "UPDATE tko_kernels SET printable = $1 WHERE kernel_idx = $2",
            &[&row.printable, &idx],
        )?;
    }
    for p in &kernel.patches {
        let p = PatchRow::new(idx, p);
        tx.execute(
            "INSERT INTO tko_patches (kernel_idx, name, url, hash) VALUES ($1, $2, $3, $4)",
            &[&p.kernel_idx, &p.name, &p.url, &p.hash],
        )?;
    }
    Ok(idx)
}

/// Ledger rows of `tags` (by tag).
fn read_ledger(
    c: &mut impl postgres::GenericClient,
    tags: &[String],
) -> Result<HashMap<String, ReadRow>, postgres::Error> {
    let sql = format!("{}l.tag = ANY($1)", ledger::LEDGER_ROWS_SQL);
    Ok(c.query(&sql, &[&tags])?
        .iter()
        .map(|r| {
            let scan = match (r.get::<_, Option<String>>(6), r.get(7)) {
                (Some(sig), Some(fp)) => Some((sig, fp)),
                _ => None,
            };
            let row = ReadRow {
                ledger: LedgerRow {
                    job_idx: r.get(1),
                    source_path: r.get(2),
                    fingerprint: r.get(3),
                    parser_version: r.get(4),
                    outcome: r.get(5),
                    read_at: r.get(8),
                },
                scan,
            };
            (r.get(0), row)
        })
        .collect())
}

/// Locks the machine rows of `hosts` (sorted) in hostname order until
/// commit, so they are recomputed by one loader at a time, then records
/// what each job says about its machine and recomputes the machine rows
/// that depend on them (their machines, and those a reloaded job moved
/// away from: none when every job was `all_new`, a job row just inserted,
/// whose fresh id no machine value can name yet): see [`JobMachine::of`].
/// The last step of a batch: the lock is held only for it and the commit.
/// `FOR NO KEY UPDATE`, not `FOR UPDATE`: a machine's key never changes,
/// and the foreign-key check of every job row (`tko_jobs.machine_idx`)
/// takes `FOR KEY SHARE` on it, which `FOR UPDATE` would wait for (and
/// deadlock with: each batch holds the share lock from its own job rows).
fn machine_values(
    tx: &mut Transaction<'_>,
    job_idx: &[i32],
    machine_idx: &[i32],
    machines: &[JobMachine],
    hosts: &[&str],
    all_new: bool,
    tag: Option<&str>,
) -> Result<(), StepError> {
    step(
        tag,
        "tko_machines",
        tx.execute(
            "SELECT 1 FROM tko_machines WHERE hostname = ANY($1) ORDER BY hostname FOR NO KEY UPDATE",
            &[&hosts],
        ),
    )?;
    let t = "tko_job_machines";
    let moved: Vec<i32> = if all_new {
        Vec::new()
    } else {
        step(
            tag,
            t,
            tx.query(
                "SELECT DISTINCT h.machine_idx FROM tko_job_machines h \
             JOIN unnest($1::int4[], $2::int4[]) AS u(j, m) ON u.j = h.job_idx \
             WHERE h.machine_idx <> u.m ORDER BY 1",
                &[&job_idx, &machine_idx],
            ),
        )?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    if !moved.is_empty() {
        step(
            tag,
            "tko_machines",
            tx.execute(
                "SELECT 1 FROM tko_machines WHERE machine_idx = ANY($1) \
                 ORDER BY machine_idx FOR NO KEY UPDATE",
                &[&moved],
            ),
        )?;
    }
    let newest: Vec<&str> = machines.iter().map(|m| m.newest.as_str()).collect();
    let groups: Vec<&str> = machines.iter().map(|m| m.machine_group.as_str()).collect();
    let owners: Vec<Option<&str>> = machines.iter().map(|m| m.owner.as_deref()).collect();
    step(
        tag,
        t,
        tx.execute(
            "INSERT INTO tko_job_machines (job_idx, machine_idx, newest, machine_group, owner) \
             SELECT * FROM unnest($1::int4[], $2::int4[], $3::text[], $4::text[], $5::text[]) \
             ORDER BY 1 \
             ON CONFLICT (job_idx) DO UPDATE SET machine_idx = EXCLUDED.machine_idx, \
                newest = EXCLUDED.newest, machine_group = EXCLUDED.machine_group, \
                owner = EXCLUDED.owner",
            &[&job_idx, &machine_idx, &newest, &groups, &owners],
        ),
    )?;
    let mut affected: Vec<i32> = machine_idx.iter().copied().chain(moved).collect();
    affected.sort_unstable();
    affected.dedup();
    recompute_machines(tx, &affected, tag)
}

/// Sets the group and owner of machines `affected` from the newest job on
/// each (see [`JobMachine::of`]); a machine no job is on keeps its values.
fn recompute_machines(
    tx: &mut Transaction<'_>,
    affected: &[i32],
    tag: Option<&str>,
) -> Result<(), StepError> {
    step(
        tag,
        "tko_machines",
        tx.execute(
            "UPDATE tko_machines m SET machine_group = c.g, owner = c.o \
             FROM (SELECT x.idx, \
                    (SELECT h.machine_group FROM tko_job_machines h \
                     WHERE h.machine_idx = x.idx ORDER BY h.newest DESC LIMIT 1) AS g, \
                    (SELECT h.owner FROM tko_job_machines h \
                     WHERE h.machine_idx = x.idx AND h.owner IS NOT NULL \
                     ORDER BY h.newest DESC LIMIT 1) AS o \
                   FROM unnest($1::int4[]) AS x(idx) \
                   WHERE EXISTS (SELECT 1 FROM tko_job_machines h WHERE h.machine_idx = x.idx)) c \
             WHERE m.machine_idx = c.idx \
                AND (m.machine_group IS DISTINCT FROM c.g OR m.owner IS DISTINCT FROM c.o)",
            &[&affected],
        ),
    )?;
    Ok(())
}

/// Deletes `jobs` whole inside `tx`: job rows locked in tag order, then
/// their machine rows in hostname order (as a load locks them), then each
/// job's rows; returns what each job lost (jobs no longer there are left
/// out).
fn delete_tree(tx: &mut Transaction<'_>, jobs: &[Doomed]) -> Result<Vec<Removed>, StepError> {
    let idx: Vec<i32> = jobs.iter().map(|d| d.job_idx).collect();
    let tags: Vec<&str> = jobs.iter().map(|d| d.tag.as_str()).collect();
    // Still there (and locked, in tag order as a load's upsert locks them),
    // by job.
    let present: std::collections::HashSet<i32> = step(
        None,
        "tko_jobs",
        tx.query(
            "SELECT j.job_idx FROM tko_jobs j \
             JOIN unnest($1::int4[], $2::text[]) AS u(i, t) ON u.i = j.job_idx AND u.t = j.tag \
             ORDER BY j.tag FOR UPDATE OF j",
            &[&idx, &tags],
        ),
    )?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let machines: Vec<i32> = step(
        None,
        "tko_machines",
        tx.query(
            "SELECT m.machine_idx FROM tko_machines m WHERE m.machine_idx IN ( \
                SELECT j.machine_idx FROM tko_jobs j WHERE j.job_idx = ANY($1) \
                UNION SELECT h.machine_idx FROM tko_job_machines h WHERE h.job_idx = ANY($1)) \
             ORDER BY m.hostname FOR NO KEY UPDATE",
            &[&idx],
        ),
    )?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for d in jobs.iter().filter(|d| present.contains(&d.job_idx)) {
        let one = Some(d.tag.as_str());
        let ids: Vec<i32> = step(
            one,
            "tko_tests",
            tx.query(
                "SELECT test_idx FROM tko_tests WHERE job_idx = $1",
                &[&d.job_idx],
            ),
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let mut del =
            |table: &'static str, sql: &str, arg: &(dyn postgres::types::ToSql + Sync)| {
                step(one, table, tx.execute(sql, &[arg])).map(|n| n as usize)
            };
        let mut rows = RowCounts {
            iteration_attributes: del(
                "tko_iteration_attributes",
                "DELETE FROM tko_iteration_attributes WHERE test_idx = ANY($1)",
                &ids,
            )?,
            iteration_results: del(
                "tko_iteration_result",
                "DELETE FROM tko_iteration_result WHERE test_idx = ANY($1)",
                &ids,
            )?,
            test_attributes: del(
                "tko_test_attributes",
                "DELETE FROM tko_test_attributes WHERE test_idx = ANY($1)",
                &ids,
            )?,
            ..RowCounts::default()
        };
        let labels = del(
            "tko_test_labels_tests",
            "DELETE FROM tko_test_labels_tests WHERE test_id = ANY($1)",
            &ids,
        )?;
        rows.tests = del(
            "tko_tests",
            "DELETE FROM tko_tests WHERE test_idx = ANY($1)",
            &ids,
        )?;
        rows.job_keyvals = del(
            "tko_job_keyvals",
            "DELETE FROM tko_job_keyvals WHERE job_id = $1",
            &d.job_idx,
        )?;
        rows.diagnostics = del(
            "tko_diagnostics",
            "DELETE FROM tko_diagnostics WHERE job_idx = $1",
            &d.job_idx,
        )?;
        del(
            "tko_test_information",
            "DELETE FROM tko_test_information WHERE job_idx = $1",
            &d.job_idx,
        )?;
        del(
            "tko_job_machines",
            "DELETE FROM tko_job_machines WHERE job_idx = $1",
            &d.job_idx,
        )?;
        del(
            "tko_jobs",
            "DELETE FROM tko_jobs WHERE job_idx = $1",
            &d.job_idx,
        )?;
        del(
            "tko_scan_state",
            "DELETE FROM tko_scan_state WHERE tag = $1",
            &d.tag,
        )?;
        step(
            one,
            "tko_ingest_ledger",
            tx.execute(
                "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, \
                    parser_version, loaded_at, outcome, error) \
                 VALUES ($1, NULL, '', '', $2, now() AT TIME ZONE 'UTC', $3, NULL) \
                 ON CONFLICT (tag) DO UPDATE SET job_idx = NULL, \
                    loaded_at = EXCLUDED.loaded_at, outcome = EXCLUDED.outcome, error = NULL, \
                    tests = 0, test_attributes = 0, iteration_attributes = 0, \
                    iteration_results = 0, job_keyvals = 0, diagnostics = 0",
                &[&d.tag, &PARSER_VERSION, &ledger::DELETED],
            ),
        )?;
        out.push(Removed {
            tag: d.tag.clone(),
            job_idx: i64::from(d.job_idx),
            rows,
            labels,
        });
    }
    recompute_machines(tx, &machines, None)?;
    Ok(out)
}

/// The tables [`PgStore::export_rows_to_dir`] exports, with their columns.
const COPY_TABLES: &[(&str, &[&str])] = &TREE_TABLES;

/// Upserts the ledger rows of a batch's loaded jobs in one statement, in
/// tag order.
fn write_ledger(
    tx: &mut Transaction<'_>,
    rows: &[LoadedRow],
    tag: Option<&str>,
) -> Result<(), StepError> {
    let tags: Vec<&str> = rows.iter().map(|l| l.tag.as_str()).collect();
    let job_idx: Vec<i32> = rows.iter().map(|l| l.job_idx).collect();
    let paths: Vec<&str> = rows.iter().map(|l| l.source_path.as_str()).collect();
    let fingerprints: Vec<&str> = rows.iter().map(|l| l.fingerprint.as_str()).collect();
    let read_at: Vec<Option<i64>> = rows.iter().map(|l| l.read_at).collect();
    let count = |f: fn(&RowCounts) -> usize| -> Vec<i32> {
        rows.iter().map(|l| f(&l.counts) as i32).collect()
    };
    step(
        tag,
        "tko_ingest_ledger",
        tx.execute(
            "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, \
                parser_version, loaded_at, outcome, error, tests, test_attributes, \
                iteration_attributes, iteration_results, job_keyvals, diagnostics, read_at) \
             SELECT tag, job_idx, source_path, fingerprint, $5, now() AT TIME ZONE 'UTC', \
                $12, NULL, tests, test_attributes, iteration_attributes, \
                iteration_results, job_keyvals, diagnostics, read_at \
             FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $6::int4[], \
                $7::int4[], $8::int4[], $9::int4[], $10::int4[], $11::int4[], $13::int8[]) \
                AS u(tag, job_idx, source_path, fingerprint, tests, test_attributes, \
                    iteration_attributes, iteration_results, job_keyvals, diagnostics, \
                    read_at) \
             ORDER BY tag \
             ON CONFLICT (tag) DO UPDATE SET job_idx = EXCLUDED.job_idx, \
                source_path = EXCLUDED.source_path, fingerprint = EXCLUDED.fingerprint, \
                parser_version = EXCLUDED.parser_version, loaded_at = EXCLUDED.loaded_at, \
                outcome = EXCLUDED.outcome, error = NULL, tests = EXCLUDED.tests, \
                test_attributes = EXCLUDED.test_attributes, \
                iteration_attributes = EXCLUDED.iteration_attributes, \
                iteration_results = EXCLUDED.iteration_results, \
                job_keyvals = EXCLUDED.job_keyvals, diagnostics = EXCLUDED.diagnostics, \
                read_at = EXCLUDED.read_at",
            &[
                &tags,
                &job_idx,
                &paths,
                &fingerprints,
                &PARSER_VERSION,
                &count(|c| c.tests),
                &count(|c| c.test_attributes),
                &count(|c| c.iteration_attributes),
                &count(|c| c.iteration_results),
                &count(|c| c.job_keyvals),
                &count(|c| c.diagnostics),
                &ledger::LOADED,
                &read_at,
            ],
        ),
    )?;
    Ok(())
}

/// Deletes the old rows of a job being reloaded, keeping user-created
/// attributes and label links of tests that will keep their id. Returns the
/// old tests for matching.
fn remove_old_rows(
    tx: &mut Transaction<'_>,
    job_idx: i32,
    tag: Option<&str>,
) -> Result<Vec<OldTest>, StepError> {
    let old: Vec<OldTest> = step(
        tag,
        "tko_tests",
        tx.query(
            "SELECT test_idx, test, subdir, COALESCE(invalid, false) FROM tko_tests \
             WHERE job_idx = $1 ORDER BY test_idx",
            &[&job_idx],
        ),
    )?
    .iter()
    .map(|r| OldTest {
        test_idx: r.get(0),
        test: r.get(1),
        subdir: r.get(2),
        invalid: r.get(3),
    })
    .collect();
    if !old.is_empty() {
        let ids: Vec<i32> = old.iter().map(|o| o.test_idx).collect();
        for (table, sql) in [
            (
                "tko_iteration_attributes",
                "DELETE FROM tko_iteration_attributes WHERE test_idx = ANY($1)",
            ),
            (
                "tko_iteration_result",
                "DELETE FROM tko_iteration_result WHERE test_idx = ANY($1)",
            ),
            (
                "tko_test_attributes",
                "DELETE FROM tko_test_attributes WHERE test_idx = ANY($1) AND NOT user_created",
            ),
            (
                "tko_tests",
                "DELETE FROM tko_tests WHERE test_idx = ANY($1)",
            ),
        ] {
            step(tag, table, tx.execute(sql, &[&ids]))?;
        }
    }
    step(
        tag,
        "tko_job_keyvals",
        tx.execute("DELETE FROM tko_job_keyvals WHERE job_id = $1", &[&job_idx]),
    )?;
    step(
        tag,
        "tko_diagnostics",
        tx.execute(
            "DELETE FROM tko_diagnostics WHERE job_idx = $1",
            &[&job_idx],
        ),
    )?;
    step(
        tag,
        "tko_test_information",
        tx.execute(
            "DELETE FROM tko_test_information WHERE job_idx = $1",
            &[&job_idx],
        ),
    )?;
    Ok(old)
}

/// Deletes the user rows (attributes, label links) of tests that vanished.
fn remove_vanished(
    tx: &mut Transaction<'_>,
    vanished: &[i32],
    tag: Option<&str>,
) -> Result<(), StepError> {
    if vanished.is_empty() {
        return Ok(());
    }
    step(
        tag,
        "tko_test_attributes",
        tx.execute(
            "DELETE FROM tko_test_attributes WHERE test_idx = ANY($1)",
            &[&vanished],
        ),
    )?;
    step(
        tag,
        "tko_test_labels_tests",
        tx.execute(
            "DELETE FROM tko_test_labels_tests WHERE test_id = ANY($1)",
            &[&vanished],
        ),
    )?;
    Ok(())
}

/// One binary COPY per table for the whole batch, from the streams its
/// rows were encoded into.
fn copy_tree(tx: &mut Transaction<'_>, rows: &TreeCopy) -> Result<(), StepError> {
    for (((table, cols), buf), &n) in TREE_TABLES.iter().zip(&rows.tables).zip(&rows.rows) {
        if n == 0 {
            continue;
        }
        let sql = format!("COPY {table} ({}) FROM STDIN BINARY", cols.join(", "));
        let mut w = step(None, table, tx.copy_in(&sql))?;
        w.write_all(&buf.buf).map_err(|e| io_step(table, e))?;
        let t0 = std::time::Instant::now();
        let copied = step(None, table, w.finish())?;
        timing::add("write: COPY finish wait", t0);
        debug_assert_eq!(copied, n, "{table}: COPY row count");
    }
    Ok(())
}

fn current_version(tx: &mut Transaction<'_>) -> Result<Option<u32>, Error> {
    let exists: bool = tx
        .query_one("SELECT to_regclass('tko_schema_version') IS NOT NULL", &[])
        .map_err(db("reading schema version"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let v: Option<i32> = tx
        .query_one("SELECT max(version) FROM tko_schema_version", &[])
        .map_err(db("reading schema version"))?
        .get(0);
    Ok(Some(v.unwrap_or(0) as u32))
}

impl Store for PgStore {
    fn init(&mut self) -> Result<Vec<u32>, Error> {
        self.apply(false)
    }

    fn migrate(&mut self) -> Result<Vec<u32>, Error> {
        self.apply(true)
    }

    fn status(&mut self) -> Result<StatusReport, Error> {
        let mut tx = self.client.transaction().map_err(db("status"))?;
        let version = current_version(&mut tx)?;
        let mut tables = Vec::new();
        if let Some(v) = version {
            for t in schema::tables_at(v) {
                let n: i64 = tx
                    .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                    .map_err(db("counting rows"))?
                    .get(0);
                tables.push((t, n));
            }
        }
        Ok(StatusReport {
            backend: "postgres",
            schema_version: version,
            latest_version: schema::latest(schema::POSTGRES),
            tables,
        })
    }

    fn writes_concurrently(&self) -> bool {
        true
    }

    fn set_batch_jobs(&mut self, jobs: usize) {
        self.batch_jobs = jobs.max(1);
    }

    fn stale_statistics(&mut self, loaded_jobs: usize) -> Result<Vec<(&'static str, u64)>, Error> {
        if loaded_jobs == 0 {
            return Ok(Vec::new());
        }
        self.reconnect_if_closed()?;
        // The jobs the statistics know of (-1: never analyzed); O(1),
        // unlike a count, as `tko load` runs after every job.
        let known: f32 = self
            .client
            .query_one(
                "SELECT reltuples FROM pg_class WHERE oid = 'tko_jobs'::regclass",
                &[],
            )
            .map_err(db("reading the statistics of tko_jobs"))?
            .get(0);
        if known >= 0.0 && (loaded_jobs as f64) < f64::from(known) {
            return Ok(Vec::new());
        }
        let pages: HashMap<String, i64> = self
            .client
            .query(
                "SELECT t, COALESCE(pg_relation_size(to_regclass(t)), 0) \
                    / current_setting('block_size')::int8 \
                 FROM unnest($1::text[]) AS u(t)",
                &[&schema::TABLES],
            )
            .map_err(db("reading the sizes of the tables"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(schema::TABLES
            .iter()
            .map(|t| (*t, pages.get(*t).map_or(0, |&p| p.max(0) as u64)))
            .collect())
    }

    fn analyze(&mut self, tables: &[&str]) -> Result<(), Error> {
        if tables.is_empty() {
            return Ok(());
        }
        self.reconnect_if_closed()?;
        self.client
            .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
            .map_err(db("ANALYZE"))
    }

    fn schema_version(&mut self) -> Result<Option<u32>, Error> {
        let mut tx = self.client.transaction().map_err(db("schema version"))?;
        current_version(&mut tx)
    }

    fn ledger_state(&mut self, tags: &[&str]) -> Result<HashMap<String, LedgerState>, Error> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        Ok(read_ledger(&mut self.client, &tags)
            .map_err(db("reading tko_ingest_ledger"))?
            .into_iter()
            .map(|(tag, row)| (tag, ledger::state(&row)))
            .collect())
    }

    fn ledger_unproven(
        &mut self,
        jobs: &[(&str, Option<&str>)],
    ) -> Result<Vec<(usize, Option<LedgerState>)>, Error> {
        let tags: Vec<&str> = jobs.iter().map(|j| j.0).collect();
        let sigs: Vec<Option<&str>> = jobs.iter().map(|j| j.1).collect();
        let rows = self
            .client
            .query(ledger::UNPROVEN_SQL, &[&tags, &sigs, &PARSER_VERSION])
            .map_err(db("reading tko_ingest_ledger"))?;
        rows.iter()
            .map(|r| {
                let i = usize::try_from(r.get::<_, i64>(0) - 1).map_err(|_| Error::Load {
                    tag: String::new(),
                    table: "tko_ingest_ledger",
                    source: "a position out of range".into(),
                })?;
                let state = r.get::<_, Option<String>>(1).map(|fingerprint| {
                    let scan = match (r.get::<_, Option<String>>(4), r.get(5)) {
                        (Some(sig), Some(fp)) => Some((sig, fp)),
                        _ => None,
                    };
                    ledger::state_of(fingerprint, r.get(2), r.get(3), scan)
                });
                Ok((i, state))
            })
            .collect()
    }

    fn record_signatures(&mut self, rows: &[Signature]) -> Result<(), Error> {
        let rows: Vec<[&str; 3]> = rows
            .iter()
            .map(|r| [r.tag.as_str(), &r.signature, &r.fingerprint])
            .collect();
        self.upsert_rows(
            "writing tko_scan_state",
            "INSERT INTO tko_scan_state (tag, signature, fingerprint) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) \
             ON CONFLICT (tag) DO UPDATE SET signature = EXCLUDED.signature, \
             fingerprint = EXCLUDED.fingerprint",
            &rows,
        )
    }

    fn listings_of(&mut self, spans: &[TopSpan<'_>]) -> Result<Recorded, Error> {
        let mut out = Recorded::default();
        for span in spans {
            // One index range scan per root: the round's directories and
            // any gone from between them.
            let span = super::listing::Span::of(span);
            // Where a child's name starts (1-based): no slash after it.
            let start = i32::try_from(span.prefix + 1).unwrap_or(i32::MAX);
            // Streamed: a span may hold a great many rows of directories
            // gone (see `listing::GONE_PER_ROUND`).
            let params: [&(dyn postgres::types::ToSql + Sync); 3] = [&span.low, &span.high, &start];
            let mut rows = self
                .client
                .query_raw(
                    "SELECT path, stamp, subdirs FROM tko_scan_listing \
                     WHERE path > $1 AND path < $2 \
                       AND position('\\x2f'::bytea IN substring(path FROM $3)) = 0",
                    params,
                )
                .map_err(db("reading tko_scan_listing"))?;
            while let Some(r) = rows.next().map_err(db("reading tko_scan_listing"))? {
                span.add(&mut out, r.get(0), r.get(1), r.get(2));
            }
        }
        Ok(out)
    }

    fn record_top_listings(
        &mut self,
        listings: &[(PathBuf, Listing)],
        gone: &[PathBuf],
    ) -> Result<(), Error> {
        if !gone.is_empty() {
            let gone: Vec<&[u8]> = gone.iter().map(|p| p.as_os_str().as_bytes()).collect();
            self.client
                .execute(
                    "DELETE FROM tko_scan_listing WHERE path = ANY($1::bytea[])",
                    &[&gone],
                )
                .map_err(db("forgetting listings in tko_scan_listing"))?;
        }
        let mut rows: Vec<_> = listings
            .iter()
            .map(|(p, l)| super::listing::row(p, l))
            .collect();
        // In path order: concurrent backfills lock the rows in one order.
        rows.sort_unstable();
        let rows: Vec<[&[u8]; 3]> = rows.iter().map(|(p, s, n)| [&p[..], s, n]).collect();
        self.upsert_rows(
            "writing tko_scan_listing",
            "INSERT INTO tko_scan_listing (path, stamp, subdirs) \
             SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) \
             ON CONFLICT (path) DO UPDATE SET stamp = EXCLUDED.stamp, \
             subdirs = EXCLUDED.subdirs",
            &rows,
        )
    }

    fn record_failures(&mut self, failures: &[Failure]) -> Result<(), Error> {
        self.write_failures(&ledger::failure_rows(failures))
    }

    fn delete_jobs(
        &mut self,
        sel: &JobSelection,
        dry_run: bool,
        each: &mut dyn FnMut(&Removed),
    ) -> Result<Deletion, Error> {
        let batch = self.batch_jobs;
        ledger::delete_jobs(self, sel, batch, dry_run, each)
    }

    fn drop_unused_kernels(&mut self, kernel_hashes: &[String]) -> Result<usize, Error> {
        if kernel_hashes.is_empty() {
            return Ok(0);
        }
        let mut tx = self
            .client
            .transaction()
            .map_err(db("deleting unused kernels"))?;
        // A loader that has read a kernel's id inside its transaction may
        // still insert tests that refer to it: wait (briefly) until no
        // transaction has tko_kernels open, and keep new ones out until
        // this commits. Patches go with their kernel (ON DELETE CASCADE).
        tx.batch_execute(
            "SET LOCAL lock_timeout = '5s'; LOCK TABLE tko_kernels IN ACCESS EXCLUSIVE MODE",
        )
        .map_err(db("deleting unused kernels"))?;
        let n = tx
            .execute(
                "DELETE FROM tko_kernels k WHERE k.kernel_hash = ANY($1) \
                 AND NOT EXISTS (SELECT 1 FROM tko_tests t WHERE t.kernel_idx = k.kernel_idx)",
                &[&kernel_hashes],
            )
            .map_err(db("deleting unused kernels"))?;
        tx.commit().map_err(db("deleting unused kernels"))?;
        Ok(n as usize)
    }

    fn load_jobs(&mut self, items: &[LoadItem<'_>]) -> Vec<Result<LoadOutcome, Error>> {
        let batch = self.batch_jobs;
        ledger::load_jobs(self, items, batch)
    }
}

impl Remover for PgStore {
    fn find_jobs(&mut self, sel: &JobSelection) -> Result<Vec<Doomed>, Error> {
        self.reconnect_if_closed()?;
        let rows = match sel {
            JobSelection::Tags(tags) => {
                let tags: Vec<String> = tags.iter().map(|t| clean(t)).collect();
                self.client.query(
                    "SELECT tag, job_idx FROM tko_jobs WHERE tag = ANY($1) ORDER BY tag",
                    &[&tags],
                )
            }
            JobSelection::Before { before, label } => {
                let like = label.as_deref().map(glob_to_like);
                self.client.query(
                    "SELECT tag, job_idx FROM tko_jobs \
                     WHERE COALESCE(finished_time, started_time, queued_time) \
                            < $1::text::timestamp \
                        AND ($2::text IS NULL OR label LIKE $2 ESCAPE '\\') \
                     ORDER BY tag COLLATE \"C\"",
                    &[before, &like],
                )
            }
        }
        .map_err(db("choosing jobs"))?;
        Ok(rows
            .iter()
            .map(|r| Doomed {
                tag: r.get(0),
                job_idx: r.get(1),
            })
            .collect())
    }

    fn delete_batch(&mut self, jobs: &[Doomed], dry_run: bool) -> Result<Vec<Removed>, Error> {
        let mut attempt = 0;
        loop {
            self.reconnect_if_closed()?;
            let r = (|| {
                let mut tx = step(None, "BEGIN", self.client.transaction())?;
                let out = delete_tree(&mut tx, jobs)?;
                if dry_run {
                    step(None, "ROLLBACK", tx.rollback())?;
                } else {
                    step(None, "COMMIT", tx.commit())?;
                }
                Ok::<_, StepError>(out)
            })();
            match r {
                Ok(out) => return Ok(out),
                Err(e) if e.retry && attempt < MAX_RETRIES => {
                    backoff(attempt);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Delete {
                        tag: e.tag.unwrap_or_else(|| {
                            jobs.first().map(|d| d.tag.clone()).unwrap_or_default()
                        }),
                        table: e.table,
                        source: e.source,
                    })
                }
            }
        }
    }
}

impl Backend for PgStore {
    fn ledger_rows(&mut self, tags: &[String]) -> Result<HashMap<String, ReadRow>, Error> {
        self.reconnect_if_closed()?;
        let t0 = std::time::Instant::now();
        let rows = read_ledger(&mut self.client, tags).map_err(db("reading tko_ingest_ledger"));
        timing::add("ledger skip check", t0);
        rows
    }

    fn write_jobs(&mut self, jobs: &[Planned<'_, '_>]) -> Vec<Written> {
        if let Err(e) = self
            .reconnect_if_closed()
            .and_then(|()| self.load_status_words())
        {
            let text = error_chain(&e);
            return jobs
                .iter()
                .map(|p| {
                    Written::Failed(Error::Load {
                        tag: p.item.job.tag.clone(),
                        table: "connection",
                        source: text.clone().into(),
                    })
                })
                .collect();
        }
        let all: Vec<&Planned<'_, '_>> = jobs.iter().collect();
        let to_error = |p: &Planned<'_, '_>, e: StepError| Error::Load {
            tag: e.tag.unwrap_or_else(|| p.item.job.tag.clone()),
            table: e.table,
            source: e.source,
        };
        let first_err = match self.load_batch(&all) {
            Ok(Batch::Done(outs)) => return outs.into_iter().map(Written::Done).collect(),
            Ok(Batch::Stale) => return jobs.iter().map(|_| Written::Stale).collect(),
            Err(e) => e,
        };
        if jobs.len() == 1 {
            return vec![Written::Failed(to_error(&jobs[0], first_err))];
        }
        // The batch failed as a whole: retry each job alone so one bad job
        // does not sink the others.
        jobs.iter()
            .map(|p| {
                let r = self
                    .reconnect_if_closed()
                    .map_err(|e| to_error(p, connection_lost(e)))
                    .and_then(|()| self.load_batch(&[p]).map_err(|e| to_error(p, e)));
                match r {
                    Ok(Batch::Done(mut outs)) => Written::Done(outs.remove(0)),
                    Ok(Batch::Stale) => Written::Stale,
                    Err(e) => Written::Failed(e),
                }
            })
            .collect()
    }

    fn write_failures(&mut self, rows: &[FailedRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        self.reconnect_if_closed()?;
        // One statement per row: a tag twice in one upsert is an error.
        for r in rows {
            self.client
                .execute(
                    "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, \
                        parser_version, loaded_at, outcome, error) \
                     VALUES ($1, NULL, $2, $3, $4, now() AT TIME ZONE 'UTC', $5, $6) \
                     ON CONFLICT (tag) DO UPDATE SET source_path = CASE \
                            WHEN tko_ingest_ledger.job_idx IS NULL THEN EXCLUDED.source_path \
                            ELSE tko_ingest_ledger.source_path END, \
                        fingerprint = EXCLUDED.fingerprint, \
                        parser_version = EXCLUDED.parser_version, \
                        loaded_at = EXCLUDED.loaded_at, outcome = EXCLUDED.outcome, \
                        error = EXCLUDED.error",
                    &[
                        &r.tag,
                        &r.source_path,
                        &r.fingerprint,
                        &PARSER_VERSION,
                        &ledger::FAILED,
                        &r.error,
                    ],
                )
                .map_err(db("writing tko_ingest_ledger"))?;
        }
        Ok(())
    }
}

/// A lost connection as a step error.
fn connection_lost(e: Error) -> StepError {
    StepError {
        tag: None,
        table: "connection",
        retry: false,
        source: error_chain(&e).into(),
    }
}
