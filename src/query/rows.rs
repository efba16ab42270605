//! Streaming execution over both stores. A [`Warehouse`] is opened by URL
//! (either backend, without touching the loader's
//! [`Store`](crate::store::Store) trait) and runs [`Plan`]s: PostgreSQL
//! streams the rows with `COPY (...) TO STDOUT` (CSV passes straight
//! through to a [`Sink`] that writes CSV exactly as PostgreSQL does; any
//! other sink gets the text format decoded row by row), SQLite steps a
//! cursor and formats floats as PostgreSQL would ([`pg_float`]). Neither
//! collects rows, so memory does not grow with the result. A sink sees the
//! columns only once the statement has started returning rows (or finished
//! without any), so a query that fails writes no header.

use super::float::pg_float;
use super::moments::Moments;
use super::plan::{
    perf_keys_plan, plan, ColType, Column, Dialect, Kind, PerfGroup, Pivot, Plan, Query, Sql,
};
use super::{Error, Filter};
use crate::store;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::io::{BufRead, Write};

fn db<E: std::error::Error + Send + Sync + 'static>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Db {
        what,
        source: Box::new(e),
    }
}

/// Receives an export: the columns once, then the rows.
pub trait Sink {
    /// Called once: before the first row, or after the statement finished
    /// for an empty result (never when the statement fails first).
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

/// What [`Warehouse::perf_values`] calls per group: (test, subdir,
/// machine or kernel base ([`PerfGroup`]), perf key, values).
pub type PerfValuesFn<'a> = dyn FnMut(Option<&str>, Option<&str>, Option<&str>, &str, &[f64]) + 'a;

/// What [`Warehouse::perf_moments`] calls per group: (test, subdir,
/// machine, perf key, moments).
pub type PerfMomentsFn<'a> =
    dyn FnMut(Option<&str>, Option<&str>, Option<&str>, &str, &Moments) + 'a;

/// A warehouse opened for reading: either backend, by URL (as
/// [`store::open`]).
pub enum Warehouse {
    /// PostgreSQL.
    Postgres(Box<PgStore>),
    /// SQLite.
    Sqlite(Box<SqliteStore>),
}

impl Warehouse {
    /// Opens an existing warehouse (`postgres://…`/`postgresql://…` or
    /// `sqlite:PATH`), never creating one: the one place read commands
    /// open the warehouse.
    /// PostgreSQL sessions get the settings the SQL relies on
    /// (`extra_float_digits = 1`) once, here, not before every statement.
    pub fn open(url: &str) -> Result<Warehouse, Error> {
        Ok(match store::open_existing(url)? {
            store::Opened::Postgres(mut s) => {
                s.client()
                    .batch_execute("SET extra_float_digits = 1")
                    .map_err(db("session settings"))?;
                Warehouse::Postgres(s)
            }
            store::Opened::Sqlite(s) => Warehouse::Sqlite(s),
        })
    }

    /// Opens an existing warehouse for a server that must never write:
    /// SQLite read-only ([`SqliteStore::open_read_only`]); PostgreSQL with
    /// `default_transaction_read_only = on` and `statement_timeout` set to
    /// `timeout_ms` for the session.
    pub fn open_read_only(url: &str, timeout_ms: u64) -> Result<Warehouse, Error> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            return Ok(Warehouse::Sqlite(Box::new(SqliteStore::open_read_only(
                path,
            )?)));
        }
        let mut wh = Warehouse::open(url)?;
        if let Warehouse::Postgres(pg) = &mut wh {
            pg.client()
                .batch_execute(&format!(
                    "SET default_transaction_read_only = on; \
                     SET statement_timeout = {timeout_ms}"
                ))
                .map_err(db("read-only session settings"))?;
        }
        Ok(wh)
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
    pub fn export(&mut self, query: &Query, sink: &mut dyn Sink) -> Result<u64, Error> {
        query.filter.validate()?;
        let d = self.dialect();
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
        let columns = p.output_columns();
        let mut out = Started {
            sink,
            columns: &columns,
            begun: false,
        };
        let passthrough =
            d == Dialect::Postgres && p.pivot.is_none() && out.sink.csv_passthrough().is_some();
        let n = match self {
            Warehouse::Postgres(pg) if passthrough => pg_copy_csv(pg, &p.sql, &mut out)?,
            wh => match &p.pivot {
                Some(pivot) => {
                    let mut wide = Wide::new(pivot);
                    wh.rows(&p, &mut |f| wide.push(f, &mut out))?;
                    wide.flush(&mut out)?;
                    wide.rows
                }
                None => {
                    let mut n = 0u64;
                    wh.rows(&p, &mut |f| {
                        n += 1;
                        out.row(f)
                    })?;
                    n
                }
            },
        };
        out.begin()?;
        out.sink.finish()?;
        Ok(n)
    }

    /// The finite perf values of the tests `filter` keeps, for
    /// aggregation: `each(test, subdir, group, key, values)`, `group` the
    /// machine or kernel base as [`PerfGroup`] says (else `None`), in no
    /// particular order and possibly several calls per group. PostgreSQL groups and sends them as binary arrays
    /// (no text to format and parse); SQLite streams the rows. A value is
    /// handed over as stored, `-0` as `0` (as the text export writes it).
    pub fn perf_values(
        &mut self,
        filter: &Filter,
        group: PerfGroup,
        each: &mut PerfValuesFn<'_>,
    ) -> Result<(), Error> {
        filter.validate()?;
        match self {
            Warehouse::Postgres(pg) => {
                let sql = super::plan::perf_values_pg(filter, group)?;
                // On a 20,000-job warehouse JIT compiling this grouped pass
                // took 0.8 s of its 2.8 s and saved nothing; and the
                // planner, expecting ~100 times more groups than there are
                // (test, subdir, key repeat across jobs), sorts 3 M rows
                // where hashing them is a third faster.
                let c = pg.client();
                c.batch_execute("SET jit = off; SET enable_sort = off")
                    .map_err(db("session settings"))?;
                let rows = c.query(&sql, &[]);
                // In a failed transaction this fails too: the query's
                // error is the one to report.
                let reset = c.batch_execute("RESET enable_sort");
                let rows = rows.map_err(db("perf values"))?;
                reset.map_err(db("session settings"))?;
                for r in rows {
                    let mut v: Vec<f64> = r.get(4);
                    for x in &mut v {
                        *x += 0.0;
                    }
                    let key: String = r.get(3);
                    each(r.get(0), r.get(1), r.get(2), &key, &v);
                }
                Ok(())
            }
            wh => {
                let q = Query {
                    unordered: true,
                    ..Query::new(Kind::Perf, filter.clone())
                };
                let p = plan(&q, Dialect::Sqlite, &[])?;
                let at = |n: &str| {
                    p.columns
                        .iter()
                        .position(|c| c.name == n)
                        .expect("the perf plan has this column")
                };
                let [t, s, k, v] = [at("test"), at("subdir"), at("key"), at("value")];
                let g = group.column().map(at);
                wh.rows(&p, &mut |f| {
                    let value = f[v].and_then(|x| x.parse::<f64>().ok());
                    if let (Some(key), Some(x)) = (f[k], value.filter(|x| x.is_finite())) {
                        each(f[t], f[s], g.and_then(|g| f[g]), key, &[x]);
                    }
                    Ok(())
                })
            }
        }
    }

    /// The exact moments ([`Moments`]) of the finite perf values of the
    /// tests `filter` keeps, per test, subdir, machine (only when
    /// `by_machine`) and key, possibly several calls per group (merge
    /// them): from the per-kernel cache ([`super::perfcache`]) when it can
    /// answer, else from the detail rows ([`Warehouse::perf_values`]);
    /// the same bits either way, in any row order, on both stores.
    pub fn perf_moments(
        &mut self,
        filter: &Filter,
        by_machine: bool,
        each: &mut PerfMomentsFn<'_>,
    ) -> Result<(), Error> {
        filter.validate()?;
        if super::perfcache::answers(filter, by_machine) && self.cached_moments(filter, each)? {
            return Ok(());
        }
        let group = if by_machine {
            PerfGroup::Machine
        } else {
            PerfGroup::Nothing
        };
        self.perf_values(filter, group, &mut |t, s, m, k, v| {
            let mut one = Moments::default();
            v.iter().for_each(|&x| one.add(x));
            each(t, s, m, k, &one);
        })
    }

    /// The warehouse's schema version (0 when unknown).
    pub(super) fn schema_version(&mut self) -> Result<u32, Error> {
        let p = Plan {
            sql: "SELECT max(version) FROM tko_schema_version".into(),
            params: Vec::new(),
            columns: vec![Column {
                name: "version".into(),
                ty: ColType::Int,
            }],
            pivot: None,
        };
        let mut v = 0u32;
        self.rows(&p, &mut |f| {
            v = f[0].and_then(|x| x.parse().ok()).unwrap_or(0);
            Ok(())
        })?;
        Ok(v)
    }

    /// Runs statements without parameters or results (`BEGIN`, `COMMIT`).
    pub(super) fn batch(&mut self, sql: &str) -> Result<(), Error> {
        match self {
            Warehouse::Postgres(pg) => pg.client().batch_execute(sql).map_err(db("transaction")),
            Warehouse::Sqlite(lite) => lite
                .connection()
                .execute_batch(sql)
                .map_err(db("transaction")),
        }
    }

    /// Runs one statement that returns no rows (its values are literals on
    /// PostgreSQL, parameters on SQLite).
    pub(super) fn execute(&mut self, q: &Sql) -> Result<(), Error> {
        match self {
            Warehouse::Postgres(pg) => pg.client().batch_execute(&q.text).map_err(db("writing")),
            Warehouse::Sqlite(lite) => lite
                .connection()
                .execute(&q.text, rusqlite::params_from_iter(q.params.iter()))
                .map(drop)
                .map_err(db("writing")),
        }
    }

    /// Runs a plan and calls `each` with every row's fields as text.
    pub(super) fn rows(&mut self, p: &Plan, each: &mut RowFn<'_>) -> Result<(), Error> {
        match self {
            Warehouse::Postgres(pg) => pg_copy_text(pg, &p.sql, each),
            Warehouse::Sqlite(lite) => sqlite_rows(lite, p, each, false),
        }
    }

    /// As [`Warehouse::rows`], for a small result of a plan built with
    /// bound parameters that runs often (a server's pages): the statement
    /// is prepared once per connection and its plan kept. SQLite: the
    /// connection's statement cache. PostgreSQL: `PREPARE tko_<md5 of the
    /// text>` on first use in the session, then `EXECUTE` with the values
    /// as literals (no planning per request; text rows as `COPY` gives).
    pub(super) fn rows_prepared(&mut self, p: &Plan, each: &mut RowFn<'_>) -> Result<(), Error> {
        match self {
            Warehouse::Postgres(pg) => pg_execute(pg, p, each),
            Warehouse::Sqlite(lite) => sqlite_rows(lite, p, each, true),
        }
    }
}

/// A sink whose `begin` is called only when the first row arrives, or at
/// the end for an empty result: a statement that fails writes nothing.
struct Started<'a> {
    sink: &'a mut dyn Sink,
    columns: &'a [Column],
    begun: bool,
}

impl Started<'_> {
    fn begin(&mut self) -> Result<(), Error> {
        if !self.begun {
            self.begun = true;
            self.sink.begin(self.columns)?;
        }
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> Result<(), Error> {
        self.begin()?;
        Ok(self.sink.row(fields)?)
    }
}

/// The row being pivoted by a wide perf export (see [`Pivot`]).
struct Wide<'p> {
    at: HashMap<&'p str, usize>,
    /// (test_idx, iteration) of the current row.
    group: Option<(String, Option<String>)>,
    fixed: Vec<Option<String>>,
    values: Vec<Option<String>>,
    rows: u64,
}

/// Statement columns before `iteration` in a wide perf export.
const WIDE_PREFIX: usize = 8;

impl<'p> Wide<'p> {
    fn new(pivot: &'p Pivot) -> Wide<'p> {
        Wide {
            at: pivot
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect(),
            group: None,
            fixed: Vec::new(),
            values: vec![None; pivot.keys.len()],
            rows: 0,
        }
    }

    /// One long row: `prefix.., iteration, key, value, test_idx`.
    fn push(&mut self, f: &[Option<&str>], out: &mut Started<'_>) -> Result<(), Error> {
        let (iteration, key, value, test) = (
            f[WIDE_PREFIX],
            f[WIDE_PREFIX + 1],
            f[WIDE_PREFIX + 2],
            f[WIDE_PREFIX + 3].unwrap_or_default(),
        );
        let same = self
            .group
            .as_ref()
            .is_some_and(|(t, i)| t == test && i.as_deref() == iteration);
        if !same {
            self.flush(out)?;
            self.group = Some((test.to_owned(), iteration.map(str::to_owned)));
            self.fixed = f[..=WIDE_PREFIX]
                .iter()
                .map(|v| v.map(str::to_owned))
                .collect();
        }
        if let Some(i) = key.and_then(|k| self.at.get(k)) {
            if value.is_some() {
                self.values[*i] = value.map(str::to_owned);
            }
        }
        Ok(())
    }

    /// Writes the current row, if any.
    fn flush(&mut self, out: &mut Started<'_>) -> Result<(), Error> {
        if self.group.take().is_none() {
            return Ok(());
        }
        let fields: Vec<Option<&str>> = self
            .fixed
            .iter()
            .chain(&self.values)
            .map(Option::as_deref)
            .collect();
        out.row(&fields)?;
        self.rows += 1;
        self.values.iter_mut().for_each(|v| *v = None);
        Ok(())
    }
}

/// Receives one row's fields as text (`None` is NULL).
type RowFn<'a> = dyn FnMut(&[Option<&str>]) -> Result<(), Error> + 'a;

/// `COPY (sql) TO STDOUT (FORMAT csv)` straight into `out`; counts rows
/// (line ends outside quotes).
fn pg_copy_csv(pg: &mut PgStore, sql: &str, out: &mut Started<'_>) -> Result<u64, Error> {
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
        out.begin()?;
        out.sink
            .csv_passthrough()
            .expect("a passthrough sink")
            .write_all(buf)?;
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

/// `EXECUTE` of the prepared statement of `p` (prepared first when this
/// session has not yet), rows as text.
fn pg_execute(pg: &mut PgStore, p: &Plan, each: &mut RowFn<'_>) -> Result<(), Error> {
    use postgres::error::SqlState;
    use postgres::SimpleQueryMessage;
    let name = format!("tko_{:x}", md5::compute(p.sql.as_bytes()));
    let mut exec = format!("EXECUTE {name}");
    for (i, v) in p.params.iter().enumerate() {
        exec.push_str(if i == 0 { "(" } else { ", " });
        exec.push_str(&super::pg_literal(v)?);
    }
    if !p.params.is_empty() {
        exec.push(')');
    }
    let client = pg.client();
    let messages = match client.simple_query(&exec) {
        Err(e) if e.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME) => {
            client
                .batch_execute(&format!("PREPARE {name} AS {}", p.sql))
                .map_err(db("preparing a statement"))?;
            client.simple_query(&exec)
        }
        r => r,
    }
    .map_err(db("running a prepared statement"))?;
    let mut fields: Vec<Option<&str>> = Vec::new();
    for m in &messages {
        if let SimpleQueryMessage::Row(r) = m {
            fields.clear();
            fields.extend((0..r.len()).map(|i| r.get(i)));
            each(&fields)?;
        }
    }
    Ok(())
}

/// Steps an SQLite cursor; floats are formatted as PostgreSQL would.
fn sqlite_rows(
    lite: &mut SqliteStore,
    p: &Plan,
    each: &mut RowFn<'_>,
    cached: bool,
) -> Result<(), Error> {
    use rusqlite::types::ValueRef;
    let conn = lite.connection();
    let (mut kept, mut once);
    let stmt: &mut rusqlite::Statement<'_> = if cached {
        kept = conn
            .prepare_cached(&p.sql)
            .map_err(db("preparing the export"))?;
        &mut kept
    } else {
        once = conn.prepare(&p.sql).map_err(db("preparing the export"))?;
        &mut once
    };
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
