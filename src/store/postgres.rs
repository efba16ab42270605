//! PostgreSQL backend: binary COPY of the job tree, many jobs per
//! transaction, one job per transaction on retry. Dimension rows (machines,
//! kernels, patches) are upserted on their natural keys in short separate
//! statements before a batch, so concurrent loaders never hold those locks
//! while they COPY. Serialization failures and deadlocks are retried here and
//! never reach the caller. This module must not build SQL from values: only
//! table and column names from `table`/`schema` constants are formatted in.

use super::pgconnect::{ConnectError, Connector};
use super::pgcopy::{CopyBuf, CopyRow};
use super::{
    batches, error_chain, plan_tests, schema, unchanged, Action, BoxError, Error, LedgerState,
    LoadItem, LoadOutcome, OldTest, Signature, StatusReport, Store, DEFAULT_BATCH_JOBS,
    LEDGER_STATE_SQL, PARSER_VERSION,
};
use crate::model::{Job, Kernel, Timestamp};
use crate::table::{
    clean, DiagnosticRow, IterationAttributeRow, IterationResultRow, JobKeyvalRow, JobRow,
    JobTreeRows, KernelRow, PatchRow, RowCounts, TestAttributeRow, TestRow, TreeIds,
};
use postgres::error::SqlState;
use postgres::{Client, Transaction};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
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

/// Machine ids of a batch by hostname (kernel ids live in the store's cache).
struct Dims {
    machine_idx: HashMap<String, i32>,
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

    /// Upserts the machines and kernels (with patches) of `jobs`.
    fn dimensions(&mut self, jobs: &[&Job]) -> Result<Dims, StepError> {
        // Last job wins for group/owner, as with Autotest's serial writes.
        let mut machines: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        for j in jobs {
            machines.insert(
                clean(&j.machine),
                (
                    clean(&j.machine_group),
                    j.machine_owner.as_deref().map(clean),
                ),
            );
        }
        let hosts: Vec<&str> = machines.keys().map(String::as_str).collect();
        let groups: Vec<&str> = machines.values().map(|v| v.0.as_str()).collect();
        let owners: Vec<Option<&str>> = machines.values().map(|v| v.1.as_deref()).collect();
        let mut attempt = 0;
        let rows = loop {
            // Rows go in hostname order so concurrent upserts lock alike.
            let r = self
                .client
                .execute(
                    "INSERT INTO tko_machines (hostname, machine_group, owner) \
                     SELECT h, g, o FROM unnest($1::text[], $2::text[], $3::text[]) AS u(h, g, o) \
                     ORDER BY h \
                     ON CONFLICT (hostname) DO UPDATE SET machine_group = EXCLUDED.machine_group, \
                        owner = COALESCE(EXCLUDED.owner, tko_machines.owner) \
                     WHERE tko_machines.machine_group IS DISTINCT FROM EXCLUDED.machine_group \
                        OR (EXCLUDED.owner IS NOT NULL \
                            AND tko_machines.owner IS DISTINCT FROM EXCLUDED.owner)",
                    &[&hosts, &groups, &owners],
                )
                .and_then(|_| {
                    self.client.query(
                        "SELECT hostname, machine_idx FROM tko_machines WHERE hostname = ANY($1)",
                        &[&hosts],
                    )
                });
            match r {
                Err(e) if retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                r => break step(None, "tko_machines", r)?,
            }
        };
        let machine_idx = rows.iter().map(|r| (r.get(0), r.get(1))).collect();

        let mut wanted: BTreeMap<&str, &Kernel> = BTreeMap::new();
        for j in jobs {
            for t in &j.tests {
                if !self.kernels.contains_key(&t.kernel.kernel_hash) {
                    wanted.insert(&t.kernel.kernel_hash, &t.kernel);
                }
            }
        }
        if !wanted.is_empty() {
            let hashes: Vec<String> = wanted.keys().map(|h| clean(h)).collect();
            let rows = step(
                None,
                "tko_kernels",
                self.client.query(
                    "SELECT kernel_hash, kernel_idx FROM tko_kernels WHERE kernel_hash = ANY($1)",
                    &[&hashes],
                ),
            )?;
            let found: HashMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            for (hash, kernel) in wanted {
                let idx = match found.get(&clean(hash)) {
                    Some(&i) => i,
                    None => self.insert_kernel(kernel)?,
                };
                self.kernels.insert(hash.to_owned(), idx);
            }
        }
        Ok(Dims { machine_idx })
    }

    /// Inserts a kernel and its patches in one short transaction, or returns
    /// the id another loader committed first.
    fn insert_kernel(&mut self, kernel: &Kernel) -> Result<i32, StepError> {
        let mut attempt = 0;
        loop {
            match self.try_insert_kernel(kernel) {
                Err(e) if retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    backoff(attempt);
                }
                r => return step(None, "tko_kernels", r),
            }
        }
    }

    fn try_insert_kernel(&mut self, kernel: &Kernel) -> Result<i32, postgres::Error> {
        let mut tx = self.client.transaction()?;
        let row0 = KernelRow::new(kernel, 0);
        let inserted = tx.query_opt(
            "INSERT INTO tko_kernels (kernel_hash, base, printable) VALUES ($1, $2, $3) \
             ON CONFLICT (kernel_hash) DO NOTHING RETURNING kernel_idx",
            &[&row0.kernel_hash, &row0.base, &row0.base],
        )?;
        let idx: i32 = match inserted {
            Some(r) => {
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
                idx
            }
            None => tx
                .query_one(
                    "SELECT kernel_idx FROM tko_kernels WHERE kernel_hash = $1",
                    &[&row0.kernel_hash],
                )?
                .get(0),
        };
        tx.commit()?;
        Ok(idx)
    }

    /// Writes `items` in one transaction (all or nothing).
    fn write_batch(
        &mut self,
        items: &[&LoadItem<'_>],
        dims: &Dims,
    ) -> Result<Vec<LoadOutcome>, StepError> {
        let status_idx = &self.status_idx;
        let kernels = &self.kernels;
        let mut tx = step(None, "BEGIN", self.client.transaction())?;
        let t0 = std::time::Instant::now();
        // Phase A: job rows, upserted in one statement (rows locked in tag
        // order, like concurrent loaders), then removal of the old rows of
        // reloaded jobs (none for brand-new tags).
        let one = |i: usize| (items.len() == 1).then(|| items[i].job.tag.as_str());
        let mut machines = Vec::with_capacity(items.len());
        let mut jrs = Vec::with_capacity(items.len());
        for item in items {
            let machine_idx = *dims
                .machine_idx
                .get(&clean(&item.job.machine))
                .expect("dimensions() upserted every machine of the batch");
            machines.push(machine_idx);
            jrs.push(JobRow::new(item.job, machine_idx));
        }
        let tags: Vec<&str> = jrs.iter().map(|r| r.tag.as_str()).collect();
        let labels: Vec<Option<&str>> = jrs.iter().map(|r| r.label.as_deref()).collect();
        let users: Vec<Option<&str>> = jrs.iter().map(|r| r.username.as_deref()).collect();
        let queued: Vec<Option<SystemTime>> = jrs.iter().map(|r| ts(r.queued_time)).collect();
        let started: Vec<Option<SystemTime>> = jrs.iter().map(|r| ts(r.started_time)).collect();
        let finished: Vec<Option<SystemTime>> = jrs.iter().map(|r| ts(r.finished_time)).collect();
        let afe: Vec<Option<i64>> = jrs.iter().map(|r| r.afe_job_id).collect();
        let rows = step(
            one(0),
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
                    &tags, &labels, &users, &machines, &queued, &started, &finished, &afe,
                ],
            ),
        )?;
        let returned: HashMap<&str, (i32, bool)> = rows
            .iter()
            .map(|r| (r.get::<_, &str>(0), (r.get(1), r.get(2))))
            .collect();
        let mut staged = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let job = item.job;
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
            staged.push((job_idx, machines[i], inserted, plan));
        }
        timing::add("write: job upsert, old rows", t0);
        let t0 = std::time::Instant::now();
        // Phase B: ids for the new tests, in one round trip.
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
        // Phase C: ids and checks per job, then the rows of every job, one
        // COPY per table.
        let mut prepared = Vec::with_capacity(items.len());
        for (item, (_, _, _, plan)) in items.iter().zip(&staged) {
            let job = item.job;
            let test_idx: Vec<i32> = plan
                .kept
                .iter()
                .map(|k| k.unwrap_or_else(|| fresh.next().expect("allocated enough test ids")))
                .collect();
            let mut kernel_idx = Vec::with_capacity(job.tests.len());
            for t in &job.tests {
                kernel_idx.push(
                    *kernels
                        .get(&t.kernel.kernel_hash)
                        .expect("dimensions() resolved every kernel of the batch"),
                );
            }
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
            prepared.push((test_idx, kernel_idx));
        }
        timing::add("write: id mapping, checks", t0);
        let t1 = std::time::Instant::now();
        let mut all = JobTreeRows::default();
        let counts: Vec<RowCounts> = (0..items.len())
            .map(|i| {
                let (job_idx, machine_idx, _, plan) = &staged[i];
                let ids = TreeIds {
                    job_idx: *job_idx,
                    machine_idx: *machine_idx,
                    test_idx: &prepared[i].0,
                    kernel_idx: &prepared[i].1,
                    invalid: &plan.invalid,
                };
                all.add_job(items[i].job, &ids, |s| status_idx[s.word()])
            })
            .collect();
        timing::add("write: build rows", t1);
        let mut outcomes = Vec::with_capacity(items.len());
        let mut ledger = Vec::with_capacity(items.len());
        for ((item, (job_idx, _, inserted, plan)), counts) in items.iter().zip(&staged).zip(counts)
        {
            ledger.push((*job_idx, clean(&item.source.to_string_lossy()), counts));
            outcomes.push(LoadOutcome {
                tag: item.job.tag.clone(),
                job_idx: i64::from(*job_idx),
                action: if *inserted {
                    Action::Inserted
                } else {
                    Action::Replaced
                },
                tests_kept: plan.kept.iter().filter(|k| k.is_some()).count(),
                tests_deleted: plan.vanished.len(),
                rows: counts,
            });
        }
        let t0 = std::time::Instant::now();
        write_ledger(&mut tx, items, &tags, &ledger)?;
        timing::add("write: ledger upsert", t0);
        let t0 = std::time::Instant::now();
        copy_tree(&mut tx, &all)?;
        timing::add("write: COPY (all tables)", t0);
        let t0 = std::time::Instant::now();
        step(None, "COMMIT", tx.commit())?;
        timing::add("write: COMMIT", t0);
        Ok(outcomes)
    }

    /// Records a failed job in the ledger (best effort: the connection may
    /// be gone, which is why the job failed).
    fn record_failure(&mut self, item: &LoadItem<'_>, err: &Error) {
        let text = error_chain(err);
        let _ = self.client.execute(
            "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, \
                parser_version, loaded_at, outcome, error) \
             VALUES ($1, NULL, $2, $3, $4, now() AT TIME ZONE 'UTC', 'failed', $5) \
             ON CONFLICT (tag) DO UPDATE SET source_path = EXCLUDED.source_path, \
                fingerprint = EXCLUDED.fingerprint, parser_version = EXCLUDED.parser_version, \
                loaded_at = EXCLUDED.loaded_at, outcome = 'failed', error = EXCLUDED.error",
            &[
                &clean(&item.job.tag),
                &clean(&item.source.to_string_lossy()),
                &clean(&item.fingerprint),
                &PARSER_VERSION,
                &clean(&text),
            ],
        );
    }

    /// Dimensions then one batch transaction, retried on conflicts.
    fn load_batch(&mut self, items: &[&LoadItem<'_>]) -> Result<Vec<LoadOutcome>, StepError> {
        let jobs: Vec<&Job> = items.iter().map(|i| i.job).collect();
        let t0 = std::time::Instant::now();
        let dims = self.dimensions(&jobs)?;
        timing::add("dimensions", t0);
        let mut attempt = 0;
        loop {
            match self.write_batch(items, &dims) {
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

/// The tables [`PgStore::export_rows_to_dir`] exports, with their columns.
const COPY_TABLES: &[(&str, &[&str])] = &[
    ("tko_tests", TestRow::COLUMNS),
    ("tko_test_attributes", TestAttributeRow::COLUMNS),
    ("tko_iteration_attributes", IterationAttributeRow::COLUMNS),
    ("tko_iteration_result", IterationResultRow::COLUMNS),
    ("tko_job_keyvals", JobKeyvalRow::COLUMNS),
    ("tko_diagnostics", DiagnosticRow::COLUMNS),
];

/// Upserts the ledger rows of a batch (outcome `loaded`) in one statement,
/// in tag order.
fn write_ledger(
    tx: &mut Transaction<'_>,
    items: &[&LoadItem<'_>],
    tags: &[&str],
    ledger: &[(i32, String, RowCounts)],
) -> Result<(), StepError> {
    let job_idx: Vec<i32> = ledger.iter().map(|l| l.0).collect();
    let paths: Vec<&str> = ledger.iter().map(|l| l.1.as_str()).collect();
    let fingerprints: Vec<String> = items.iter().map(|i| clean(&i.fingerprint)).collect();
    let count = |f: fn(&RowCounts) -> usize| -> Vec<i32> {
        ledger.iter().map(|l| f(&l.2) as i32).collect()
    };
    step(
        (items.len() == 1).then(|| items[0].job.tag.as_str()),
        "tko_ingest_ledger",
        tx.execute(
            "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, \
                parser_version, loaded_at, outcome, error, tests, test_attributes, \
                iteration_attributes, iteration_results, job_keyvals, diagnostics) \
             SELECT tag, job_idx, source_path, fingerprint, $5, now() AT TIME ZONE 'UTC', \
                'loaded', NULL, tests, test_attributes, iteration_attributes, \
                iteration_results, job_keyvals, diagnostics \
             FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $6::int4[], \
                $7::int4[], $8::int4[], $9::int4[], $10::int4[], $11::int4[]) \
                AS u(tag, job_idx, source_path, fingerprint, tests, test_attributes, \
                    iteration_attributes, iteration_results, job_keyvals, diagnostics) \
             ORDER BY tag \
             ON CONFLICT (tag) DO UPDATE SET job_idx = EXCLUDED.job_idx, \
                source_path = EXCLUDED.source_path, fingerprint = EXCLUDED.fingerprint, \
                parser_version = EXCLUDED.parser_version, loaded_at = EXCLUDED.loaded_at, \
                outcome = 'loaded', error = NULL, tests = EXCLUDED.tests, \
                test_attributes = EXCLUDED.test_attributes, \
                iteration_attributes = EXCLUDED.iteration_attributes, \
                iteration_results = EXCLUDED.iteration_results, \
                job_keyvals = EXCLUDED.job_keyvals, diagnostics = EXCLUDED.diagnostics",
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

/// Bytes per chunk handed from the encoder thread to the COPY stream.
const COPY_CHUNK: usize = 1 << 20;

/// One binary COPY per table for the whole batch. A scoped thread encodes
/// the rows into chunks while this thread streams the previous chunks to
/// the server, so client encoding overlaps server ingest.
fn copy_tree(tx: &mut Transaction<'_>, rows: &JobTreeRows) -> Result<(), StepError> {
    fn encode<R: CopyRow>(
        out: &std::sync::mpsc::SyncSender<Vec<u8>>,
        rows: &[R],
    ) -> Result<(), ()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut b = CopyBuf::with_capacity(COPY_CHUNK + 4096);
        b.header();
        for r in rows {
            r.encode(&mut b);
            if b.buf.len() >= COPY_CHUNK {
                let full = std::mem::replace(&mut b.buf, Vec::with_capacity(COPY_CHUNK + 4096));
                out.send(full).map_err(drop)?;
            }
        }
        b.trailer();
        out.send(b.buf).map_err(drop)?;
        // An empty chunk ends the table.
        out.send(Vec::new()).map_err(drop)
    }
    let tables: [(&'static str, &[&str], usize); 6] = [
        ("tko_tests", TestRow::COLUMNS, rows.tests.len()),
        (
            "tko_test_attributes",
            TestAttributeRow::COLUMNS,
            rows.test_attributes.len(),
        ),
        (
            "tko_iteration_attributes",
            IterationAttributeRow::COLUMNS,
            rows.iteration_attributes.len(),
        ),
        (
            "tko_iteration_result",
            IterationResultRow::COLUMNS,
            rows.iteration_results.len(),
        ),
        (
            "tko_job_keyvals",
            JobKeyvalRow::COLUMNS,
            rows.job_keyvals.len(),
        ),
        (
            "tko_diagnostics",
            DiagnosticRow::COLUMNS,
            rows.diagnostics.len(),
        ),
    ];
    let (send, recv) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            // Stops early (Err) once the receiver is gone after a failure.
            let _ = encode(&send, &rows.tests)
                .and_then(|()| encode(&send, &rows.test_attributes))
                .and_then(|()| encode(&send, &rows.iteration_attributes))
                .and_then(|()| encode(&send, &rows.iteration_results))
                .and_then(|()| encode(&send, &rows.job_keyvals))
                .and_then(|()| encode(&send, &rows.diagnostics));
        });
        // Owned here, so an early return drops it and stops the encoder.
        let recv = recv;
        for (table, cols, n) in tables {
            if n == 0 {
                continue;
            }
            let sql = format!("COPY {table} ({}) FROM STDIN BINARY", cols.join(", "));
            let mut w = step(None, table, tx.copy_in(&sql))?;
            loop {
                let chunk = recv.recv().expect("the encoder ends every table");
                if chunk.is_empty() {
                    break;
                }
                let io = w.write_all(&chunk).and_then(|()| w.flush());
                io.map_err(|e| io_step(table, e))?;
            }
            let t0 = std::time::Instant::now();
            let copied = step(None, table, w.finish())?;
            timing::add("write: COPY finish wait", t0);
            debug_assert_eq!(copied, n as u64, "{table}: COPY row count");
        }
        Ok(())
    })
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

    fn set_batch_jobs(&mut self, jobs: usize) {
        self.batch_jobs = jobs.max(1);
    }

    fn schema_version(&mut self) -> Result<Option<u32>, Error> {
        let mut tx = self.client.transaction().map_err(db("schema version"))?;
        current_version(&mut tx)
    }

    fn ledger_state(&mut self, tags: &[&str]) -> Result<HashMap<String, LedgerState>, Error> {
        let sql = format!("{LEDGER_STATE_SQL}l.tag = ANY($2)");
        let rows = self
            .client
            .query(&sql, &[&PARSER_VERSION, &tags])
            .map_err(db("reading tko_ingest_ledger"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let state = LedgerState {
                    fingerprint: r.get(1),
                    loaded: r.get::<_, Option<bool>>(2).unwrap_or(false),
                    signature: r.get(3),
                };
                (r.get(0), state)
            })
            .collect())
    }

    fn record_signatures(&mut self, rows: &[Signature]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let tags: Vec<&str> = rows.iter().map(|r| r.tag.as_str()).collect();
        let sigs: Vec<&str> = rows.iter().map(|r| r.signature.as_str()).collect();
        let fps: Vec<&str> = rows.iter().map(|r| r.fingerprint.as_str()).collect();
        self.client
            .execute(
                "INSERT INTO tko_scan_state (tag, signature, fingerprint) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) \
                 ON CONFLICT (tag) DO UPDATE SET signature = EXCLUDED.signature, \
                 fingerprint = EXCLUDED.fingerprint",
                &[&tags, &sigs, &fps],
            )
            .map_err(db("writing tko_scan_state"))?;
        Ok(())
    }

    fn load_jobs(&mut self, items: &[LoadItem<'_>]) -> Vec<Result<LoadOutcome, Error>> {
        let mut results: Vec<Option<Result<LoadOutcome, Error>>> =
            (0..items.len()).map(|_| None).collect();
        for batch in batches(items, self.batch_jobs) {
            if let Err(e) = self
                .reconnect_if_closed()
                .and_then(|()| self.load_status_words())
            {
                let text = error_chain(&e);
                for i in batch {
                    results[i] = Some(Err(Error::Load {
                        tag: items[i].job.tag.clone(),
                        table: "connection",
                        source: text.clone().into(),
                    }));
                }
                continue;
            }
            let t0 = std::time::Instant::now();
            let todo = match self.skip_unchanged(items, &batch, &mut results) {
                Ok(t) => t,
                Err(e) => {
                    let text = error_chain(&e);
                    for i in batch {
                        results[i] = Some(Err(Error::Load {
                            tag: items[i].job.tag.clone(),
                            table: "tko_ingest_ledger",
                            source: text.clone().into(),
                        }));
                    }
                    continue;
                }
            };
            timing::add("ledger skip check", t0);
            if todo.is_empty() {
                continue;
            }
            let refs: Vec<&LoadItem<'_>> = todo.iter().map(|&i| &items[i]).collect();
            let first = self.load_batch(&refs);
            let first_err = match first {
                Ok(outs) => {
                    for (i, o) in todo.iter().zip(outs) {
                        results[*i] = Some(Ok(o));
                    }
                    continue;
                }
                Err(e) => e,
            };
            // The batch failed as a whole: retry each job alone so one bad
            // job does not sink the others (a lone job keeps its error).
            let mut lone = (todo.len() == 1).then_some(first_err);
            for &i in &todo {
                let item = &items[i];
                let to_error = |e: StepError| Error::Load {
                    tag: e.tag.unwrap_or_else(|| item.job.tag.clone()),
                    table: e.table,
                    source: e.source,
                };
                let r = match lone.take() {
                    Some(e) => Err(to_error(e)),
                    None => self
                        .reconnect_if_closed()
                        .and_then(|()| self.load_batch(&[item]).map_err(to_error)),
                };
                let r = r.map(|mut v| v.remove(0));
                if let Err(e) = &r {
                    self.record_failure(item, e);
                }
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every item belongs to exactly one batch"))
            .collect()
    }
}

impl PgStore {
    /// Fills `results` for unchanged jobs; returns the indices to load.
    fn skip_unchanged(
        &mut self,
        items: &[LoadItem<'_>],
        batch: &[usize],
        results: &mut [Option<Result<LoadOutcome, Error>>],
    ) -> Result<Vec<usize>, Error> {
        let tags: Vec<String> = batch.iter().map(|&i| clean(&items[i].job.tag)).collect();
        let rows = self
            .client
            .query(
                "SELECT tag, fingerprint, parser_version, outcome, job_idx \
                 FROM tko_ingest_ledger WHERE tag = ANY($1)",
                &[&tags],
            )
            .map_err(db("reading tko_ingest_ledger"))?;
        let ledger: HashMap<String, (String, String, String, Option<i32>)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect();
        let mut todo = Vec::new();
        for (&i, tag) in batch.iter().zip(&tags) {
            match ledger.get(tag) {
                Some((fp, ver, outcome, Some(job_idx)))
                    if unchanged(&items[i], fp, ver, outcome) =>
                {
                    results[i] = Some(Ok(LoadOutcome {
                        tag: items[i].job.tag.clone(),
                        job_idx: i64::from(*job_idx),
                        action: Action::Skipped,
                        tests_kept: 0,
                        tests_deleted: 0,
                        rows: RowCounts::default(),
                    }));
                }
                _ => todo.push(i),
            }
        }
        Ok(todo)
    }
}
