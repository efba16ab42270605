//! Export of the warehouse as CSV or JSON Lines, streamed. An
//! [`ExportQuery`] (a [`Kind`] of row plus a [`Filter`]) becomes one SELECT
//! per dialect over the TKO tables, with every column already rendered as
//! the text the output carries: timestamps as `YYYY-MM-DD HH:MM:SS`, perf
//! values in PostgreSQL's shortest round-trip float form (`Infinity`,
//! `-Infinity`; NaN as NULL because SQLite cannot store it), rows ordered by
//! job tag in byte order and then by test id. PostgreSQL streams the rows with
//! `COPY (...) TO STDOUT` (CSV passes straight through to the writer; JSON
//! reads the text format), SQLite steps a cursor; neither collects rows, so
//! memory does not grow with the result. Both backends produce byte-identical
//! output for the same query. Writers are generic over `W: io::Write` and
//! flushed explicitly; [`Warehouse`] opens either backend by URL without
//! touching the loader's [`Store`](crate::store::Store) trait.

use crate::model::Status;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{self, BoxError};
use std::fmt::Write as _;
use std::io::{self, BufRead, Write};

/// What rows to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One row per job.
    Jobs,
    /// One row per test.
    Tests,
    /// One row per test attribute.
    Attributes,
    /// One row per iteration attribute.
    Iterations,
    /// One row per iteration result (perf value).
    Perf,
    /// One row per job keyval.
    Keyvals,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: [Kind; 6] = [
        Kind::Jobs,
        Kind::Tests,
        Kind::Attributes,
        Kind::Iterations,
        Kind::Perf,
        Kind::Keyvals,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jobs => "jobs",
            Kind::Tests => "tests",
            Kind::Attributes => "attributes",
            Kind::Iterations => "iterations",
            Kind::Perf => "perf",
            Kind::Keyvals => "keyvals",
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// RFC 4180 CSV, header row always, NULL as an empty field, `\n` line
    /// ends (as PostgreSQL's `COPY ... CSV` writes them).
    #[default]
    Csv,
    /// JSON Lines: one object per row, keys in column order.
    Json,
}

/// How a column's text is typed in JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    /// A string.
    Text,
    /// An integer (written as a JSON number).
    Int,
    /// A float in PostgreSQL's text form (a JSON number, or
    /// `{"$float": "inf"|"-inf"}` as in `tko parse --json`).
    Float,
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Header name.
    pub name: String,
    /// JSON typing.
    pub ty: ColType,
}

/// Row filters shared by every kind. Globs match the whole value; `*` is any
/// run of characters, `?` one character, `\` makes the next character
/// literal; everything else (including `[`) is literal. A NULL value never
/// matches a glob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Job tag glob.
    pub job: Option<String>,
    /// Job label glob.
    pub label: Option<String>,
    /// Test name glob.
    pub test: Option<String>,
    /// Machine (hostname) glob.
    pub machine: Option<String>,
    /// Kernel (base version) glob.
    pub kernel: Option<String>,
    /// Status words (any of).
    pub status: Vec<Status>,
    /// Finished at or after (`YYYY-MM-DD HH:MM:SS`, see [`parse_time`]).
    pub since: Option<String>,
    /// Finished at or before (`YYYY-MM-DD HH:MM:SS`, see [`parse_time`]).
    pub until: Option<String>,
}

impl Filter {
    /// A filter selecting exactly one job tag.
    pub fn job(tag: &str) -> Filter {
        Filter {
            job: Some(glob_escape(tag)),
            ..Filter::default()
        }
    }
}

/// An export: what, which rows, and (for perf) whether to pivot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    /// Row kind.
    pub kind: Kind,
    /// Row filter.
    pub filter: Filter,
    /// `perf` only: one row per test iteration, one column per perf key.
    pub wide: bool,
}

impl ExportQuery {
    /// A long-form export of `kind`.
    pub fn new(kind: Kind, filter: Filter) -> ExportQuery {
        ExportQuery {
            kind,
            filter,
            wide: false,
        }
    }
}

/// What went wrong in an export.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filter value cannot be used.
    #[error("invalid filter: {0}")]
    Filter(String),
    /// Opening the warehouse failed.
    #[error(transparent)]
    Open(#[from] store::Error),
    /// A statement failed.
    #[error("database error during export ({what})")]
    Db {
        /// What was running.
        what: &'static str,
        /// Driver error.
        #[source]
        source: BoxError,
    },
    /// Writing the output failed.
    #[error("writing the export")]
    Io(#[from] io::Error),
}

fn db<E: std::error::Error + Send + Sync + 'static>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Db {
        what,
        source: Box::new(e),
    }
}

/// Parses `--since`/`--until`: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or
/// with `T` instead of the space. A date alone is the start of that day, or
/// with `end_of_day` its last second (so `--until 2011-03-13` includes
/// that day). Returns `YYYY-MM-DD HH:MM:SS`.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<String, Error> {
    let bad = || Error::Filter(format!("{s:?} is not YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]"));
    let num = |t: &str, lo: u32, hi: u32| -> Result<u32, Error> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let v: u32 = t.parse().map_err(|_| bad())?;
        if v < lo || v > hi {
            return Err(bad());
        }
        Ok(v)
    };
    let (date, time) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || d[0].len() != 4 || d[1].len() != 2 || d[2].len() != 2 {
        return Err(bad());
    }
    let (y, mo, da) = (num(d[0], 0, 9999)?, num(d[1], 1, 12)?, num(d[2], 1, 31)?);
    let (h, mi, se) = match time {
        None if end_of_day => (23, 59, 59),
        None => (0, 0, 0),
        Some(t) => {
            let p: Vec<&str> = t.split(':').collect();
            if !(p.len() == 2 || p.len() == 3) || p.iter().any(|x| x.len() != 2) {
                return Err(bad());
            }
            let sec = if p.len() == 3 { num(p[2], 0, 59)? } else { 0 };
            (num(p[0], 0, 23)?, num(p[1], 0, 59)?, sec)
        }
    };
    Ok(format!("{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{se:02}"))
}

/// Escapes `*`, `?` and `\` so that a glob matches `s` literally.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One piece of a glob.
enum GlobTok {
    Any,
    One,
    Lit(char),
}

fn glob_tokens(glob: &str) -> Vec<GlobTok> {
    let mut out = Vec::new();
    let mut it = glob.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '*' => GlobTok::Any,
            '?' => GlobTok::One,
            '\\' => GlobTok::Lit(it.next().unwrap_or('\\')),
            c => GlobTok::Lit(c),
        });
    }
    out
}

/// The glob as a LIKE pattern with `\` as escape character (PostgreSQL).
fn glob_to_like(glob: &str) -> String {
    let mut out = String::new();
    for t in glob_tokens(glob) {
        match t {
            GlobTok::Any => out.push('%'),
            GlobTok::One => out.push('_'),
            GlobTok::Lit(c) => {
                if matches!(c, '%' | '_' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// The glob as an SQLite GLOB pattern (literal `*`, `?`, `[` as classes).
fn glob_to_sqlite(glob: &str) -> String {
    let mut out = String::new();
    for t in glob_tokens(glob) {
        match t {
            GlobTok::Any => out.push('*'),
            GlobTok::One => out.push('?'),
            GlobTok::Lit(c @ ('*' | '?' | '[')) => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            GlobTok::Lit(c) => out.push(c),
        }
    }
    out
}

/// Which SQL to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (12 or newer: shortest round-trip float output).
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A statement being built: SQL text plus (SQLite) its bound parameters.
struct Sql {
    dialect: Dialect,
    text: String,
    params: Vec<String>,
}

impl Sql {
    fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            text: String::new(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    /// Appends a string value. SQLite: a bound parameter. PostgreSQL: the
    /// statement runs inside `COPY (...) TO STDOUT`, which cannot take
    /// parameters, so the value is written as an escape-string literal
    /// (`E'...'`, backslashes and single quotes doubled — safe whatever
    /// `standard_conforming_strings` says); values are UTF-8 Rust strings
    /// and a NUL (which PostgreSQL text cannot hold) is rejected.
    fn lit(&mut self, v: &str) -> Result<&mut Sql, Error> {
        match self.dialect {
            Dialect::Sqlite => {
                self.params.push(v.to_owned());
                let n = self.params.len();
                let _ = write!(self.text, "?{n}");
            }
            Dialect::Postgres => self.text.push_str(&pg_literal(v)?),
        }
        Ok(self)
    }
}

/// `v` as a PostgreSQL escape-string literal; NUL is rejected.
pub fn pg_literal(v: &str) -> Result<String, Error> {
    if v.contains('\0') {
        return Err(Error::Filter(format!(
            "{v:?} contains a NUL character, which no stored value can hold"
        )));
    }
    let mut out = String::with_capacity(v.len() + 3);
    out.push_str("E'");
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// A planned statement: SQL, SQLite parameters, output columns.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The SELECT (without `COPY`).
    pub sql: String,
    /// SQLite parameters (`?1`, `?2`, …); empty for PostgreSQL.
    pub params: Vec<String>,
    /// Output columns.
    pub columns: Vec<Column>,
}

fn col(name: &str, ty: ColType) -> Column {
    Column {
        name: name.to_owned(),
        ty,
    }
}

/// Dialect-specific expressions.
fn ts(d: Dialect, c: &str) -> String {
    match d {
        Dialect::Postgres => format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS')"),
        Dialect::Sqlite => c.to_owned(),
    }
}

fn float(d: Dialect, c: &str) -> String {
    match d {
        // Shortest round-trip text (extra_float_digits = 1, set per
        // session); NaN as NULL because SQLite stores NaN as NULL; `+ 0`
        // turns -0 into 0 because SQLite does not keep the sign of zero.
        Dialect::Postgres => format!("NULLIF({c}, 'NaN'::float8) + 0::float8"),
        Dialect::Sqlite => c.to_owned(),
    }
}

fn coll(d: Dialect, c: &str) -> String {
    match d {
        Dialect::Postgres => format!("{c} COLLATE \"C\""),
        Dialect::Sqlite => c.to_owned(),
    }
}

const TEST_JOINS: &str = " FROM tko_tests t \
    JOIN tko_jobs j ON j.job_idx = t.job_idx \
    JOIN tko_machines m ON m.machine_idx = j.machine_idx \
    JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx \
    JOIN tko_status s ON s.status_idx = t.status";

/// Columns of `tests` (stable; documented in README.md).
pub const TEST_COLUMNS: [&str; 15] = [
    "job_tag",
    "afe_job_id",
    "label",
    "username",
    "machine",
    "machine_group",
    "kernel",
    "kernel_hash",
    "test",
    "subdir",
    "status",
    "reason",
    "started_time",
    "finished_time",
    "duration_s",
];

/// Leading columns of `attributes`, `iterations` and `perf`.
const PREFIX: [&str; 8] = [
    "job_tag",
    "label",
    "machine",
    "kernel",
    "test",
    "subdir",
    "status",
    "finished_time",
];

fn prefix_select(d: Dialect) -> String {
    format!(
        "SELECT j.tag, j.label, m.hostname, k.base, t.test, t.subdir, s.word, {}",
        ts(d, "t.finished_time")
    )
}

fn text_cols(names: &[&str]) -> Vec<Column> {
    names.iter().map(|n| col(n, ColType::Text)).collect()
}

/// Appends ` AND <column> matches glob`.
fn glob_cond(q: &mut Sql, column: &str, glob: &str) -> Result<(), Error> {
    match q.dialect {
        Dialect::Postgres => {
            q.push(" AND ").push(column).push(" LIKE ");
            q.lit(&glob_to_like(glob))?.push(" ESCAPE E'\\\\'");
        }
        Dialect::Sqlite => {
            q.push(" AND ").push(column).push(" GLOB ");
            q.lit(&glob_to_sqlite(glob))?;
        }
    }
    Ok(())
}

fn time_cond(q: &mut Sql, column: &str, op: &str, t: &str) -> Result<(), Error> {
    q.push(" AND ").push(column).push(op);
    q.lit(t)?;
    if q.dialect == Dialect::Postgres {
        q.push("::timestamp");
    }
    Ok(())
}

/// Conditions on tests (`t`, `k`, `s` in scope).
fn test_conds(q: &mut Sql, f: &Filter, with_time: bool) -> Result<(), Error> {
    if let Some(g) = &f.test {
        glob_cond(q, "t.test", g)?;
    }
    if let Some(g) = &f.kernel {
        glob_cond(q, "k.base", g)?;
    }
    if !f.status.is_empty() {
        q.push(" AND s.word IN (");
        for (i, st) in f.status.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.lit(st.word())?;
        }
        q.push(")");
    }
    if with_time {
        if let Some(t) = &f.since {
            time_cond(q, "t.finished_time", " >= ", t)?;
        }
        if let Some(t) = &f.until {
            time_cond(q, "t.finished_time", " <= ", t)?;
        }
    }
    Ok(())
}

/// Conditions on jobs (`j`, `m` in scope).
fn job_conds(q: &mut Sql, f: &Filter, with_time: bool) -> Result<(), Error> {
    if let Some(g) = &f.job {
        glob_cond(q, "j.tag", g)?;
    }
    if let Some(g) = &f.label {
        glob_cond(q, "j.label", g)?;
    }
    if let Some(g) = &f.machine {
        glob_cond(q, "m.hostname", g)?;
    }
    if with_time {
        if let Some(t) = &f.since {
            time_cond(q, "j.finished_time", " >= ", t)?;
        }
        if let Some(t) = &f.until {
            time_cond(q, "j.finished_time", " <= ", t)?;
        }
    }
    Ok(())
}

/// For job-level kinds: keep jobs with at least one test matching the
/// test filters (when there are any).
fn job_test_exists(q: &mut Sql, f: &Filter) -> Result<(), Error> {
    if f.test.is_none() && f.kernel.is_none() && f.status.is_empty() {
        return Ok(());
    }
    q.push(
        " AND EXISTS (SELECT 1 FROM tko_tests t \
         JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx \
         JOIN tko_status s ON s.status_idx = t.status WHERE t.job_idx = j.job_idx",
    );
    test_conds(q, f, false)?;
    q.push(")");
    Ok(())
}

/// Plans the statement for `query`. `perf_keys` are the pivot columns of a
/// wide perf export (see [`Warehouse::export`], which looks them up first).
pub fn plan(query: &ExportQuery, d: Dialect, perf_keys: &[String]) -> Result<Plan, Error> {
    let f = &query.filter;
    let mut q = Sql::new(d);
    let columns: Vec<Column>;
    match query.kind {
        Kind::Jobs => {
            columns = vec![
                col("job_tag", ColType::Text),
                col("afe_job_id", ColType::Int),
                col("label", ColType::Text),
                col("username", ColType::Text),
                col("machine", ColType::Text),
                col("machine_group", ColType::Text),
                col("machine_owner", ColType::Text),
                col("queued_time", ColType::Text),
                col("started_time", ColType::Text),
                col("finished_time", ColType::Text),
                col("tests", ColType::Int),
                col("good", ColType::Int),
            ];
            q.push(&format!(
                "SELECT j.tag, j.afe_job_id, j.label, j.username, m.hostname, m.machine_group, \
                 m.owner, {}, {}, {}, \
                 (SELECT count(*) FROM tko_tests t WHERE t.job_idx = j.job_idx), \
                 (SELECT count(*) FROM tko_tests t JOIN tko_status s ON s.status_idx = t.status \
                  WHERE t.job_idx = j.job_idx AND s.word = 'GOOD') \
                 FROM tko_jobs j JOIN tko_machines m ON m.machine_idx = j.machine_idx WHERE true",
                ts(d, "j.queued_time"),
                ts(d, "j.started_time"),
                ts(d, "j.finished_time")
            ));
            job_conds(&mut q, f, true)?;
            job_test_exists(&mut q, f)?;
            q.push(&format!(" ORDER BY {}", coll(d, "j.tag")));
        }
        Kind::Keyvals => {
            columns = text_cols(&[
                "job_tag",
                "label",
                "machine",
                "finished_time",
                "key",
                "value",
            ]);
            q.push(&format!(
                "SELECT j.tag, j.label, m.hostname, {}, kv.key, kv.value \
                 FROM tko_job_keyvals kv JOIN tko_jobs j ON j.job_idx = kv.job_id \
                 JOIN tko_machines m ON m.machine_idx = j.machine_idx WHERE true",
                ts(d, "j.finished_time")
            ));
            job_conds(&mut q, f, true)?;
            job_test_exists(&mut q, f)?;
            q.push(&format!(
                " ORDER BY {}, {}, kv.id",
                coll(d, "j.tag"),
                coll(d, "kv.key")
            ));
        }
        Kind::Tests => {
            columns = TEST_COLUMNS
                .iter()
                .map(|n| {
                    let ty = if matches!(*n, "afe_job_id" | "duration_s") {
                        ColType::Int
                    } else {
                        ColType::Text
                    };
                    col(n, ty)
                })
                .collect();
            let duration = match d {
                Dialect::Postgres => "EXTRACT(EPOCH FROM t.finished_time - t.started_time)::bigint",
                Dialect::Sqlite => {
                    "CAST(strftime('%s', t.finished_time) AS INTEGER) \
                     - CAST(strftime('%s', t.started_time) AS INTEGER)"
                }
            };
            q.push(&format!(
                "SELECT j.tag, j.afe_job_id, j.label, j.username, m.hostname, m.machine_group, \
                 k.base, k.kernel_hash, t.test, t.subdir, s.word, t.reason, {}, {}, {duration}{TEST_JOINS} \
                 WHERE true",
                ts(d, "t.started_time"),
                ts(d, "t.finished_time"),
            ));
            job_conds(&mut q, f, false)?;
            test_conds(&mut q, f, true)?;
            q.push(&format!(" ORDER BY {}, t.test_idx", coll(d, "j.tag")));
        }
        Kind::Attributes | Kind::Iterations => {
            let (table, iteration) = if query.kind == Kind::Attributes {
                ("tko_test_attributes", false)
            } else {
                ("tko_iteration_attributes", true)
            };
            let mut names = PREFIX.to_vec();
            if iteration {
                names.push("iteration");
            }
            names.extend(["attribute", "value"]);
            columns = names
                .iter()
                .map(|n| {
                    col(
                        n,
                        if *n == "iteration" {
                            ColType::Int
                        } else {
                            ColType::Text
                        },
                    )
                })
                .collect();
            q.push(&prefix_select(d));
            if iteration {
                q.push(", a.iteration");
            }
            q.push(&format!(
                ", a.attribute, a.value{TEST_JOINS} JOIN {table} a ON a.test_idx = t.test_idx WHERE true"
            ));
            job_conds(&mut q, f, false)?;
            test_conds(&mut q, f, true)?;
            q.push(&format!(" ORDER BY {}, t.test_idx", coll(d, "j.tag")));
            if iteration {
                q.push(", a.iteration");
            }
            q.push(&format!(
                ", {}, {}",
                coll(d, "a.attribute"),
                coll(d, "a.value")
            ));
        }
        Kind::Perf if !query.wide => {
            columns = PREFIX
                .iter()
                .map(|n| col(n, ColType::Text))
                .chain([
                    col("iteration", ColType::Int),
                    col("key", ColType::Text),
                    col("value", ColType::Float),
                ])
                .collect();
            q.push(&prefix_select(d));
            q.push(&format!(
                ", r.iteration, r.attribute, {}{TEST_JOINS} \
                 JOIN tko_iteration_result r ON r.test_idx = t.test_idx WHERE true",
                float(d, "r.value")
            ));
            job_conds(&mut q, f, false)?;
            test_conds(&mut q, f, true)?;
            q.push(&format!(
                " ORDER BY {}, t.test_idx, r.iteration, {}",
                coll(d, "j.tag"),
                coll(d, "r.attribute")
            ));
        }
        Kind::Perf => {
            columns = PREFIX
                .iter()
                .map(|n| col(n, ColType::Text))
                .chain([col("iteration", ColType::Int)])
                .chain(perf_keys.iter().map(|k| col(k, ColType::Float)))
                .collect();
            q.push(&prefix_select(d));
            q.push(", r.iteration");
            for key in perf_keys {
                q.push(", ");
                q.push(match d {
                    Dialect::Postgres => "NULLIF(max(CASE WHEN r.attribute = ",
                    Dialect::Sqlite => "max(CASE WHEN r.attribute = ",
                });
                q.lit(key)?;
                q.push(match d {
                    Dialect::Postgres => " THEN r.value END), 'NaN'::float8) + 0::float8",
                    Dialect::Sqlite => " THEN r.value END)",
                });
            }
            q.push(&format!(
                "{TEST_JOINS} JOIN tko_iteration_result r ON r.test_idx = t.test_idx WHERE true"
            ));
            job_conds(&mut q, f, false)?;
            test_conds(&mut q, f, true)?;
            q.push(&format!(
                " GROUP BY t.test_idx, j.job_idx, m.machine_idx, k.kernel_idx, s.status_idx, \
                 r.iteration ORDER BY {}, t.test_idx, r.iteration",
                coll(d, "j.tag")
            ));
        }
    }
    Ok(Plan {
        sql: q.text,
        params: q.params,
        columns,
    })
}

/// The distinct perf keys a wide perf export pivots into columns.
fn perf_keys_plan(filter: &Filter, d: Dialect) -> Result<Plan, Error> {
    let mut q = Sql::new(d);
    q.push(&format!(
        "SELECT DISTINCT {}{TEST_JOINS} \
         JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
         WHERE r.attribute IS NOT NULL",
        coll(d, "r.attribute")
    ));
    job_conds(&mut q, filter, false)?;
    test_conds(&mut q, filter, true)?;
    q.push(" ORDER BY 1");
    Ok(Plan {
        sql: q.text,
        params: q.params,
        columns: vec![col("key", ColType::Text)],
    })
}

// ------------------------------------------------------------- writers

/// Receives an export: the columns once, then the rows.
pub trait Sink {
    /// Called once before any row.
    fn begin(&mut self, columns: &[Column]) -> io::Result<()>;
    /// One row, fields in column order (`None` is SQL NULL).
    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()>;
    /// A sink that writes CSV exactly as PostgreSQL's `COPY ... (FORMAT
    /// csv)` does returns its writer here, and PostgreSQL streams the rows
    /// straight into it (after [`Sink::begin`] wrote the header).
    fn csv_passthrough(&mut self) -> Option<&mut dyn Write> {
        None
    }
    /// Called once after the last row: flush.
    fn finish(&mut self) -> io::Result<()>;
}

/// CSV (RFC 4180) writer: a field is quoted when it is empty (an empty
/// string, to tell it from NULL, which is written as nothing), or contains a
/// comma, a double quote, CR or LF (quotes doubled inside); rows end in
/// `\n`. This is byte for byte what PostgreSQL's `COPY ... CSV` writes.
pub struct CsvWriter<W: Write> {
    out: W,
    columns: usize,
}

impl<W: Write> CsvWriter<W> {
    /// Writes CSV to `out`.
    pub fn new(out: W) -> CsvWriter<W> {
        CsvWriter { out, columns: 0 }
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn field(&mut self, v: Option<&str>) -> io::Result<()> {
        let Some(v) = v else { return Ok(()) };
        let quote = v.is_empty()
            || (self.columns == 1 && v == "\\.")
            || v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        if !quote {
            return self.out.write_all(v.as_bytes());
        }
        self.out.write_all(b"\"")?;
        let mut rest = v;
        while let Some(i) = rest.find('"') {
            self.out.write_all(&rest.as_bytes()[..=i])?;
            self.out.write_all(b"\"")?;
            rest = &rest[i + 1..];
        }
        self.out.write_all(rest.as_bytes())?;
        self.out.write_all(b"\"")
    }
}

impl<W: Write> Sink for CsvWriter<W> {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.columns = columns.len();
        let names: Vec<Option<&str>> = columns.iter().map(|c| Some(c.name.as_str())).collect();
        self.row(&names)
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.field(*f)?;
        }
        self.out.write_all(b"\n")
    }

    fn csv_passthrough(&mut self) -> Option<&mut dyn Write> {
        Some(&mut self.out)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// JSON Lines writer: one object per row, keys in column order; integer
/// columns as numbers, float columns as numbers or `{"$float": "inf"}` /
/// `{"$float": "-inf"}`, NULL as `null`.
pub struct JsonWriter<W: Write> {
    out: W,
    keys: Vec<String>,
    types: Vec<ColType>,
}

impl<W: Write> JsonWriter<W> {
    /// Writes JSON Lines to `out`.
    pub fn new(out: W) -> JsonWriter<W> {
        JsonWriter {
            out,
            keys: Vec::new(),
            types: Vec::new(),
        }
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for JsonWriter<W> {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.keys = columns
            .iter()
            .map(|c| serde_json::to_string(&c.name).expect("a string serializes"))
            .collect();
        self.types = columns.iter().map(|c| c.ty).collect();
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        self.out.write_all(b"{")?;
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.out.write_all(self.keys[i].as_bytes())?;
            self.out.write_all(b":")?;
            match (f, self.types[i]) {
                (None, _) => self.out.write_all(b"null")?,
                (Some("Infinity"), ColType::Float) => {
                    self.out.write_all(br#"{"$float":"inf"}"#)?;
                }
                (Some("-Infinity"), ColType::Float) => {
                    self.out.write_all(br#"{"$float":"-inf"}"#)?;
                }
                (Some("NaN"), ColType::Float) => {
                    self.out.write_all(br#"{"$float":"nan"}"#)?;
                }
                (Some(v), ColType::Int | ColType::Float) => self.out.write_all(v.as_bytes())?,
                (Some(v), ColType::Text) => serde_json::to_writer(&mut self.out, v)?,
            }
        }
        self.out.write_all(b"}\n")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Formats a float exactly as PostgreSQL's `float8out` does with
/// `extra_float_digits >= 1` (PostgreSQL 12+): the shortest digits that
/// read back to the same number, fixed notation for decimal exponents
/// -4..=14, else `d.ddde+XX`; `NaN`, `Infinity`, `-Infinity`, `-0`.
///
/// PostgreSQL's Ryu is built without `STRICTLY_SHORTEST`: a decimal lying
/// exactly halfway to a neighbouring double is never chosen, although it
/// reads back correctly (round half to even). Rust's shortest form may pick
/// it, so that case is detected and the next longer correctly rounded form
/// taken instead.
pub fn pg_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    let (digits, exp) = pg_digits(a);
    let n = digits.len() as i32;
    if (-4..15).contains(&exp) {
        if exp >= 0 {
            if n <= exp + 1 {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', (exp + 1 - n) as usize));
            } else {
                let (a, b) = digits.split_at((exp + 1) as usize);
                out.push_str(a);
                out.push('.');
                out.push_str(b);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
}

/// PostgreSQL's significant digits and decimal exponent of `a` (positive,
/// finite). Ryu (as PostgreSQL builds it) takes the shortest length `n` whose
/// correctly rounded form (ties to even) reads back to `a` without lying
/// exactly halfway to a neighbour. Rust's shortest form agrees except near
/// ties and halfway points, which only arise with 15 or more digits or on a
/// halfway point; there the correctly rounded forms are tried from `n` up.
/// (Ryu also differs when the nearest `n`-digit decimal of a power of two
/// falls below its narrower lower gap; that case yields one more digit here.)
fn pg_digits(a: f64) -> (String, i32) {
    let (d, e) = sci_digits(&format!("{a:e}"));
    if d.len() < 15 && !on_midpoint(a, &d, e) {
        return (d, e);
    }
    for p in d.len()..=17 {
        let (d, e) = sci_digits(&format!("{a:.*e}", p - 1));
        let back = format!("{d}e{}", e - (d.len() as i32 - 1)).parse::<f64>();
        if back == Ok(a) && !on_midpoint(a, &d, e) {
            return (d, e);
        }
    }
    sci_digits(&format!("{a:.16e}"))
}

/// `d.ddde±x` (Rust's `{:e}`) → significant digits without trailing zeros
/// and the decimal exponent of the first digit.
fn sci_digits(sci: &str) -> (String, i32) {
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp)
}

/// True when the decimal `0.digits × 10^(exp+1)` lies exactly halfway
/// between `a` (positive, finite) and a neighbouring double.
fn on_midpoint(a: f64, digits: &str, exp: i32) -> bool {
    // value = d × 10^k
    let k = exp - (digits.len() as i32 - 1);
    let d: u64 = digits.parse().expect("at most 17 digits");
    // A midpoint is a dyadic rational: below 2^53 never an integer, and
    // d × 10^k with k < 0 is dyadic only if 5^-k divides d.
    if k >= 0 {
        if a < 9_007_199_254_740_992.0 {
            return false;
        }
    } else {
        match 5u64.checked_pow(k.unsigned_abs()) {
            Some(p) if d.is_multiple_of(p) => {}
            _ => return false,
        }
    }
    // Exactly halfway iff nudging it by far less than an ulp changes the
    // double it reads as (the parser rounds exactly).
    let tiny = 25;
    let up = format!("{d}{}1e{}", "0".repeat(tiny - 1), k - tiny as i32);
    let down = format!("{}{}e{}", d - 1, "9".repeat(tiny), k - tiny as i32);
    up.parse::<f64>() != Ok(a) || down.parse::<f64>() != Ok(a)
}

// ------------------------------------------------------------- backends

/// A warehouse opened for reading: either backend, by URL (as
/// [`store::open`]).
pub enum Warehouse {
    /// PostgreSQL.
    Postgres(Box<PgStore>),
    /// SQLite.
    Sqlite(Box<SqliteStore>),
}

impl Warehouse {
    /// Opens `postgres://…`/`postgresql://…` or `sqlite:PATH`.
    pub fn open(url: &str) -> Result<Warehouse, Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Warehouse::Postgres(Box::new(PgStore::connect(url)?)))
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            Ok(Warehouse::Sqlite(Box::new(SqliteStore::open(path)?)))
        } else {
            Err(Error::Open(store::Error::Url {
                url: store::display_url(url),
            }))
        }
    }

    /// The SQL dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Warehouse::Postgres(_) => Dialect::Postgres,
            Warehouse::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Streams `query` into `sink` (`begin`, rows, `finish`); returns the
    /// number of rows.
    pub fn export(&mut self, query: &ExportQuery, sink: &mut dyn Sink) -> Result<u64, Error> {
        let d = self.dialect();
        if d == Dialect::Postgres {
            self.pg_session()?;
        }
        let keys = if query.kind == Kind::Perf && query.wide {
            let kp = perf_keys_plan(&query.filter, d)?;
            let mut keys = Vec::new();
            self.rows(&kp, &mut |f| {
                keys.push(f[0].unwrap_or_default().to_owned());
                Ok(())
            })?;
            keys
        } else {
            Vec::new()
        };
        let p = plan(query, d, &keys)?;
        sink.begin(&p.columns)?;
        let passthrough = d == Dialect::Postgres && sink.csv_passthrough().is_some();
        let n = match self {
            Warehouse::Postgres(pg) if passthrough => {
                let out = sink.csv_passthrough().expect("checked above");
                pg_copy_csv(pg, &p.sql, out)?
            }
            wh => {
                let mut n = 0u64;
                wh.rows(&p, &mut |f| {
                    n += 1;
                    sink.row(f).map_err(Error::Io)
                })?;
                n
            }
        };
        sink.finish()?;
        Ok(n)
    }

    /// Session settings the PostgreSQL SQL relies on.
    fn pg_session(&mut self) -> Result<(), Error> {
        if let Warehouse::Postgres(pg) = self {
            pg.client()
                .batch_execute("SET extra_float_digits = 1")
                .map_err(db("session settings"))?;
        }
        Ok(())
    }

    /// Runs a plan and calls `each` with every row's fields as text.
    fn rows(&mut self, p: &Plan, each: &mut RowFn<'_>) -> Result<(), Error> {
        match self {
            Warehouse::Postgres(pg) => pg_copy_text(pg, &p.sql, each),
            Warehouse::Sqlite(lite) => sqlite_rows(lite, p, each),
        }
    }
}

/// Receives one row's fields as text (`None` is NULL).
type RowFn<'a> = dyn FnMut(&[Option<&str>]) -> Result<(), Error> + 'a;

/// `COPY (sql) TO STDOUT (FORMAT csv)` straight into `out`; counts rows
/// (line ends outside quotes).
fn pg_copy_csv(pg: &mut PgStore, sql: &str, out: &mut dyn Write) -> Result<u64, Error> {
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT csv)");
    let mut reader = pg.client().copy_out(&copy).map_err(db("COPY TO STDOUT"))?;
    let mut rows = 0u64;
    let mut in_quotes = false;
    loop {
        let buf = reader.fill_buf().map_err(db("reading COPY data"))?;
        if buf.is_empty() {
            break;
        }
        for &b in buf {
            if b == b'"' {
                in_quotes = !in_quotes;
            } else if b == b'\n' && !in_quotes {
                rows += 1;
            }
        }
        out.write_all(buf)?;
        let n = buf.len();
        reader.consume(n);
    }
    Ok(rows)
}

/// `COPY (sql) TO STDOUT` in text format, decoded row by row.
fn pg_copy_text(pg: &mut PgStore, sql: &str, each: &mut RowFn<'_>) -> Result<(), Error> {
    let copy = format!("COPY ({sql}) TO STDOUT");
    let mut reader = pg.client().copy_out(&copy).map_err(db("COPY TO STDOUT"))?;
    let mut line = Vec::new();
    let mut text = String::new();
    let mut bounds: Vec<Option<(usize, usize)>> = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(db("reading COPY data"))?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        text.clear();
        bounds.clear();
        for raw in line.split(|&b| b == b'\t') {
            if raw == b"\\N" {
                bounds.push(None);
                continue;
            }
            let start = text.len();
            let mut bytes = Vec::with_capacity(raw.len());
            let mut it = raw.iter();
            while let Some(&b) = it.next() {
                if b != b'\\' {
                    bytes.push(b);
                    continue;
                }
                bytes.push(match it.next() {
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'b') => 8,
                    Some(b'f') => 12,
                    Some(b'v') => 11,
                    Some(&o) => o,
                    None => b'\\',
                });
            }
            text.push_str(&String::from_utf8_lossy(&bytes));
            bounds.push(Some((start, text.len())));
        }
        let fields: Vec<Option<&str>> =
            bounds.iter().map(|b| b.map(|(s, e)| &text[s..e])).collect();
        each(&fields)?;
    }
}

/// Steps an SQLite cursor; floats are formatted as PostgreSQL would.
fn sqlite_rows(lite: &mut SqliteStore, p: &Plan, each: &mut RowFn<'_>) -> Result<(), Error> {
    use rusqlite::types::ValueRef;
    let conn = lite.connection();
    let mut stmt = conn.prepare(&p.sql).map_err(db("preparing the export"))?;
    let ncols = stmt.column_count();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(p.params.iter()))
        .map_err(db("running the export"))?;
    let mut text = String::new();
    let mut bounds: Vec<Option<(usize, usize)>> = Vec::with_capacity(ncols);
    while let Some(r) = rows.next().map_err(db("reading export rows"))? {
        text.clear();
        bounds.clear();
        for i in 0..ncols {
            let start = text.len();
            match r.get_ref(i).map_err(db("reading a column"))? {
                ValueRef::Null => {
                    bounds.push(None);
                    continue;
                }
                ValueRef::Integer(v) => {
                    if p.columns.get(i).is_some_and(|c| c.ty == ColType::Float) {
                        pg_float(v as f64, &mut text);
                    } else {
                        let _ = write!(text, "{v}");
                    }
                }
                // `+ 0.0`: -0 as 0, as the PostgreSQL SQL does.
                ValueRef::Real(v) => pg_float(v + 0.0, &mut text),
                ValueRef::Text(t) | ValueRef::Blob(t) => text.push_str(&String::from_utf8_lossy(t)),
            }
            bounds.push(Some((start, text.len())));
        }
        let fields: Vec<Option<&str>> =
            bounds.iter().map(|b| b.map(|(s, e)| &text[s..e])).collect();
        each(&fields)?;
    }
    Ok(())
}

/// Exports `query` from `wh` to `out` in `format`; returns the row count.
pub fn write<W: Write>(
    wh: &mut Warehouse,
    query: &ExportQuery,
    format: Format,
    out: W,
) -> Result<u64, Error> {
    match format {
        Format::Csv => wh.export(query, &mut CsvWriter::new(out)),
        Format::Json => wh.export(query, &mut JsonWriter::new(out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pgf(f: f64) -> String {
        let mut s = String::new();
        pg_float(f, &mut s);
        s
    }

    #[test]
    fn floats_format_like_postgres() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.234e-7, "1.234e-07"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.5e20, "1.5e+20"),
            (1e100, "1e+100"),
            (1e-300, "1e-300"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (1.0 / 3.0, "0.3333333333333333"),
            // Rust's shortest would be the halfway value 3.172230058817275e16.
            (3.172_230_058_817_275e16, "3.1722300588172752e+16"),
            // An exact tie at 17 digits rounds to even.
            (1_201_363_153_809_856.0 + 0.25, "1.2013631538098562e+15"),
        ];
        for (f, want) in cases {
            assert_eq!(pgf(f), want, "{f:?}");
        }
    }

    #[test]
    fn globs_translate() {
        assert_eq!(glob_to_like("12*-a?c%_\\*"), "12%-a_c\\%\\_*");
        assert_eq!(glob_to_sqlite("a*b?[c\\*"), "a*b?[[]c[*]");
        assert_eq!(glob_escape("a*b?\\"), "a\\*b\\?\\\\");
        assert_eq!(glob_to_like(&glob_escape("1_x*")), "1\\_x*");
    }

    #[test]
    fn literals_are_escaped_and_nul_rejected() {
        assert_eq!(
            pg_literal("it's a \\ test").unwrap(),
            "E'it''s a \\\\ test'"
        );
        assert!(pg_literal("a\0b").is_err());
    }

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("2011-03-13", false).unwrap(),
            "2011-03-13 00:00:00"
        );
        assert_eq!(
            parse_time("2011-03-13", true).unwrap(),
            "2011-03-13 23:59:59"
        );
        assert_eq!(
            parse_time("2011-03-13T07:06", false).unwrap(),
            "2011-03-13 07:06:00"
        );
        assert_eq!(
            parse_time("2011-03-13 07:06:41", true).unwrap(),
            "2011-03-13 07:06:41"
        );
        for bad in [
            "2011-3-13",
            "yesterday",
            "2011-13-01",
            "2011-03-13 25:00",
            "2011-03-13T1:2",
        ] {
            assert!(parse_time(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_like_postgres() {
        let mut w = CsvWriter::new(Vec::new());
        w.begin(&[col("a", ColType::Text), col("b", ColType::Text)])
            .unwrap();
        w.row(&[Some(""), None]).unwrap();
        w.row(&[Some("x,y"), Some("say \"hi\"\nbye")]).unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "a,b\n\"\",\n\"x,y\",\"say \"\"hi\"\"\nbye\"\n"
        );
    }

    #[test]
    fn json_types_columns() {
        let mut w = JsonWriter::new(Vec::new());
        w.begin(&[
            col("s", ColType::Text),
            col("i", ColType::Int),
            col("f", ColType::Float),
            col("g", ColType::Float),
        ])
        .unwrap();
        w.row(&[Some("a\"b"), Some("3"), Some("1e+20"), Some("-Infinity")])
            .unwrap();
        w.row(&[None, None, None, None]).unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "{\"s\":\"a\\\"b\",\"i\":3,\"f\":1e+20,\"g\":{\"$float\":\"-inf\"}}\n\
             {\"s\":null,\"i\":null,\"f\":null,\"g\":null}\n"
        );
    }
}
