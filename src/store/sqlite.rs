//! SQLite backend, the embedded default: prepared statements inside one
//! IMMEDIATE transaction per batch of jobs, each job in its own savepoint
//! (machine, kernels, job tree and ledger row together) so a failing job is
//! rolled back alone. What to load and what the ledger says is decided in
//! `ledger`; this module holds the SQL. SQLite has
//! one writer at a time, so natural-key dedup needs no retries here. Times
//! are stored as ISO text `YYYY-MM-DD HH:MM:SS` (UTC). Values are always
//! bound parameters; only constant table names are formatted into SQL.

use super::ledger::{
    self, Backend, Doomed, FailedRow, JobMachine, LedgerRow, LoadedRow, Planned, ReadRow, Remover,
    Written,
};
use super::{
    error_chain, plan_tests, schema, BoxError, Deletion, Error, Failure, JobSelection, LedgerState,
    LoadItem, LoadOutcome, OldTest, Removed, Signature, StatusReport, Store, DEFAULT_BATCH_JOBS,
    PARSER_VERSION,
};
use crate::discover::{Listing, Recorded, TopSpan};
use crate::model::{iso_datetime, Kernel, Timestamp};
use crate::query::filter::glob_to_sqlite;
use crate::table::{
    clean, DiagnosticRow, InformationRow, IterationAttributeRow, IterationResultRow, JobKeyvalRow,
    JobRow, JobTreeRows, KernelRow, PatchRow, RowCounts, TestAttributeRow, TestRow, TreeIds,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

/// An open SQLite warehouse.
pub struct SqliteStore {
    conn: Connection,
    batch_jobs: usize,
}

/// A failed statement: the table it wrote and why.
struct Fail {
    table: &'static str,
    source: BoxError,
}

trait At<T> {
    fn at(self, table: &'static str) -> Result<T, Fail>;
}

impl<T> At<T> for rusqlite::Result<T> {
    fn at(self, table: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail {
            table,
            source: Box::new(e),
        })
    }
}

fn connect_error(path: &str) -> impl Fn(rusqlite::Error) -> Error + Copy + '_ {
    move |e| Error::Connect {
        target: format!("sqlite:{path}"),
        source: Box::new(e),
    }
}

fn db(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| Error::Db {
        what,
        source: Box::new(e),
    }
}

/// An epoch timestamp as stored text.
fn ts(t: Option<Timestamp>) -> Option<String> {
    t.map(|s| iso_datetime(s).replacen('T', " ", 1))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &str) -> Result<SqliteStore, Error> {
        let conn = Connection::open(path).map_err(connect_error(path))?;
        SqliteStore::setup(conn, path)
    }

    /// Opens the database file at `path` only if it exists and holds the
    /// tko schema; never creates or changes a file.
    pub fn open_existing(path: &str) -> Result<SqliteStore, Error> {
        let missing = || Error::NoWarehouse {
            target: format!("sqlite:{path}"),
        };
        if !std::path::Path::new(path).exists() {
            return Err(missing());
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(connect_error(path))?;
        let has_schema: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'tko_schema_version')",
                [],
                |r| r.get(0),
            )
            .map_err(connect_error(path))?;
        if !has_schema {
            return Err(missing());
        }
        SqliteStore::setup(conn, path)
    }

    /// Opens the database file at `path` read-only (`SQLITE_OPEN_READONLY`
    /// and `PRAGMA query_only`), only if it holds the tko schema: for
    /// `tko serve`, which must never write.
    pub fn open_read_only(path: &str) -> Result<SqliteStore, Error> {
        let missing = || Error::NoWarehouse {
            target: format!("sqlite:{path}"),
        };
        if !std::path::Path::new(path).exists() {
            return Err(missing());
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let fail = connect_error(path);
        let conn = Connection::open_with_flags(path, flags).map_err(connect_error(path))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(connect_error(path))?;
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(connect_error(path))?;
        let has_schema: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'tko_schema_version')",
                [],
                |r| r.get(0),
            )
            .map_err(fail)?;
        if !has_schema {
            return Err(missing());
        }
        Ok(SqliteStore {
            conn,
            batch_jobs: DEFAULT_BATCH_JOBS,
        })
    }

    fn setup(conn: Connection, path: &str) -> Result<SqliteStore, Error> {
        let fail = connect_error(path);
        conn.busy_timeout(Duration::from_secs(60)).map_err(fail)?;
        // WAL lets readers work during a load; NORMAL sync is durable in WAL
        // mode except for the last transactions on power loss.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(fail)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(fail)?;
        Ok(SqliteStore {
            conn,
            batch_jobs: DEFAULT_BATCH_JOBS,
        })
    }

    /// The underlying connection (for tests and benchmarks).
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn apply(&mut self, require_init: bool) -> Result<Vec<u32>, Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("schema migration"))?;
        let current = current_version(&tx)?;
        let applied = schema::apply_pending(schema::SQLITE, current, require_init, |m| {
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO tko_schema_version (version, name) VALUES (?1, ?2)",
                params![m.version, m.name],
            )
            .map(drop)
        })?;
        tx.commit().map_err(db("schema migration commit"))?;
        Ok(applied)
    }
}

fn current_version(c: &Connection) -> Result<Option<u32>, Error> {
    let exists: bool = c
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'tko_schema_version'",
            [],
            |r| r.get(0),
        )
        .map_err(db("reading schema version"))?;
    if !exists {
        return Ok(None);
    }
    let v: Option<u32> = c
        .query_row("SELECT max(version) FROM tko_schema_version", [], |r| {
            r.get(0)
        })
        .map_err(db("reading schema version"))?;
    Ok(Some(v.unwrap_or(0)))
}

/// The kernel's id, inserting it (with patches) if new.
fn kernel_idx(c: &Connection, kernel: &Kernel) -> Result<i32, Fail> {
    let hash = clean(&kernel.kernel_hash);
    let found: Option<i32> = c
        .prepare_cached("SELECT kernel_idx FROM tko_kernels WHERE kernel_hash = ?1")
        .and_then(|mut s| s.query_row([&hash], |r| r.get(0)).optional())
        .at("tko_kernels")?;
    if let Some(idx) = found {
        return Ok(idx);
    }
    let row0 = KernelRow::new(kernel, 0);
    c.prepare_cached("INSERT INTO tko_kernels (kernel_hash, base, printable) VALUES (?1, ?2, ?2)")
        .and_then(|mut s| s.execute(params![row0.kernel_hash, row0.base]))
        .at("tko_kernels")?;
    let idx = c.last_insert_rowid() as i32;
    let row = KernelRow::new(kernel, i64::from(idx));
    if row.printable != row.base {
        c.execute(
            "UPDATE tko_kernels SET printable = ?1 WHERE kernel_idx = ?2",
            params![row.printable, idx],
        )
        .at("tko_kernels")?;
    }
    for p in &kernel.patches {
        let p = PatchRow::new(idx, p);
        c.prepare_cached(
            "INSERT INTO tko_patches (kernel_idx, name, url, hash) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![p.kernel_idx, p.name, p.url, p.hash]))
        .at("tko_patches")?;
    }
    Ok(idx)
}

/// Loads one job (inside the caller's savepoint): machine, kernels, job
/// row, old rows out, new rows in, the job's machine values and the machine
/// rows they decide, the ledger row.
fn load_one(
    c: &Connection,
    item: &LoadItem<'_>,
    status_idx: &HashMap<String, i32>,
) -> Result<(LoadOutcome, LoadedRow), Fail> {
    let job = item.job;
    let jm = JobMachine::of(job);
    c.prepare_cached(
        "INSERT INTO tko_machines (hostname) VALUES (?1) ON CONFLICT (hostname) DO NOTHING",
    )
    .and_then(|mut s| s.execute([&jm.hostname]))
    .at("tko_machines")?;
    let machine_idx: i32 = c
        .prepare_cached("SELECT machine_idx FROM tko_machines WHERE hostname = ?1")
        .and_then(|mut s| s.query_row([&jm.hostname], |r| r.get(0)))
        .at("tko_machines")?;

    let mut kernels: HashMap<&str, i32> = HashMap::new();
    let mut kernel_ids = Vec::with_capacity(job.tests.len());
    for t in &job.tests {
        let idx = match kernels.get(t.kernel.kernel_hash.as_str()) {
            Some(&i) => i,
            None => {
                let i = kernel_idx(c, &t.kernel)?;
                kernels.insert(&t.kernel.kernel_hash, i);
                i
            }
        };
        kernel_ids.push(idx);
        if !status_idx.contains_key(t.status.word()) {
            return Err(Fail {
                table: "tko_status",
                source: format!("status word {} missing from tko_status", t.status).into(),
            });
        }
    }

    let jr = JobRow::new(job, machine_idx);
    let existing: Option<i32> = c
        .prepare_cached("SELECT job_idx FROM tko_jobs WHERE tag = ?1")
        .and_then(|mut s| s.query_row([&jr.tag], |r| r.get(0)).optional())
        .at("tko_jobs")?;
    let values = params![
        jr.label,
        jr.username,
        jr.machine_idx,
        ts(jr.queued_time),
        ts(jr.started_time),
        ts(jr.finished_time),
        jr.afe_job_id,
        jr.tag,
    ];
    let job_idx = match existing {
        Some(idx) => {
            c.prepare_cached(
                "UPDATE tko_jobs SET label = ?1, username = ?2, machine_idx = ?3, \
                    queued_time = ?4, started_time = ?5, finished_time = ?6, afe_job_id = ?7 \
                 WHERE tag = ?8",
            )
            .and_then(|mut s| s.execute(values))
            .at("tko_jobs")?;
            idx
        }
        None => {
            c.prepare_cached(
                "INSERT INTO tko_jobs (label, username, machine_idx, queued_time, started_time, \
                    finished_time, afe_job_id, tag) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| s.execute(values))
            .at("tko_jobs")?;
            c.last_insert_rowid() as i32
        }
    };
    machine_values(c, job_idx, machine_idx, &jm)?;

    let old: Vec<OldTest> = if existing.is_some() {
        let mut s = c
            .prepare_cached(
                "SELECT test_idx, test, subdir, COALESCE(invalid, 0) FROM tko_tests \
                 WHERE job_idx = ?1 ORDER BY test_idx",
            )
            .at("tko_tests")?;
        let rows = s
            .query_map([job_idx], |r| {
                Ok(OldTest {
                    test_idx: r.get(0)?,
                    test: r.get(1)?,
                    subdir: r.get(2)?,
                    invalid: r.get::<_, i64>(3)? != 0,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .at("tko_tests")?;
        rows
    } else {
        Vec::new()
    };
    let plan = plan_tests(&old, job);
    for id in &plan.old {
        for (table, sql) in [
            (
                "tko_iteration_attributes",
                "DELETE FROM tko_iteration_attributes WHERE test_idx = ?1",
            ),
            (
                "tko_iteration_result",
                "DELETE FROM tko_iteration_result WHERE test_idx = ?1",
            ),
            (
                "tko_test_attributes",
                "DELETE FROM tko_test_attributes WHERE test_idx = ?1 AND user_created = 0",
            ),
        ] {
            c.prepare_cached(sql)
                .and_then(|mut s| s.execute([id]))
                .at(table)?;
        }
    }
    for id in &plan.vanished {
        for (table, sql) in [
            (
                "tko_test_attributes",
                "DELETE FROM tko_test_attributes WHERE test_idx = ?1",
            ),
            (
                "tko_test_labels_tests",
                "DELETE FROM tko_test_labels_tests WHERE test_id = ?1",
            ),
        ] {
            c.prepare_cached(sql)
                .and_then(|mut s| s.execute([id]))
                .at(table)?;
        }
    }
    if existing.is_some() {
        for (table, sql) in [
            ("tko_tests", "DELETE FROM tko_tests WHERE job_idx = ?1"),
            (
                "tko_job_keyvals",
                "DELETE FROM tko_job_keyvals WHERE job_id = ?1",
            ),
            (
                "tko_diagnostics",
                "DELETE FROM tko_diagnostics WHERE job_idx = ?1",
            ),
            (
                "tko_test_information",
                "DELETE FROM tko_test_information WHERE job_idx = ?1",
            ),
        ] {
            c.prepare_cached(sql)
                .and_then(|mut s| s.execute([job_idx]))
                .at(table)?;
        }
    }

    // New test ids continue AUTOINCREMENT's sequence; the IMMEDIATE
    // transaction makes this connection the only writer.
    let mut next: i32 = c
        .query_row(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tko_tests'), 0), \
                        COALESCE((SELECT max(test_idx) FROM tko_tests), 0))",
            [],
            |r| r.get(0),
        )
        .at("tko_tests")?;
    let test_ids: Vec<i32> = plan
        .kept
        .iter()
        .map(|k| {
            k.unwrap_or_else(|| {
                next += 1;
                next
            })
        })
        .collect();
    let ids = TreeIds {
        job_idx,
        machine_idx,
        test_idx: &test_ids,
        kernel_idx: &kernel_ids,
        invalid: &plan.invalid,
    };
    let rows = JobTreeRows::new(job, &ids, |s| status_idx[s.word()]);
    insert_rows(c, &rows)?;
    let (outcome, row) = ledger::loaded(item, job_idx, existing.is_none(), &plan, rows.counts());
    write_loaded(c, &row)?;
    Ok((outcome, row))
}

/// Records what the job says about its machine and recomputes the machine
/// rows that depend on it (its machine, and the one it was on before if it
/// moved): see [`JobMachine::of`].
fn machine_values(
    c: &Connection,
    job_idx: i32,
    machine_idx: i32,
    jm: &JobMachine,
) -> Result<(), Fail> {
    let before: Option<i32> = c
        .prepare_cached("SELECT machine_idx FROM tko_job_machines WHERE job_idx = ?1")
        .and_then(|mut s| s.query_row([job_idx], |r| r.get(0)).optional())
        .at("tko_job_machines")?;
    c.prepare_cached(
        "INSERT INTO tko_job_machines (job_idx, machine_idx, newest, machine_group, owner) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (job_idx) DO UPDATE SET machine_idx = excluded.machine_idx, \
            newest = excluded.newest, machine_group = excluded.machine_group, \
            owner = excluded.owner",
    )
    .and_then(|mut s| {
        s.execute(params![
            job_idx,
            machine_idx,
            jm.newest,
            jm.machine_group,
            jm.owner
        ])
    })
    .at("tko_job_machines")?;
    let mut affected = vec![machine_idx];
    affected.extend(before.filter(|&b| b != machine_idx));
    for m in affected {
        recompute_machine(c, m)?;
    }
    Ok(())
}

/// Sets machine `m`'s group and owner from the newest job on it (see
/// [`JobMachine::of`]); a machine no job is on keeps its values.
fn recompute_machine(c: &Connection, m: i32) -> Result<(), Fail> {
    c.prepare_cached(
        "UPDATE tko_machines SET \
                machine_group = (SELECT h.machine_group FROM tko_job_machines h \
                    WHERE h.machine_idx = ?1 ORDER BY h.newest DESC LIMIT 1), \
                owner = (SELECT h.owner FROM tko_job_machines h \
                    WHERE h.machine_idx = ?1 AND h.owner IS NOT NULL \
                    ORDER BY h.newest DESC LIMIT 1) \
             WHERE machine_idx = ?1 \
                AND EXISTS (SELECT 1 FROM tko_job_machines h WHERE h.machine_idx = ?1)",
    )
    .and_then(|mut s| s.execute([m]))
    .at("tko_machines")?;
    Ok(())
}

/// Deletes one job whole (inside the caller's transaction); `None` when
/// the job is no longer there.
fn delete_one(c: &Connection, d: &Doomed) -> Result<Option<Removed>, Fail> {
    let machine: Option<i32> = c
        .prepare_cached("SELECT machine_idx FROM tko_jobs WHERE job_idx = ?1 AND tag = ?2")
        .and_then(|mut s| {
            s.query_row(params![d.job_idx, d.tag], |r| r.get(0))
                .optional()
        })
        .at("tko_jobs")?;
    let Some(machine) = machine else {
        return Ok(None);
    };
    let moved: Option<i32> = c
        .prepare_cached("SELECT machine_idx FROM tko_job_machines WHERE job_idx = ?1")
        .and_then(|mut s| s.query_row([d.job_idx], |r| r.get(0)).optional())
        .at("tko_job_machines")?;
    let by_test = |table: &'static str, sql: &str| -> Result<usize, Fail> {
        c.prepare_cached(sql)
            .and_then(|mut s| s.execute([d.job_idx]))
            .at(table)
    };
    let tests_of = "(SELECT test_idx FROM tko_tests WHERE job_idx = ?1)";
    let mut rows = RowCounts {
        iteration_attributes: by_test(
            "tko_iteration_attributes",
            &format!("DELETE FROM tko_iteration_attributes WHERE test_idx IN {tests_of}"),
        )?,
        iteration_results: by_test(
            "tko_iteration_result",
            &format!("DELETE FROM tko_iteration_result WHERE test_idx IN {tests_of}"),
        )?,
        test_attributes: by_test(
            "tko_test_attributes",
            &format!("DELETE FROM tko_test_attributes WHERE test_idx IN {tests_of}"),
        )?,
        ..RowCounts::default()
    };
    let labels = by_test(
        "tko_test_labels_tests",
        &format!("DELETE FROM tko_test_labels_tests WHERE test_id IN {tests_of}"),
    )?;
    rows.tests = by_test("tko_tests", "DELETE FROM tko_tests WHERE job_idx = ?1")?;
    rows.job_keyvals = by_test(
        "tko_job_keyvals",
        "DELETE FROM tko_job_keyvals WHERE job_id = ?1",
    )?;
    rows.diagnostics = by_test(
        "tko_diagnostics",
        "DELETE FROM tko_diagnostics WHERE job_idx = ?1",
    )?;
    by_test(
        "tko_test_information",
        "DELETE FROM tko_test_information WHERE job_idx = ?1",
    )?;
    by_test(
        "tko_job_machines",
        "DELETE FROM tko_job_machines WHERE job_idx = ?1",
    )?;
    by_test("tko_jobs", "DELETE FROM tko_jobs WHERE job_idx = ?1")?;
    c.prepare_cached("DELETE FROM tko_scan_state WHERE tag = ?1")
        .and_then(|mut s| s.execute([&d.tag]))
        .at("tko_scan_state")?;
    c.prepare_cached(
        "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, parser_version, \
            loaded_at, outcome, error) \
         VALUES (?1, NULL, '', '', ?2, datetime('now'), ?3, NULL) \
         ON CONFLICT (tag) DO UPDATE SET job_idx = NULL, loaded_at = excluded.loaded_at, \
            outcome = excluded.outcome, error = NULL, tests = 0, test_attributes = 0, \
            iteration_attributes = 0, iteration_results = 0, job_keyvals = 0, diagnostics = 0",
    )
    .and_then(|mut s| s.execute(params![d.tag, PARSER_VERSION, ledger::DELETED]))
    .at("tko_ingest_ledger")?;
    recompute_machine(c, machine)?;
    if let Some(m) = moved.filter(|&m| m != machine) {
        recompute_machine(c, m)?;
    }
    Ok(Some(Removed {
        tag: d.tag.clone(),
        job_idx: i64::from(d.job_idx),
        rows,
        labels,
    }))
}

/// Upserts a loaded job's ledger row.
fn write_loaded(c: &Connection, row: &LoadedRow) -> Result<(), Fail> {
    let n = &row.counts;
    c.prepare_cached(
        "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, parser_version, \
            loaded_at, outcome, error, tests, test_attributes, iteration_attributes, \
            iteration_results, job_keyvals, diagnostics, read_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, datetime('now'), ?6, NULL, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (tag) DO UPDATE SET job_idx = excluded.job_idx, \
            source_path = excluded.source_path, fingerprint = excluded.fingerprint, \
            parser_version = excluded.parser_version, loaded_at = excluded.loaded_at, \
            outcome = excluded.outcome, error = NULL, tests = excluded.tests, \
            test_attributes = excluded.test_attributes, \
            iteration_attributes = excluded.iteration_attributes, \
            iteration_results = excluded.iteration_results, \
            job_keyvals = excluded.job_keyvals, diagnostics = excluded.diagnostics, \
            read_at = excluded.read_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.tag,
            row.job_idx,
            row.source_path,
            row.fingerprint,
            PARSER_VERSION,
            ledger::LOADED,
            n.tests as i64,
            n.test_attributes as i64,
            n.iteration_attributes as i64,
            n.iteration_results as i64,
            n.job_keyvals as i64,
            n.diagnostics as i64,
            row.read_at,
        ])
    })
    .at("tko_ingest_ledger")?;
    Ok(())
}

/// A flat row bound as SQLite parameters in its table's `COLUMNS` order
/// (the INSERT is built from `COLUMNS`, the single list the schema test
/// checks).
trait LiteRow {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize>;
}

impl LiteRow for TestRow<'_> {
    const TABLE: &'static str = "tko_tests";
    const COLUMNS: &'static [&'static str] = TestRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        let r = self;
        s.execute(params![
            r.test_idx,
            r.job_idx,
            r.test,
            r.subdir,
            r.kernel_idx,
            r.status,
            r.reason,
            r.machine_idx,
            r.invalid,
            ts(r.finished_time),
            ts(r.started_time),
        ])
    }
}

impl LiteRow for TestAttributeRow<'_> {
    const TABLE: &'static str = "tko_test_attributes";
    const COLUMNS: &'static [&'static str] = TestAttributeRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        let r = self;
        s.execute(params![
            r.job_idx,
            r.test_idx,
            r.attribute,
            r.value,
            r.user_created
        ])
    }
}

impl LiteRow for IterationAttributeRow<'_> {
    const TABLE: &'static str = "tko_iteration_attributes";
    const COLUMNS: &'static [&'static str] = IterationAttributeRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        let r = self;
        s.execute(params![
            r.job_idx,
            r.test_idx,
            r.iteration,
            r.attribute,
            r.value
        ])
    }
}

impl LiteRow for IterationResultRow<'_> {
    const TABLE: &'static str = "tko_iteration_result";
    const COLUMNS: &'static [&'static str] = IterationResultRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        let r = self;
        // SQLite REAL cannot hold NaN (it would read back as NULL anyway).
        let v = r.value.filter(|f| !f.is_nan());
        s.execute(params![r.job_idx, r.test_idx, r.iteration, r.attribute, v])
    }
}

impl LiteRow for JobKeyvalRow<'_> {
    const TABLE: &'static str = "tko_job_keyvals";
    const COLUMNS: &'static [&'static str] = JobKeyvalRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        s.execute(params![self.job_id, self.key, self.value])
    }
}

impl LiteRow for DiagnosticRow<'_> {
    const TABLE: &'static str = "tko_diagnostics";
    const COLUMNS: &'static [&'static str] = DiagnosticRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        let r = self;
        s.execute(params![r.job_idx, r.file, r.line, r.severity, r.message])
    }
}

impl LiteRow for InformationRow<'_> {
    const TABLE: &'static str = "tko_test_information";
    const COLUMNS: &'static [&'static str] = InformationRow::COLUMNS;
    fn insert(&self, s: &mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<usize> {
        let r = self;
        s.execute(params![r.test_idx, r.job_idx, r.message, ts(r.info_time)])
    }
}

/// Inserts rows of one table with one prepared statement.
fn insert_all<R: LiteRow>(c: &Connection, rows: &[R]) -> Result<(), Fail> {
    let placeholders: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        R::COLUMNS.join(", "),
        placeholders.join(", ")
    );
    let mut s = c.prepare_cached(&sql).at(R::TABLE)?;
    for r in rows {
        r.insert(&mut s).at(R::TABLE)?;
    }
    Ok(())
}

fn insert_rows(c: &Connection, rows: &JobTreeRows<'_>) -> Result<(), Fail> {
    insert_all(c, &rows.tests)?;
    insert_all(c, &rows.test_attributes)?;
    insert_all(c, &rows.iteration_attributes)?;
    insert_all(c, &rows.iteration_results)?;
    insert_all(c, &rows.job_keyvals)?;
    insert_all(c, &rows.diagnostics)?;
    insert_all(c, &rows.information)
}

/// Ledger rows of `tags` (by tag), on the connection or transaction `c`.
fn read_ledger(c: &Connection, tags: &[String]) -> rusqlite::Result<HashMap<String, ReadRow>> {
    let sql = format!(
        "{}l.tag IN (SELECT value FROM json_each(?1))",
        ledger::LEDGER_ROWS_SQL
    );
    let tags = serde_json::to_string(tags).expect("strings serialize");
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([tags], |r| {
        let scan = match (r.get::<_, Option<String>>(6)?, r.get(7)?) {
            (Some(sig), Some(fp)) => Some((sig, fp)),
            _ => None,
        };
        let row = ReadRow {
            ledger: LedgerRow {
                job_idx: r.get(1)?,
                source_path: r.get(2)?,
                fingerprint: r.get(3)?,
                parser_version: r.get(4)?,
                outcome: r.get(5)?,
                read_at: r.get(8)?,
            },
            scan,
        };
        Ok((r.get(0)?, row))
    })?;
    rows.collect()
}

impl SqliteStore {
    /// Upserts `rows` with `sql` (parameters `?1`..`?3`, and what a
    /// conflict updates) in one IMMEDIATE transaction; an error says it
    /// was `what`.
    fn upsert_rows<T: rusqlite::ToSql>(
        &mut self,
        what: &'static str,
        sql: &str,
        rows: impl Iterator<Item = [T; 3]>,
    ) -> Result<(), Error> {
        let mut rows = rows.peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(what))?;
        {
            let mut stmt = tx.prepare_cached(sql).map_err(db(what))?;
            for row in rows {
                stmt.execute(rusqlite::params_from_iter(row))
                    .map_err(db(what))?;
            }
        }
        tx.commit().map_err(db(what))
    }

    /// One IMMEDIATE transaction; each job in its own savepoint, written
    /// only if its ledger row is still the one it was planned on.
    fn write_batch(&mut self, jobs: &[Planned<'_, '_>]) -> Result<Vec<Written>, Error> {
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("BEGIN IMMEDIATE"))?;
        let status_idx: HashMap<String, i32> = {
            let mut s = tx
                .prepare_cached("SELECT word, status_idx FROM tko_status WHERE word IS NOT NULL")
                .map_err(db("reading tko_status"))?;
            let rows = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|it| it.collect::<rusqlite::Result<HashMap<_, _>>>())
                .map_err(db("reading tko_status"))?;
            rows
        };
        let mut out = Vec::with_capacity(jobs.len());
        for p in jobs {
            let item = p.item;
            let to_error = |f: Fail| Error::Load {
                tag: item.job.tag.clone(),
                table: f.table,
                source: f.source,
            };
            let tag = clean(&item.job.tag);
            let now = match read_ledger(&tx, std::slice::from_ref(&tag)).at("tko_ingest_ledger") {
                Ok(mut rows) => rows.remove(&tag).map(|r| r.ledger),
                Err(f) => {
                    out.push(Written::Failed(to_error(f)));
                    continue;
                }
            };
            if !p.still_current(now.as_ref()) {
                out.push(Written::Stale);
                continue;
            }
            let sp = tx.savepoint().map_err(db("SAVEPOINT"))?;
            match load_one(&sp, item, &status_idx) {
                Ok((o, _)) => {
                    sp.commit().map_err(db("RELEASE SAVEPOINT"))?;
                    out.push(Written::Done(o));
                }
                Err(f) => {
                    drop(sp); // rolls the job back
                    out.push(Written::Failed(to_error(f)));
                }
            }
        }
        tx.commit().map_err(db("COMMIT"))?;
        Ok(out)
    }
}

impl Backend for SqliteStore {
    fn ledger_rows(&mut self, tags: &[String]) -> Result<HashMap<String, ReadRow>, Error> {
        read_ledger(&self.conn, tags).map_err(db("reading tko_ingest_ledger"))
    }

    fn write_jobs(&mut self, jobs: &[Planned<'_, '_>]) -> Vec<Written> {
        match self.write_batch(jobs) {
            Ok(w) => w,
            Err(e) => {
                // The batch transaction itself failed: nothing of it stayed.
                let text = error_chain(&e);
                jobs.iter()
                    .map(|p| {
                        Written::Failed(Error::Load {
                            tag: p.item.job.tag.clone(),
                            table: "transaction",
                            source: text.clone().into(),
                        })
                    })
                    .collect()
            }
        }
    }

    fn write_failures(&mut self, rows: &[FailedRow]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("writing tko_ingest_ledger"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO tko_ingest_ledger (tag, job_idx, source_path, fingerprint, \
                        parser_version, loaded_at, outcome, error) \
                     VALUES (?1, NULL, ?2, ?3, ?4, datetime('now'), ?5, ?6) \
                     ON CONFLICT (tag) DO UPDATE SET source_path = CASE \
                            WHEN tko_ingest_ledger.job_idx IS NULL THEN excluded.source_path \
                            ELSE tko_ingest_ledger.source_path END, \
                        fingerprint = excluded.fingerprint, \
                        parser_version = excluded.parser_version, \
                        loaded_at = excluded.loaded_at, outcome = excluded.outcome, \
                        error = excluded.error",
                )
                .map_err(db("writing tko_ingest_ledger"))?;
            for r in rows {
                stmt.execute(params![
                    r.tag,
                    r.source_path,
                    r.fingerprint,
                    PARSER_VERSION,
                    ledger::FAILED,
                    r.error
                ])
                .map_err(db("writing tko_ingest_ledger"))?;
            }
        }
        tx.commit().map_err(db("writing tko_ingest_ledger"))
    }
}

impl Remover for SqliteStore {
    fn find_jobs(&mut self, sel: &JobSelection) -> Result<Vec<Doomed>, Error> {
        let (sql, args): (&str, Vec<Option<String>>) = match sel {
            JobSelection::Tags(tags) => (
                "SELECT tag, job_idx FROM tko_jobs \
                 WHERE tag IN (SELECT value FROM json_each(?1)) ORDER BY tag",
                vec![Some(
                    serde_json::to_string(&tags.iter().map(|t| clean(t)).collect::<Vec<_>>())
                        .expect("strings serialize"),
                )],
            ),
            JobSelection::Before { before, label } => (
                "SELECT tag, job_idx FROM tko_jobs \
                 WHERE COALESCE(finished_time, started_time, queued_time) < ?1 \
                    AND (?2 IS NULL OR label GLOB ?2) ORDER BY tag",
                vec![Some(before.clone()), label.as_deref().map(glob_to_sqlite)],
            ),
        };
        let mut s = self.conn.prepare(sql).map_err(db("choosing jobs"))?;
        let rows = s
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(Doomed {
                    tag: r.get(0)?,
                    job_idx: r.get(1)?,
                })
            })
            .and_then(|it| it.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db("choosing jobs"))?;
        Ok(rows)
    }

    fn delete_batch(&mut self, jobs: &[Doomed], dry_run: bool) -> Result<Vec<Removed>, Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("BEGIN IMMEDIATE"))?;
        let mut out = Vec::with_capacity(jobs.len());
        for d in jobs {
            match delete_one(&tx, d) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(f) => {
                    return Err(Error::Delete {
                        tag: d.tag.clone(),
                        table: f.table,
                        source: f.source,
                    })
                }
            }
        }
        if dry_run {
            tx.rollback().map_err(db("ROLLBACK"))?;
        } else {
            tx.commit().map_err(db("COMMIT"))?;
        }
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn init(&mut self) -> Result<Vec<u32>, Error> {
        self.apply(false)
    }

    fn migrate(&mut self) -> Result<Vec<u32>, Error> {
        self.apply(true)
    }

    fn status(&mut self) -> Result<StatusReport, Error> {
        let version = current_version(&self.conn)?;
        let mut tables = Vec::new();
        if let Some(v) = version {
            for t in schema::tables_at(v) {
                let n: i64 = self
                    .conn
                    .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                    .map_err(db("counting rows"))?;
                tables.push((t, n));
            }
        }
        Ok(StatusReport {
            backend: "sqlite",
            schema_version: version,
            latest_version: schema::latest(schema::SQLITE),
            tables,
        })
    }

    fn set_batch_jobs(&mut self, jobs: usize) {
        self.batch_jobs = jobs.max(1);
    }

    fn schema_version(&mut self) -> Result<Option<u32>, Error> {
        current_version(&self.conn)
    }

    fn ledger_state(&mut self, tags: &[&str]) -> Result<HashMap<String, LedgerState>, Error> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        Ok(self
            .ledger_rows(&tags)?
            .into_iter()
            .map(|(tag, row)| (tag, ledger::state(&row)))
            .collect())
    }

    fn record_signatures(&mut self, rows: &[Signature]) -> Result<(), Error> {
        self.upsert_rows(
            "writing tko_scan_state",
            "INSERT INTO tko_scan_state (tag, signature, fingerprint) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tag) DO UPDATE SET signature = excluded.signature, \
             fingerprint = excluded.fingerprint",
            rows.iter().map(|r| [&r.tag, &r.signature, &r.fingerprint]),
        )
    }

    fn listings_of(&mut self, spans: &[TopSpan<'_>]) -> Result<Recorded, Error> {
        let mut out = Recorded::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT path, stamp, subdirs FROM tko_scan_listing WHERE path > ?1 AND path < ?2",
            )
            .map_err(db("reading tko_scan_listing"))?;
        for span in spans {
            // One range of the primary key per root.
            let span = super::listing::Span::of(span);
            let mut rows = stmt
                .query(params![span.low, span.high])
                .map_err(db("reading tko_scan_listing"))?;
            while let Some(r) = rows.next().map_err(db("reading tko_scan_listing"))? {
                let field = |i| r.get_ref(i).ok().and_then(|v| v.as_blob().ok());
                if let (Some(path), Some(stamp), Some(names)) = (field(0), field(1), field(2)) {
                    span.add(&mut out, path, stamp, names);
                }
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
            let what = "forgetting listings in tko_scan_listing";
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what))?;
            {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM tko_scan_listing WHERE path = ?1")
                    .map_err(db(what))?;
                for path in gone {
                    stmt.execute(params![path.as_os_str().as_bytes()])
                        .map_err(db(what))?;
                }
            }
            tx.commit().map_err(db(what))?;
        }
        self.upsert_rows(
            "writing tko_scan_listing",
            "INSERT INTO tko_scan_listing (path, stamp, subdirs) VALUES (?1, ?2, ?3) \
             ON CONFLICT (path) DO UPDATE SET stamp = excluded.stamp, \
             subdirs = excluded.subdirs",
            listings.iter().map(|(path, listing)| {
                let (p, s, n) = super::listing::row(path, listing);
                [p, s, n]
            }),
        )
    }

    fn record_failures(&mut self, failures: &[Failure]) -> Result<(), Error> {
        self.write_failures(&ledger::failure_rows(failures))
    }

    fn drop_unused_kernels(&mut self, kernel_hashes: &[String]) -> Result<usize, Error> {
        if kernel_hashes.is_empty() {
            return Ok(0);
        }
        // One writer at a time: no load can pick a kernel up meanwhile.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("deleting unused kernels"))?;
        let hashes = serde_json::to_string(kernel_hashes).expect("strings serialize");
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS tko_unused_kernels (kernel_idx INTEGER)",
            [],
        )
        .and_then(|_| tx.execute("DELETE FROM tko_unused_kernels", []))
        .and_then(|_| {
            tx.execute(
                "INSERT INTO tko_unused_kernels SELECT k.kernel_idx FROM tko_kernels k \
                 WHERE k.kernel_hash IN (SELECT value FROM json_each(?1)) \
                 AND NOT EXISTS (SELECT 1 FROM tko_tests t WHERE t.kernel_idx = k.kernel_idx)",
                [&hashes],
            )
        })
        .and_then(|_| {
            tx.execute(
                "DELETE FROM tko_patches WHERE kernel_idx IN \
                 (SELECT kernel_idx FROM tko_unused_kernels)",
                [],
            )
        })
        .map_err(db("deleting unused kernels"))?;
        let n = tx
            .execute(
                "DELETE FROM tko_kernels WHERE kernel_idx IN \
                 (SELECT kernel_idx FROM tko_unused_kernels)",
                [],
            )
            .map_err(db("deleting unused kernels"))?;
        tx.commit().map_err(db("deleting unused kernels"))?;
        Ok(n)
    }

    fn load_jobs(&mut self, items: &[LoadItem<'_>]) -> Vec<Result<LoadOutcome, Error>> {
        let batch = self.batch_jobs;
        ledger::load_jobs(self, items, batch)
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
}
