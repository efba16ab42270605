//! `tko compare`'s cache of exact perf moments per kernel base
//! (`tko_perf_cache`, migration 006). A comparison of two kernels reads a
//! few thousand cache rows instead of millions of perf rows. Nothing
//! builds the cache at load time: the first compare that selects a base
//! without cache rows computes them from the detail rows
//! ([`Warehouse::perf_values`]) and stores them, holding a `SHARE` lock
//! on `tko_tests` (PostgreSQL: other builds may run, no load can commit
//! between the read and the write; two builds of one base collide on the
//! marker row and the second falls back) or the write lock (SQLite,
//! `BEGIN IMMEDIATE`). Any later statement that inserts, deletes or updates tests
//! deletes the cache of their bases in its own transaction (the triggers
//! of migration 006), so a stale answer is never read. Cached reads run in
//! one snapshot that also checks every selected base is cached. When the
//! cache cannot answer (only kernel and test globs can narrow it, not by
//! machine), or cannot be built (a read-only connection or role, a lock
//! not granted within 10 s), the moments come from the detail rows: the
//! answer is the same exact moments either way.

use super::moments::{ExactSum, Moments};
use super::plan::{glob_cond, ColType, Column, Dialect, PerfGroup, Plan, Sql};
use super::rows::{PerfMomentsFn, Warehouse};
use super::{Error, Filter};
use std::collections::BTreeMap;

/// Test, subdir, perf key.
type Key = (Option<String>, Option<String>, String);

/// Rows of one multi-row `INSERT` into the cache.
const INSERT_ROWS: usize = 500;

/// Whether the cache can answer `filter`: kept per kernel base, test,
/// subdir and key, so a kernel glob must select and only a test glob may
/// narrow; never by machine.
pub(crate) fn answers(filter: &Filter, by_machine: bool) -> bool {
    !by_machine
        && filter.kernel.is_some()
        && filter.job.is_none()
        && filter.label.is_none()
        && filter.machine.is_none()
        && filter.status.is_empty()
        && filter.since.is_none()
        && filter.until.is_none()
}

fn plan(q: Sql, columns: &[(&str, ColType)]) -> Plan {
    Plan {
        sql: q.text,
        params: q.params,
        columns: columns
            .iter()
            .map(|(n, ty)| Column {
                name: (*n).to_owned(),
                ty: *ty,
            })
            .collect(),
        pivot: None,
    }
}

impl Warehouse {
    /// Calls `each` with the cached moments of the bases and tests
    /// `filter` selects (see [`answers`]), building what is missing;
    /// `Ok(false)` (nothing called) when the warehouse has no cache
    /// (schema before 6) or it cannot be built here.
    pub(super) fn cached_moments(
        &mut self,
        filter: &Filter,
        each: &mut PerfMomentsFn<'_>,
    ) -> Result<bool, Error> {
        if self.schema_version()? < 6 {
            return Ok(false);
        }
        let snapshot = match self.dialect() {
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            Dialect::Sqlite => "BEGIN",
        };
        let warm = self.in_transaction(snapshot, |wh| {
            if wh.uncached_bases(filter)?.is_empty() {
                wh.read_cache(filter).map(Some)
            } else {
                Ok(None)
            }
        })?;
        let rows = match warm {
            Some(rows) => rows,
            None => {
                let build = match self.dialect() {
                    Dialect::Postgres => {
                        "BEGIN; SET LOCAL lock_timeout = '10s'; \
                         LOCK TABLE tko_tests IN SHARE MODE"
                    }
                    Dialect::Sqlite => "BEGIN IMMEDIATE",
                };
                let built = self.in_transaction(build, |wh| {
                    let missing = wh.uncached_bases(filter)?;
                    wh.build_cache(filter, &missing)?;
                    wh.read_cache(filter)
                });
                match built {
                    Ok(rows) => rows,
                    // Read-only, no privilege, lock not granted: the
                    // caller reads the detail rows instead.
                    Err(_) => return Ok(false),
                }
            }
        };
        for ((test, subdir, key), m) in &rows {
            each(test.as_deref(), subdir.as_deref(), None, key, m);
        }
        Ok(true)
    }

    /// Runs `body` between `begin` and `COMMIT` (`ROLLBACK` when either
    /// fails: a `begin` that also locks can fail inside its transaction).
    fn in_transaction<T>(
        &mut self,
        begin: &str,
        body: impl FnOnce(&mut Warehouse) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match self.batch(begin).and_then(|()| body(self)) {
            Ok(v) => {
                self.batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                // The connection may be gone; the first error is the one
                // worth reporting.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The selected bases that have no cache (`kernel` glob of `filter`).
    fn uncached_bases(&mut self, filter: &Filter) -> Result<Vec<String>, Error> {
        let mut q = Sql::new(self.dialect());
        q.push(
            "SELECT DISTINCT k.base FROM tko_kernels k WHERE k.base IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM tko_perf_cache_kernels c WHERE c.base = k.base)",
        );
        if let Some(g) = &filter.kernel {
            glob_cond(&mut q, "k.base", g)?;
        }
        let mut out = Vec::new();
        self.rows(&plan(q, &[("base", ColType::Text)]), &mut |f| {
            out.extend(f[0].map(str::to_owned));
            Ok(())
        })?;
        Ok(out)
    }

    /// The cached moments `filter` selects, merged over its bases (the
    /// caller has checked, in the same snapshot or lock, that every
    /// selected base is cached).
    fn read_cache(&mut self, filter: &Filter) -> Result<BTreeMap<Key, Moments>, Error> {
        let mut q = Sql::new(self.dialect());
        q.push(
            "SELECT c.test, c.subdir, c.attribute, c.n, c.sum, c.sumsq \
             FROM tko_perf_cache c WHERE true",
        );
        if let Some(g) = &filter.kernel {
            glob_cond(&mut q, "c.base", g)?;
        }
        if let Some(g) = &filter.test {
            glob_cond(&mut q, "c.test", g)?;
        }
        let p = plan(
            q,
            &[
                ("test", ColType::Text),
                ("subdir", ColType::Text),
                ("key", ColType::Text),
                ("n", ColType::Int),
                ("sum", ColType::Text),
                ("sumsq", ColType::Text),
            ],
        );
        let mut out: BTreeMap<Key, Moments> = BTreeMap::new();
        self.rows(&p, &mut |f| {
            let bad = || {
                Error::Unsupported(format!(
                    "tko_perf_cache holds an unreadable row ({:?})",
                    f.iter().take(3).collect::<Vec<_>>()
                ))
            };
            let m = Moments {
                n: f[3].and_then(|n| n.parse().ok()).ok_or_else(bad)?,
                sum: ExactSum::parse(f[4].unwrap_or_default()).ok_or_else(bad)?,
                sumsq: ExactSum::parse(f[5].unwrap_or_default()).ok_or_else(bad)?,
            };
            let key = (
                f[0].map(str::to_owned),
                f[1].map(str::to_owned),
                f[2].ok_or_else(bad)?.to_owned(),
            );
            out.entry(key).or_default().merge(&m, 1);
            Ok(())
        })?;
        Ok(out)
    }

    /// Computes the moments of the `missing` bases (of those `filter`'s
    /// kernel glob selects) from the detail rows, in one pass grouped by
    /// base, and stores them with each base's marker row (inside the
    /// caller's locked transaction).
    fn build_cache(&mut self, filter: &Filter, missing: &[String]) -> Result<(), Error> {
        if missing.is_empty() {
            return Ok(());
        }
        let all = Filter {
            kernel: filter.kernel.clone(),
            ..Filter::default()
        };
        let mut moments: BTreeMap<(String, Key), Moments> = BTreeMap::new();
        self.perf_values(&all, PerfGroup::KernelBase, &mut |t, s, base, k, v| {
            let Some(base) = base.filter(|b| missing.iter().any(|m| m == b)) else {
                return;
            };
            let key = (t.map(str::to_owned), s.map(str::to_owned), k.to_owned());
            let m = moments.entry((base.to_owned(), key)).or_default();
            v.iter().for_each(|&x| m.add(x));
        })?;
        let d = self.dialect();
        let rows: Vec<_> = moments.into_iter().collect();
        for chunk in rows.chunks(INSERT_ROWS) {
            let mut q = Sql::new(d);
            q.push(
                "INSERT INTO tko_perf_cache (base, test, subdir, attribute, n, sum, sumsq) VALUES ",
            );
            for (i, ((base, (test, subdir, key)), m)) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.lit(base)?.push(", ");
                for v in [test, subdir] {
                    match v {
                        Some(v) => q.lit(v)?,
                        None => q.push("NULL"),
                    };
                    q.push(", ");
                }
                q.lit(key)?.push(", ");
                q.int(m.n)?.push(", ");
                q.lit(&m.sum.to_text())?.push(", ");
                q.lit(&m.sumsq.to_text())?.push(")");
            }
            self.execute(&q)?;
        }
        for base in missing {
            let mut q = Sql::new(d);
            q.push("INSERT INTO tko_perf_cache_kernels (base, built_time) VALUES (");
            q.lit(base)?.push(match d {
                Dialect::Postgres => ", localtimestamp(0))",
                Dialect::Sqlite => ", datetime('now'))",
            });
            self.execute(&q)?;
        }
        Ok(())
    }
}
