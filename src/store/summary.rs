//! `tko_perf_summary` (migration 006): per kernel, test, subdir and perf
//! key, the count and the exact sums of the finite perf values and of their
//! squares ([`Moments`]), so `tko compare` of two kernels reads a few
//! thousand rows instead of every perf row of both kernels. Kept exact in
//! the transaction that changes the detail rows: a load or reload
//! subtracts the moments of the job's old perf rows before they go
//! ([`Delta::collect_pg`] / [`Delta::collect_lite`] with sign −1, read
//! from the tables) and adds those of its new rows as it writes them
//! (a [`Tee`] around the rows being written), a delete or prune subtracts; [`Delta`] then
//! updates only the rows it touches. The sums are exact, so subtracting leaves no drift and
//! the summary equals what the detail rows give, bit for bit. On
//! PostgreSQL, writers of the summary queue on one transaction-level
//! advisory lock taken last (after machines, kernels and jobs), so two
//! loaders never create the same row twice and never deadlock on it.

use crate::query::{ExactSum, Moments};
use crate::table::{
    DiagnosticRow, InformationRow, IterationAttributeRow, IterationResultRow, JobKeyvalRow,
    RowSink, TestAttributeRow, TestRow,
};
use postgres::Transaction;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// Advisory lock of the summary's writers (PostgreSQL).
const LOCK: i64 = 7_235_006;

/// (kernel_idx, test, subdir, perf key).
type Key = (i32, Option<String>, Option<String>, String);

/// Changes to the summary, per row.
#[derive(Debug, Default)]
pub(crate) struct Delta(HashMap<Key, Moments>);

/// The perf values of some jobs' tests (PostgreSQL: one array per row).
const PG_VALUES: &str = "SELECT t.kernel_idx, t.test, t.subdir, r.attribute, array_agg(r.value) \
     FROM tko_tests t JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
     WHERE r.attribute IS NOT NULL AND r.value IS NOT NULL AND t.job_idx = ANY($1) \
     GROUP BY 1, 2, 3, 4";

/// The same over the whole warehouse (the migration's rebuild).
const PG_ALL_VALUES: &str = "SELECT t.kernel_idx, t.test, t.subdir, r.attribute, \
     array_agg(r.value) FROM tko_tests t JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
     WHERE r.attribute IS NOT NULL AND r.value IS NOT NULL GROUP BY 1, 2, 3, 4";

const LITE_VALUES: &str = "SELECT t.kernel_idx, t.test, t.subdir, r.attribute, r.value \
     FROM tko_tests t JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
     WHERE r.attribute IS NOT NULL AND r.value IS NOT NULL AND t.job_idx = ?1";

const LITE_ALL_VALUES: &str = "SELECT t.kernel_idx, t.test, t.subdir, r.attribute, r.value \
     FROM tko_tests t JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
     WHERE r.attribute IS NOT NULL AND r.value IS NOT NULL";

impl Delta {
    fn push(&mut self, key: Key, values: &[f64], sign: i64) {
        let mut m = Moments::default();
        // Finite values only, -0 as 0: what `tko compare` reads.
        for v in values.iter().filter(|v| v.is_finite()) {
            m.add(v + 0.0);
        }
        if m.n > 0 {
            self.0.entry(key).or_default().merge(&m, sign);
        }
    }

    /// Adds another delta's changes.
    pub(crate) fn absorb(&mut self, other: Delta) {
        for (k, m) in other.0 {
            self.0.entry(k).or_default().merge(&m, 1);
        }
    }

    /// Adds (`sign` 1) or subtracts (−1) the perf values of jobs `job_ids`
    /// as they are now in the transaction (PostgreSQL).
    pub(crate) fn collect_pg(
        &mut self,
        tx: &mut Transaction<'_>,
        job_ids: &[i32],
        sign: i64,
    ) -> Result<(), postgres::Error> {
        if job_ids.is_empty() {
            return Ok(());
        }
        for r in tx.query(PG_VALUES, &[&job_ids])? {
            let v: Vec<f64> = r.get(4);
            self.push((r.get(0), r.get(1), r.get(2), r.get(3)), &v, sign);
        }
        Ok(())
    }

    /// [`Delta::collect_pg`] on SQLite.
    pub(crate) fn collect_lite(
        &mut self,
        c: &Connection,
        job_idx: i32,
        sign: i64,
    ) -> rusqlite::Result<()> {
        let mut s = c.prepare_cached(LITE_VALUES)?;
        let mut rows = s.query([job_idx])?;
        while let Some(r) = rows.next()? {
            let v: f64 = r.get(4)?;
            self.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), &[v], sign);
        }
        Ok(())
    }

    /// Writes the changes (PostgreSQL): rows whose count drops to 0 go.
    pub(crate) fn apply_pg(self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
        let mut kernels: Vec<i32> = self.0.keys().map(|k| k.0).collect();
        kernels.sort_unstable();
        kernels.dedup();
        let mut tests: Vec<Option<&str>> = self.0.keys().map(|k| k.1.as_deref()).collect();
        tests.sort_unstable();
        tests.dedup();
        let null_test = tests.first().is_some_and(Option::is_none);
        let tests: Vec<&str> = tests.into_iter().flatten().collect();
        let mut now: HashMap<Key, (i64, Moments)> = HashMap::new();
        for r in tx.query(
            "SELECT id, kernel_idx, test, subdir, attribute, n, sum, sumsq \
             FROM tko_perf_summary WHERE kernel_idx = ANY($1) \
                AND (test = ANY($2) OR ($3 AND test IS NULL))",
            &[&kernels, &tests, &null_test],
        )? {
            let key = (r.get(1), r.get(2), r.get(3), r.get(4));
            if self.0.contains_key(&key) {
                now.insert(key, (r.get(0), read(r.get(5), r.get(6), r.get(7))));
            }
        }
        // Rows that stay are updated in place (heap-only updates: the
        // indexed columns do not change, so pages prune themselves).
        let mut gone: Vec<i64> = Vec::new();
        let (mut ids, mut ns, mut sums, mut sumsqs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rows = Rows::default();
        for (key, d) in self.0 {
            match now.remove(&key) {
                Some((id, mut m)) => {
                    m.merge(&d, 1);
                    if m.n > 0 {
                        ids.push(id);
                        ns.push(m.n);
                        sums.push(m.sum.to_text());
                        sumsqs.push(m.sumsq.to_text());
                    } else {
                        gone.push(id);
                    }
                }
                None if d.n > 0 => rows.push(key, &d),
                None => {}
            }
        }
        if !gone.is_empty() {
            tx.execute("DELETE FROM tko_perf_summary WHERE id = ANY($1)", &[&gone])?;
        }
        if !ids.is_empty() {
            tx.execute(
                "UPDATE tko_perf_summary ps SET n = u.n, sum = u.sum, sumsq = u.sumsq \
                 FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[]) AS u(id, n, sum, sumsq) \
                 WHERE ps.id = u.id",
                &[&ids, &ns, &sums, &sumsqs],
            )?;
        }
        rows.insert_pg(tx)
    }

    /// [`Delta::apply_pg`] on SQLite (the caller's transaction is the only
    /// writer).
    pub(crate) fn apply_lite(self, c: &Connection) -> rusqlite::Result<()> {
        for (key, d) in self.0 {
            let (k, test, subdir, attr) = &key;
            let found: Option<(i64, i64, String, String)> = c
                .prepare_cached(
                    "SELECT id, n, sum, sumsq FROM tko_perf_summary WHERE kernel_idx = ?1 \
                     AND test IS ?2 AND subdir IS ?3 AND attribute = ?4",
                )?
                .query_row(params![k, test, subdir, attr], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let mut m = found
                .as_ref()
                .map_or_else(Moments::default, |(_, n, s, q)| read(*n, s, q));
            m.merge(&d, 1);
            match (found, m.n > 0) {
                (Some((id, ..)), true) => {
                    c.prepare_cached(
                        "UPDATE tko_perf_summary SET n = ?2, sum = ?3, sumsq = ?4 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        m.n,
                        m.sum.to_text(),
                        m.sumsq.to_text()
                    ])?;
                }
                (Some((id, ..)), false) => {
                    c.prepare_cached("DELETE FROM tko_perf_summary WHERE id = ?1")?
                        .execute([id])?;
                }
                (None, true) => {
                    c.prepare_cached(
                        "INSERT INTO tko_perf_summary \
                            (kernel_idx, test, subdir, attribute, n, sum, sumsq) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        k,
                        test,
                        subdir,
                        attr,
                        m.n,
                        m.sum.to_text(),
                        m.sumsq.to_text()
                    ])?;
                }
                (None, false) => {}
            }
        }
        Ok(())
    }
}

/// Reads a stored row; an unreadable sum counts as 0 (cannot happen: only
/// [`ExactSum::to_text`] writes them).
fn read(n: i64, sum: &str, sumsq: &str) -> Moments {
    Moments {
        n,
        sum: ExactSum::parse(sum).unwrap_or_default(),
        sumsq: ExactSum::parse(sumsq).unwrap_or_default(),
    }
}

/// Summary rows to insert, column by column.
#[derive(Default)]
struct Rows {
    kernel: Vec<i32>,
    test: Vec<Option<String>>,
    subdir: Vec<Option<String>>,
    attr: Vec<String>,
    n: Vec<i64>,
    sum: Vec<String>,
    sumsq: Vec<String>,
}

impl Rows {
    fn push(&mut self, key: Key, m: &Moments) {
        self.kernel.push(key.0);
        self.test.push(key.1);
        self.subdir.push(key.2);
        self.attr.push(key.3);
        self.n.push(m.n);
        self.sum.push(m.sum.to_text());
        self.sumsq.push(m.sumsq.to_text());
    }

    fn insert_pg(&self, tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
        if self.n.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO tko_perf_summary (kernel_idx, test, subdir, attribute, n, sum, sumsq) \
             SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                $6::text[], $7::text[])",
            &[
                &self.kernel,
                &self.test,
                &self.subdir,
                &self.attr,
                &self.n,
                &self.sum,
                &self.sumsq,
            ],
        )
        .map(drop)
    }
}

/// Fills an empty `tko_perf_summary` from the detail rows (migration 006
/// on an existing PostgreSQL warehouse, inside the migration's
/// transaction).
pub(crate) fn rebuild_pg(tx: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    let mut rows = Rows::default();
    for r in tx.query(PG_ALL_VALUES, &[])? {
        let mut d = Delta::default();
        let v: Vec<f64> = r.get(4);
        let key: Key = (r.get(0), r.get(1), r.get(2), r.get(3));
        d.push(key.clone(), &v, 1);
        if let Some(m) = d.0.remove(&key) {
            rows.push(key, &m);
        }
    }
    rows.insert_pg(tx)
}

/// [`rebuild_pg`] on SQLite.
pub(crate) fn rebuild_lite(c: &Connection) -> rusqlite::Result<()> {
    let mut d = Delta::default();
    {
        let mut s = c.prepare(LITE_ALL_VALUES)?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let v: f64 = r.get(4)?;
            d.push((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), &[v], 1);
        }
    }
    d.apply_lite(c)
}

/// A [`RowSink`] that passes every row on to `inner` and adds the perf
/// values among them to a [`Delta`], so new rows' moments come from the
/// rows as they are written (nothing is read back). A test's rows follow
/// its `tko_tests` row (`table::build_rows`), so values are summed per
/// test and perf key and merged into the delta when the next test starts.
pub(crate) struct Tee<'d, S> {
    /// Where the rows go.
    pub(crate) inner: S,
    delta: &'d mut Delta,
    /// The current test: id, kernel, name, subdir.
    test: Option<(i32, i32, String, Option<String>)>,
    /// Its moments per perf key.
    keys: HashMap<String, Moments>,
}

impl<'d, S> Tee<'d, S> {
    /// Rows to `inner`, perf moments to `delta`.
    pub(crate) fn new(inner: S, delta: &'d mut Delta) -> Self {
        Tee {
            inner,
            delta,
            test: None,
            keys: HashMap::new(),
        }
    }

    /// Merges the current test's moments into the delta; returns the rows.
    pub(crate) fn into_inner(mut self) -> S {
        self.flush();
        self.inner
    }

    fn flush(&mut self) {
        let Some((_, kernel, test, subdir)) = &self.test else {
            return;
        };
        for (key, m) in self.keys.drain() {
            let row = (*kernel, Some(test.clone()), subdir.clone(), key);
            self.delta.0.entry(row).or_default().merge(&m, 1);
        }
    }
}

impl<'a, S: RowSink<'a>> RowSink<'a> for Tee<'_, S> {
    fn test(&mut self, row: TestRow<'a>) {
        self.flush();
        self.test = Some((
            row.test_idx,
            row.kernel_idx,
            row.test.to_string(),
            row.subdir.as_deref().map(str::to_owned),
        ));
        self.inner.test(row);
    }
    fn test_attribute(&mut self, row: TestAttributeRow<'a>) {
        self.inner.test_attribute(row);
    }
    fn iteration_attribute(&mut self, row: IterationAttributeRow<'a>) {
        self.inner.iteration_attribute(row);
    }
    fn iteration_result(&mut self, row: IterationResultRow<'a>) {
        // Finite values only, -0 as 0: what `tko compare` reads.
        if let (Some(v), Some(t)) = (row.value, &self.test) {
            assert_eq!(t.0, row.test_idx, "perf rows follow their test row");
            if v.is_finite() {
                match self.keys.get_mut(row.attribute.as_ref()) {
                    Some(m) => m.add(v + 0.0),
                    None => {
                        let mut m = Moments::default();
                        m.add(v + 0.0);
                        self.keys.insert(row.attribute.to_string(), m);
                    }
                }
            }
        }
        self.inner.iteration_result(row);
    }
    fn job_keyval(&mut self, row: JobKeyvalRow<'a>) {
        self.inner.job_keyval(row);
    }
    fn diagnostic(&mut self, row: DiagnosticRow<'a>) {
        self.inner.diagnostic(row);
    }
    fn information(&mut self, row: InformationRow<'a>) {
        self.inner.information(row);
    }
}
