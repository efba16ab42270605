//! SQL planning: a [`Query`] (a [`Kind`] of row plus a [`Filter`]) becomes
//! one SELECT per [`Dialect`] over the TKO tables, with every column already
//! rendered as the text the output carries: timestamps as `YYYY-MM-DD
//! HH:MM:SS`, perf values as PostgreSQL floats (NaN as NULL, `-0` as `0`),
//! rows ordered by job tag in byte order and then by test id. The plan also
//! names and types the output columns. Planning is pure: no connection, no
//! I/O; [`super::rows`] runs the plans.

use super::filter::{glob_literal, glob_to_like, glob_to_sqlite, time_text, Filter};
use super::Error;
use jiff::civil::DateTime;
use std::fmt::Write as _;

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
    /// One row per parser diagnostic (`tko_diagnostics`).
    Diagnostics,
}

impl Kind {
    /// Every kind, in documentation order.
    pub const ALL: [Kind; 7] = [
        Kind::Jobs,
        Kind::Tests,
        Kind::Attributes,
        Kind::Iterations,
        Kind::Perf,
        Kind::Keyvals,
        Kind::Diagnostics,
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
            Kind::Diagnostics => "diagnostics",
        }
    }
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

/// An export: what, which rows, and (for perf) whether to pivot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Row kind.
    pub kind: Kind,
    /// Row filter.
    pub filter: Filter,
    /// `perf` only: one row per test iteration, one column per perf key.
    pub wide: bool,
    /// `tests` only: newest first (by finished time, unfinished last, then
    /// job tag and test id descending) instead of job tag order.
    pub newest_first: bool,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Long `perf` only: rows in no particular order, so the server skips
    /// the sort (for aggregations that do not depend on row order, such as
    /// `tko compare`'s).
    pub unordered: bool,
    /// `tests` only: also [`INFORMATION_COLUMNS`] (the test's last
    /// information message and its time, and the job's finished time), for
    /// `tko summary`.
    pub information: bool,
    /// Skip this many rows first (paging; with `limit`).
    pub offset: Option<u64>,
    /// `tests` only: the same columns, but only `job_tag`, `machine`,
    /// `test`, `subdir`, `status` and `finished_time` filled (the others
    /// NULL): what `tko compare` reads, for a cheaper statement.
    pub brief: bool,
}

impl Query {
    /// A long-form export of `kind`.
    pub fn new(kind: Kind, filter: Filter) -> Query {
        Query {
            kind,
            filter,
            wide: false,
            newest_first: false,
            limit: None,
            unordered: false,
            information: false,
            offset: None,
            brief: false,
        }
    }
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
pub(super) struct Sql {
    pub(super) dialect: Dialect,
    pub(super) text: String,
    pub(super) params: Vec<String>,
    /// PostgreSQL values as `$n` parameters (for a prepared statement,
    /// [`super::Warehouse::rows_prepared`]) instead of literals.
    bound: bool,
}

impl Sql {
    pub(super) fn new(dialect: Dialect) -> Sql {
        Sql {
            dialect,
            text: String::new(),
            params: Vec::new(),
            bound: false,
        }
    }

    /// A statement whose values are parameters on both stores, so its text
    /// depends only on its shape and the server can keep its plan.
    pub(super) fn bound(dialect: Dialect) -> Sql {
        Sql {
            bound: true,
            ..Sql::new(dialect)
        }
    }

    /// Appends an integer value (a parameter in a bound statement).
    pub(super) fn int(&mut self, v: i64) -> Result<&mut Sql, Error> {
        if !self.bound {
            let _ = write!(self.text, "{v}");
            return Ok(self);
        }
        match self.dialect {
            Dialect::Sqlite => {
                self.push("CAST(");
                self.lit(&v.to_string())?;
                self.push(" AS INTEGER)");
            }
            Dialect::Postgres => {
                self.lit(&v.to_string())?;
                self.push("::bigint");
            }
        }
        Ok(self)
    }

    pub(super) fn push(&mut self, s: &str) -> &mut Sql {
        self.text.push_str(s);
        self
    }

    /// Appends a string value. SQLite: a bound parameter. PostgreSQL: the
    /// statement runs inside `COPY (...) TO STDOUT`, which cannot take
    /// parameters, so the value is written as an escape-string literal
    /// (`E'...'`, backslashes and single quotes doubled — safe whatever
    /// `standard_conforming_strings` says); values are UTF-8 Rust strings
    /// and a NUL (which PostgreSQL text cannot hold) is rejected. A
    /// [`Sql::bound`] statement takes `$n::text` parameters on PostgreSQL.
    pub(super) fn lit(&mut self, v: &str) -> Result<&mut Sql, Error> {
        match self.dialect {
            Dialect::Postgres if self.bound => {
                pg_literal(v)?;
                self.params.push(v.to_owned());
                let n = self.params.len();
                let _ = write!(self.text, "${n}::text");
            }
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
    /// Parameters: SQLite's (`?1`, `?2`, …), or PostgreSQL's (`$1`, …) of a
    /// bound statement; otherwise empty for PostgreSQL (values are literals).
    pub params: Vec<String>,
    /// The statement's columns (the output columns unless [`Plan::pivot`]).
    pub columns: Vec<Column>,
    /// A wide perf export: how the long rows become wide ones.
    pub pivot: Option<Pivot>,
}

impl Plan {
    /// The columns the output carries.
    pub fn output_columns(&self) -> Vec<Column> {
        match &self.pivot {
            Some(p) => p.columns.clone(),
            None => self.columns.clone(),
        }
    }
}

/// Fixed leading columns of `perf --wide`.
pub const WIDE_FIXED: [&str; 9] = [
    "job_tag",
    "label",
    "machine",
    "kernel",
    "test",
    "subdir",
    "status",
    "finished_time",
    "iteration",
];

/// The prefix that keeps a perf key's column name unique in `perf --wide`.
pub const PERF_PREFIX: &str = "perf:";

/// The column name of perf key `key` in `perf --wide`: the key itself,
/// or `perf:KEY` when the key equals a fixed column name ([`WIDE_FIXED`])
/// or itself starts with `perf:`. Keys are distinct, so names are unique.
pub fn wide_column_name(key: &str) -> String {
    if WIDE_FIXED.contains(&key) || key.starts_with(PERF_PREFIX) {
        format!("{PERF_PREFIX}{key}")
    } else {
        key.to_owned()
    }
}

/// How a wide perf export pivots its long rows: statement rows are
/// `WIDE_FIXED[..8], iteration, key, value, test_idx`, ordered by job tag,
/// test id and iteration; each run of rows with one test id and iteration
/// becomes one output row with a column per key (in `keys` order).
#[derive(Debug, Clone)]
pub struct Pivot {
    /// The perf keys, in column order (byte order).
    pub keys: Vec<String>,
    /// Output columns: the fixed ones, then one per key.
    pub columns: Vec<Column>,
}

impl Pivot {
    fn new(keys: &[String]) -> Pivot {
        let columns = WIDE_FIXED
            .iter()
            .map(|n| {
                let ty = if *n == "iteration" {
                    ColType::Int
                } else {
                    ColType::Text
                };
                col(n, ty)
            })
            .chain(
                keys.iter()
                    .map(|k| col(&wide_column_name(k), ColType::Float)),
            )
            .collect();
        Pivot {
            keys: keys.to_vec(),
            columns,
        }
    }
}

pub(super) fn col(name: &str, ty: ColType) -> Column {
    Column {
        name: name.to_owned(),
        ty,
    }
}

/// Dialect-specific expressions.
pub(super) fn ts(d: Dialect, c: &str) -> String {
    match d {
        Dialect::Postgres => format!("to_char({c}, 'YYYY-MM-DD HH24:MI:SS')"),
        Dialect::Sqlite => c.to_owned(),
    }
}

/// A test's finished minus started time in whole seconds (`t` in scope).
pub(super) fn duration(d: Dialect) -> &'static str {
    match d {
        Dialect::Postgres => "EXTRACT(EPOCH FROM t.finished_time - t.started_time)::bigint",
        Dialect::Sqlite => {
            "CAST(strftime('%s', t.finished_time) AS INTEGER) \
             - CAST(strftime('%s', t.started_time) AS INTEGER)"
        }
    }
}

pub(super) fn float(d: Dialect, c: &str) -> String {
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

/// ` ORDER BY` of test runs newest first: by finished time (unfinished
/// last), then job tag and test id, descending. Shared by the newest-first
/// `tests` export (history, flakiness) and the perf series.
pub(super) fn newest_tests_first(d: Dialect) -> String {
    format!(
        " ORDER BY t.finished_time IS NULL, t.finished_time DESC, {} DESC, t.test_idx DESC",
        coll(d, "j.tag")
    )
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

/// Columns a `tests` query with [`Query::information`] adds after
/// [`TEST_COLUMNS`].
pub const INFORMATION_COLUMNS: [&str; 3] = ["information", "information_time", "job_finished_time"];

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
pub(super) fn glob_cond(q: &mut Sql, column: &str, glob: &str) -> Result<(), Error> {
    if let Some(value) = glob_literal(glob) {
        q.push(" AND ").push(column).push(" = ");
        q.lit(&value)?;
        return Ok(());
    }
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

fn time_cond(q: &mut Sql, column: &str, op: &str, t: &DateTime) -> Result<(), Error> {
    q.push(" AND ").push(column).push(op);
    q.lit(&time_text(*t))?;
    if q.dialect == Dialect::Postgres {
        q.push("::timestamp");
    }
    Ok(())
}

/// Appends the `--since`/`--until` window on `column`.
fn time_window(q: &mut Sql, f: &Filter, column: &str) -> Result<(), Error> {
    if let Some(t) = &f.since {
        time_cond(q, column, " >= ", t)?;
    }
    if let Some(t) = &f.until {
        time_cond(q, column, " <= ", t)?;
    }
    Ok(())
}

/// Conditions on tests (`t`, `k`, `s` in scope).
pub(super) fn test_conds(q: &mut Sql, f: &Filter, with_time: bool) -> Result<(), Error> {
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
        time_window(q, f, "t.finished_time")?;
    }
    Ok(())
}

/// Conditions on jobs (`j`, `m` in scope).
pub(super) fn job_conds(q: &mut Sql, f: &Filter, with_time: bool) -> Result<(), Error> {
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
        time_window(q, f, "j.finished_time")?;
    }
    Ok(())
}

/// For job-level kinds: keep jobs with at least one test matching the
/// test filters (when there are any).
pub(super) fn job_test_exists(q: &mut Sql, f: &Filter) -> Result<(), Error> {
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
/// wide perf export (see [`super::Warehouse::export`], which looks them up first).
pub fn plan(query: &Query, d: Dialect, perf_keys: &[String]) -> Result<Plan, Error> {
    let f = &query.filter;
    let mut q = Sql::new(d);
    let mut columns: Vec<Column>;
    let mut pivot = None;
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
        Kind::Diagnostics => {
            columns = vec![
                col("job_tag", ColType::Text),
                col("file", ColType::Text),
                col("line", ColType::Int),
                col("severity", ColType::Text),
                col("message", ColType::Text),
            ];
            q.push(
                "SELECT j.tag, dg.file, dg.line, dg.severity, dg.message \
                 FROM tko_diagnostics dg JOIN tko_jobs j ON j.job_idx = dg.job_idx \
                 JOIN tko_machines m ON m.machine_idx = j.machine_idx WHERE true",
            );
            job_conds(&mut q, f, true)?;
            job_test_exists(&mut q, f)?;
            // No id column: a total order on the values, alike on both
            // stores (NULLs sort differently, hence COALESCE).
            q.push(&format!(
                " ORDER BY {}, {}, COALESCE(dg.line, 0), {}, {}",
                coll(d, "j.tag"),
                coll(d, "COALESCE(dg.file, '')"),
                coll(d, "dg.severity"),
                coll(d, "COALESCE(dg.message, '')")
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
            let (info_select, info_join) = if query.information {
                columns.extend(INFORMATION_COLUMNS.iter().map(|n| col(n, ColType::Text)));
                (
                    format!(
                        ", ti.message, {}, {}",
                        ts(d, "ti.info_time"),
                        ts(d, "j.finished_time")
                    ),
                    " LEFT JOIN tko_test_information ti ON ti.test_idx = t.test_idx",
                )
            } else {
                (String::new(), "")
            };
            let duration = duration(d);
            if query.brief {
                q.push(&format!(
                    "SELECT j.tag, NULL, NULL, NULL, m.hostname, NULL, NULL, NULL, t.test, \
                     t.subdir, s.word, NULL, NULL, {}, NULL{info_select}{TEST_JOINS}{info_join} \
                     WHERE true",
                    ts(d, "t.finished_time"),
                ));
            } else {
                q.push(&format!(
                    "SELECT j.tag, j.afe_job_id, j.label, j.username, m.hostname, \
                     m.machine_group, k.base, k.kernel_hash, t.test, t.subdir, s.word, t.reason, \
                     {}, {}, {duration}{info_select}{TEST_JOINS}{info_join} WHERE true",
                    ts(d, "t.started_time"),
                    ts(d, "t.finished_time"),
                ));
            }
            job_conds(&mut q, f, false)?;
            test_conds(&mut q, f, true)?;
            if query.newest_first {
                q.push(&newest_tests_first(d));
            } else {
                q.push(&format!(" ORDER BY {}, t.test_idx", coll(d, "j.tag")));
            }
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
        Kind::Perf => {
            // Wide: the same long rows plus the test id, pivoted while they
            // stream (see [`Pivot`]); no per-key SQL, so no limit on keys.
            columns = PREFIX
                .iter()
                .map(|n| col(n, ColType::Text))
                .chain([
                    col("iteration", ColType::Int),
                    col("key", ColType::Text),
                    col("value", ColType::Float),
                ])
                .chain(query.wide.then(|| col("test_idx", ColType::Int)))
                .collect();
            q.push(&prefix_select(d));
            q.push(&format!(
                ", r.iteration, r.attribute, {}{}{TEST_JOINS} \
                 JOIN tko_iteration_result r ON r.test_idx = t.test_idx WHERE true",
                float(d, "r.value"),
                if query.wide { ", t.test_idx" } else { "" }
            ));
            job_conds(&mut q, f, false)?;
            test_conds(&mut q, f, true)?;
            if !query.unordered {
                q.push(&format!(
                    " ORDER BY {}, t.test_idx, r.iteration, {}",
                    coll(d, "j.tag"),
                    coll(d, "r.attribute")
                ));
            }
            if query.wide {
                pivot = Some(Pivot::new(perf_keys));
            }
        }
    }
    if query.unordered && (query.kind != Kind::Perf || query.wide) {
        return Err(Error::Unsupported(format!(
            "unordered rows are for a long perf export only, not {}{}",
            query.kind.name(),
            if query.wide { " --wide" } else { "" }
        )));
    }
    if query.brief && query.kind != Kind::Tests {
        return Err(Error::Unsupported(format!(
            "brief rows are for tests only, not {}",
            query.kind.name()
        )));
    }
    if query.newest_first && query.kind != Kind::Tests {
        return Err(Error::Unsupported(format!(
            "newest-first order is for tests only, not {}",
            query.kind.name()
        )));
    }
    if let Some(n) = query.limit {
        if pivot.is_some() {
            return Err(Error::Unsupported(
                "a row limit does not apply to a wide perf export".into(),
            ));
        }
        let _ = write!(q.text, " LIMIT {n}");
    }
    if let Some(n) = query.offset {
        if query.limit.is_none() || pivot.is_some() {
            return Err(Error::Unsupported(
                "a row offset needs a limit and does not apply to a wide perf export".into(),
            ));
        }
        let _ = write!(q.text, " OFFSET {n}");
    }
    Ok(Plan {
        sql: q.text,
        params: q.params,
        columns,
        pivot,
    })
}

/// What the third field of a group of perf values holds
/// ([`super::Warehouse::perf_values`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerfGroup {
    /// Nothing (NULL): groups are test, subdir and key.
    Nothing,
    /// The machine's hostname.
    Machine,
    /// The test's kernel base.
    KernelBase,
}

impl PerfGroup {
    /// The column of [`PREFIX`] that holds it, if any.
    pub(crate) fn column(self) -> Option<&'static str> {
        match self {
            PerfGroup::Nothing => None,
            PerfGroup::Machine => Some("machine"),
            PerfGroup::KernelBase => Some("kernel"),
        }
    }
}

/// The PostgreSQL statement of [`super::Warehouse::perf_values`]: per
/// test, subdir, `group` (or NULL) and perf key, the finite perf values
/// of the tests `filter` keeps, as one `float8[]` (no order).
pub(crate) fn perf_values_pg(filter: &Filter, group: PerfGroup) -> Result<String, Error> {
    let mut q = Sql::new(Dialect::Postgres);
    q.push(&format!(
        "SELECT t.test, t.subdir, {}, r.attribute, array_agg(r.value){TEST_JOINS} \
         JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
         WHERE r.attribute IS NOT NULL \
            AND r.value NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)",
        match group {
            PerfGroup::Nothing => "NULL::text",
            PerfGroup::Machine => "m.hostname",
            PerfGroup::KernelBase => "k.base",
        }
    ));
    job_conds(&mut q, filter, false)?;
    test_conds(&mut q, filter, true)?;
    q.push(" GROUP BY 1, 2, 3, 4");
    Ok(q.text)
}

/// The distinct perf keys a wide perf export pivots into columns.
pub(crate) fn perf_keys_plan(filter: &Filter, d: Dialect) -> Result<Plan, Error> {
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
        pivot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped_and_nul_rejected() {
        assert_eq!(
            pg_literal("it's a \\ test").unwrap(),
            "E'it''s a \\\\ test'"
        );
        assert!(pg_literal("a\0b").is_err());
    }

    #[test]
    fn wide_names_are_unique() {
        let keys: Vec<String> = ["x", "job_tag", "iteration", "perf:x", "perf:job_tag"]
            .iter()
            .map(|k| (*k).to_owned())
            .collect();
        let p = Pivot::new(&keys);
        let names: Vec<&str> = p.columns[WIDE_FIXED.len()..]
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "x",
                "perf:job_tag",
                "perf:iteration",
                "perf:perf:x",
                "perf:perf:job_tag"
            ]
        );
        let mut all: Vec<&str> = p.columns.iter().map(|c| c.name.as_str()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), p.columns.len());
    }

    #[test]
    fn limits_and_order_are_planned_per_kind() {
        let q = Query {
            newest_first: true,
            limit: Some(3),
            ..Query::new(Kind::Tests, Filter::default())
        };
        for d in [Dialect::Postgres, Dialect::Sqlite] {
            let p = plan(&q, d, &[]).unwrap();
            assert!(p.sql.ends_with(" LIMIT 3"), "{}", p.sql);
            assert!(p.sql.contains("t.finished_time DESC"), "{}", p.sql);
        }
        let q = Query {
            newest_first: true,
            ..Query::new(Kind::Jobs, Filter::default())
        };
        assert!(matches!(
            plan(&q, Dialect::Sqlite, &[]),
            Err(Error::Unsupported(_))
        ));
        let q = Query {
            unordered: true,
            ..Query::new(Kind::Perf, Filter::default())
        };
        for d in [Dialect::Postgres, Dialect::Sqlite] {
            let p = plan(&q, d, &[]).unwrap();
            assert!(!p.sql.contains("ORDER BY"), "{}", p.sql);
        }
        let q = Query {
            unordered: true,
            ..Query::new(Kind::Tests, Filter::default())
        };
        assert!(matches!(
            plan(&q, Dialect::Postgres, &[]),
            Err(Error::Unsupported(_))
        ));
        // Brief tests: the same columns, the unread ones NULL.
        let q = Query {
            brief: true,
            ..Query::new(Kind::Tests, Filter::default())
        };
        for d in [Dialect::Postgres, Dialect::Sqlite] {
            let p = plan(&q, d, &[]).unwrap();
            assert_eq!(p.columns.len(), TEST_COLUMNS.len());
            assert!(!p.sql.contains("t.reason"), "{}", p.sql);
        }
        let q = Query {
            brief: true,
            ..Query::new(Kind::Perf, Filter::default())
        };
        assert!(matches!(
            plan(&q, Dialect::Sqlite, &[]),
            Err(Error::Unsupported(_))
        ));
    }
}
