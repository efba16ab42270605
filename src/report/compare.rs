//! `tko compare BASE NEW`: what changed between two sets of jobs. Tests
//! are matched by name and subdir (and machine when asked); a set with
//! several runs of a test is represented by its **latest** run (by finished
//! time, then job tag and test order), with the number of runs shown. Each
//! matched test falls in one class ([`Class`]). Perf values of matched
//! tests are pooled per key over all iterations of all runs in each set
//! (as exact moments, [`Moments`]: count, exact Σv and Σv², so the numbers
//! do not depend on the order values come in nor on whether they came from
//! the detail rows or the load-time summary) and compared with Welch's
//! t-test ([`super::welch`]); a key is flagged when its mean moved by more
//! than the threshold and the change is significant. Whether higher is
//! better is unknown in TKO data, so only the direction is reported.
//! Everything here works on rows already read ([`TestRecord`]s and
//! [`PerfRows`]); no SQL.

use super::text::{one_line, table};
use super::welch::welch_summary;
use super::{TestRecord, PASS};
use crate::query::{Column, Moments, Sink};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};

/// How a test changed from BASE to NEW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// GOOD in BASE, not GOOD in NEW.
    Regression,
    /// Not GOOD in BASE, GOOD in NEW.
    Fix,
    /// Not GOOD in either.
    StillFailing,
    /// Only in NEW.
    New,
    /// Only in BASE.
    Missing,
    /// GOOD in both.
    Unchanged,
}

impl Class {
    /// The JSON / text name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Regression => "regression",
            Class::Fix => "fix",
            Class::StillFailing => "still_failing",
            Class::New => "new",
            Class::Missing => "missing",
            Class::Unchanged => "unchanged",
        }
    }

    /// Every class, in report order.
    pub const ALL: [Class; 6] = [
        Class::Regression,
        Class::Fix,
        Class::StillFailing,
        Class::New,
        Class::Missing,
        Class::Unchanged,
    ];
}

/// One matched test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestChange {
    /// Test name.
    pub test: String,
    /// Subdir (`null` for `----`).
    pub subdir: Option<String>,
    /// Machine, when tests are matched per machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The class.
    pub class: Class,
    /// Status of the latest run in BASE.
    pub base_status: Option<String>,
    /// Status of the latest run in NEW.
    pub new_status: Option<String>,
    /// Runs in BASE.
    pub base_runs: u64,
    /// Runs in NEW.
    pub new_runs: u64,
}

/// One perf key of one matched test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfChange {
    /// Test name.
    pub test: String,
    /// Subdir.
    pub subdir: Option<String>,
    /// Machine, when tests are matched per machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Perf key.
    pub key: String,
    /// BASE mean.
    pub base_mean: Option<f64>,
    /// BASE sample standard deviation.
    pub base_stddev: Option<f64>,
    /// BASE values.
    pub base_n: u64,
    /// NEW mean.
    pub new_mean: Option<f64>,
    /// NEW sample standard deviation.
    pub new_stddev: Option<f64>,
    /// NEW values.
    pub new_n: u64,
    /// (new − base) / |base| × 100; `null` when the BASE mean is 0.
    pub change_pct: Option<f64>,
    /// `up`, `down` or `same`.
    pub direction: &'static str,
    /// Welch's two-sided p-value; `null` when no test is possible (fewer
    /// than two values on a side, or no spread at all).
    pub p_value: Option<f64>,
    /// |change| > threshold and p < alpha.
    pub flagged: bool,
}

/// A set of jobs as the user selected it, and the jobs it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The selecting flags (`job`, `kernel`, `label`, `machine`, `test`).
    #[serde(flatten)]
    pub by: BTreeMap<String, String>,
    /// The job tags in the set, sorted.
    pub jobs: Vec<String>,
}

/// `tko compare --format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// BASE.
    pub base: Selection,
    /// NEW.
    pub new: Selection,
    /// Matched tests, by test name, subdir and machine.
    pub tests: Vec<TestChange>,
    /// Perf keys of tests present in both sets.
    pub perf: Vec<PerfChange>,
}

impl Comparison {
    /// True when CI should fail: a regression or a flagged perf change.
    pub fn failing(&self) -> bool {
        self.tests.iter().any(|t| t.class == Class::Regression)
            || self.perf.iter().any(|p| p.flagged)
    }
}

/// Options of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Match tests per machine too.
    pub by_machine: bool,
    /// Flag perf changes larger than this many percent...
    pub threshold_pct: f64,
    /// ...whose p-value is below this.
    pub alpha: f64,
}

/// (test, subdir, machine when matched per machine).
type Key = (String, Option<String>, Option<String>);

fn key(by_machine: bool, test: &str, subdir: Option<&str>, machine: Option<&str>) -> Key {
    (
        test.to_owned(),
        subdir.map(str::to_owned),
        if by_machine {
            machine.map(str::to_owned)
        } else {
            None
        },
    )
}

/// Latest run and number of runs per key.
fn latest(records: &[TestRecord], by_machine: bool) -> BTreeMap<Key, (&TestRecord, u64)> {
    let mut out: BTreeMap<Key, (&TestRecord, u64)> = BTreeMap::new();
    for r in records {
        let k = key(
            by_machine,
            &r.test,
            r.subdir.as_deref(),
            r.machine.as_deref(),
        );
        let e = out.entry(k).or_insert((r, 0));
        e.1 += 1;
        // Records come in job tag and test order; a later or equal finished
        // time replaces (None sorts first, so untimed runs count as oldest).
        if r.finished_time >= e.0.finished_time {
            e.0 = r;
        }
    }
    out
}

/// Perf values of one set: per test key and perf key, their exact moments.
#[derive(Default)]
pub struct PerfRows {
    by_machine: bool,
    cols: Option<[usize; 5]>,
    /// Moments per (test, subdir, machine) and key.
    pub values: HashMap<Key, BTreeMap<String, Moments>>,
}

impl PerfRows {
    /// Collects the rows of a long `perf` query.
    pub fn new(by_machine: bool) -> PerfRows {
        PerfRows {
            by_machine,
            ..PerfRows::default()
        }
    }
}

impl PerfRows {
    /// Adds the moments of some (finite) values of one test and perf key,
    /// as [`crate::query::Warehouse::perf_moments`] hands them over.
    pub fn add(
        &mut self,
        test: Option<&str>,
        subdir: Option<&str>,
        machine: Option<&str>,
        perf_key: &str,
        m: &Moments,
    ) {
        let k = key(self.by_machine, test.unwrap_or_default(), subdir, machine);
        let per_key = self.values.entry(k).or_default();
        match per_key.get_mut(perf_key) {
            Some(v) => v.merge(m, 1),
            None => {
                per_key.insert(perf_key.to_owned(), m.clone());
            }
        }
    }
}

impl Sink for PerfRows {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        let at = |n: &str| {
            columns.iter().position(|c| c.name == n).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("no column {n}"))
            })
        };
        self.cols = Some([
            at("test")?,
            at("subdir")?,
            at("machine")?,
            at("key")?,
            at("value")?,
        ]);
        Ok(())
    }

    fn row(&mut self, f: &[Option<&str>]) -> io::Result<()> {
        let [t, s, m, k, v] = self.cols.expect("begin before row");
        let (Some(k), Some(v)) = (f[k], f[v].and_then(|v| v.parse::<f64>().ok())) else {
            return Ok(());
        };
        if v.is_finite() {
            let mut one = Moments::default();
            one.add(v);
            self.add(f[t], f[s], f[m], k, &one);
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn jobs(records: &[TestRecord]) -> Vec<String> {
    let set: BTreeSet<&str> = records.iter().map(|r| r.job_tag.as_str()).collect();
    set.into_iter().map(str::to_owned).collect()
}

/// Compares two sets.
pub fn compare(
    base: (BTreeMap<String, String>, &[TestRecord], &PerfRows),
    new: (BTreeMap<String, String>, &[TestRecord], &PerfRows),
    o: &Options,
) -> Comparison {
    let good = |s: &str| PASS.contains(&s);
    let (b, n) = (latest(base.1, o.by_machine), latest(new.1, o.by_machine));
    let keys: BTreeSet<&Key> = b.keys().chain(n.keys()).collect();
    let mut tests = Vec::new();
    let mut perf = Vec::new();
    for k in keys {
        let (br, nr) = (b.get(k), n.get(k));
        let class = match (br, nr) {
            (Some((x, _)), Some((y, _))) => match (good(&x.status), good(&y.status)) {
                (true, true) => Class::Unchanged,
                (true, false) => Class::Regression,
                (false, true) => Class::Fix,
                (false, false) => Class::StillFailing,
            },
            (None, _) => Class::New,
            (_, None) => Class::Missing,
        };
        tests.push(TestChange {
            test: k.0.clone(),
            subdir: k.1.clone(),
            machine: k.2.clone(),
            class,
            base_status: br.map(|(r, _)| r.status.clone()),
            new_status: nr.map(|(r, _)| r.status.clone()),
            base_runs: br.map_or(0, |x| x.1),
            new_runs: nr.map_or(0, |x| x.1),
        });
        if br.is_none() || nr.is_none() {
            continue;
        }
        let empty = BTreeMap::new();
        let bv = base.2.values.get(k).unwrap_or(&empty);
        let nv = new.2.values.get(k).unwrap_or(&empty);
        let perf_keys: BTreeSet<&String> = bv.keys().chain(nv.keys()).collect();
        let none = Moments::default();
        for pk in perf_keys {
            let x = bv.get(pk).unwrap_or(&none);
            let y = nv.get(pk).unwrap_or(&none);
            let (bm, nm) = (x.mean_sd(), y.mean_sd());
            let change_pct = match (bm, nm) {
                (Some((b, _)), Some((n, _))) if b != 0.0 => Some((n - b) / b.abs() * 100.0),
                _ => None,
            };
            let direction = match (bm, nm) {
                (Some((b, _)), Some((n, _))) if n > b => "up",
                (Some((b, _)), Some((n, _))) if n < b => "down",
                _ => "same",
            };
            let p_value = match (bm, nm) {
                (Some(b), Some(n)) => welch_summary((x.n as u64, b), (y.n as u64, n)).map(|w| w.p),
                _ => None,
            };
            let flagged = change_pct.is_some_and(|c| c.abs() > o.threshold_pct)
                && p_value.is_some_and(|p| p < o.alpha);
            perf.push(PerfChange {
                test: k.0.clone(),
                subdir: k.1.clone(),
                machine: k.2.clone(),
                key: pk.clone(),
                base_mean: bm.map(|m| m.0),
                base_stddev: bm.map(|m| m.1),
                base_n: x.n as u64,
                new_mean: nm.map(|m| m.0),
                new_stddev: nm.map(|m| m.1),
                new_n: y.n as u64,
                change_pct,
                direction,
                p_value,
                flagged,
            });
        }
    }
    Comparison {
        base: Selection {
            by: base.0,
            jobs: jobs(base.1),
        },
        new: Selection {
            by: new.0,
            jobs: jobs(new.1),
        },
        tests,
        perf,
    }
}

fn sel(s: &Selection) -> String {
    let by: Vec<String> = s.by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{} jobs ({})", s.jobs.len(), by.join(", "))
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"))
}

/// Writes the comparison as text: the sets, every test that is not
/// unchanged, class counts, then the perf keys (flagged first).
pub fn write_compare_text<W: Write>(mut out: W, c: &Comparison, o: &Options) -> io::Result<()> {
    writeln!(out, "base: {}", sel(&c.base))?;
    writeln!(out, "new:  {}", sel(&c.new))?;
    let rows: Vec<Vec<String>> = c
        .tests
        .iter()
        .filter(|t| t.class != Class::Unchanged)
        .map(|t| {
            vec![
                t.class.name().to_owned(),
                one_line(&t.test),
                t.subdir.as_deref().map_or_else(|| "----".into(), one_line),
                t.machine.as_deref().map(one_line).unwrap_or_default(),
                t.base_status.clone().unwrap_or_else(|| "-".into()),
                t.new_status.clone().unwrap_or_else(|| "-".into()),
                format!("{}/{}", t.base_runs, t.new_runs),
            ]
        })
        .collect();
    if !rows.is_empty() {
        writeln!(out)?;
        let mut heads = vec!["CLASS", "TEST", "SUBDIR", "MACHINE", "BASE", "NEW", "RUNS"];
        let mut right = vec![false, false, false, false, false, false, true];
        let mut rows = rows;
        if !o.by_machine {
            heads.remove(3);
            right.remove(3);
            rows.iter_mut().for_each(|r| {
                r.remove(3);
            });
        }
        table(&mut out, &heads, &right, rows)?;
    }
    let counts: Vec<String> = Class::ALL
        .iter()
        .map(|k| {
            let n = c.tests.iter().filter(|t| t.class == *k).count();
            format!("{n} {}", k.name().replace('_', " "))
        })
        .collect();
    writeln!(out, "\ntests: {}", counts.join(", "))?;
    let mut perf: Vec<&PerfChange> = c.perf.iter().collect();
    perf.sort_by_key(|p| !p.flagged);
    let flagged = c.perf.iter().filter(|p| p.flagged).count();
    writeln!(
        out,
        "perf: {} keys, {flagged} flagged (change over {}% and Welch's t-test p < {})",
        c.perf.len(),
        o.threshold_pct,
        o.alpha
    )?;
    if !perf.is_empty() {
        let rows = perf
            .iter()
            .map(|p| {
                vec![
                    if p.flagged { "*".into() } else { String::new() },
                    one_line(&p.test),
                    one_line(&p.key),
                    format!(
                        "{} ±{} ({})",
                        num(p.base_mean),
                        num(p.base_stddev),
                        p.base_n
                    ),
                    format!("{} ±{} ({})", num(p.new_mean), num(p.new_stddev), p.new_n),
                    p.change_pct
                        .map_or_else(|| "-".into(), |c| format!("{c:+.1}%")),
                    p.direction.to_owned(),
                    p.p_value.map_or_else(|| "-".into(), |p| format!("{p:.4}")),
                ]
            })
            .collect();
        table(
            &mut out,
            &["", "TEST", "KEY", "BASE", "NEW", "CHANGE", "DIR", "P"],
            &[false, false, false, true, true, true, false, true],
            rows,
        )?;
    }
    out.flush()
}

/// Columns of `tko compare --format csv`: one table, a `record` column
/// telling test rows (`test`) from perf rows (`perf`).
pub const CSV_COLUMNS: [&str; 20] = [
    "record",
    "test",
    "subdir",
    "machine",
    "class",
    "base_status",
    "new_status",
    "base_runs",
    "new_runs",
    "key",
    "base_mean",
    "base_stddev",
    "base_n",
    "new_mean",
    "new_stddev",
    "new_n",
    "change_pct",
    "direction",
    "p_value",
    "flagged",
];

/// Writes the comparison as one CSV table (quoted as `tko export` does):
/// the tests, then the perf keys; fields that do not apply are empty.
pub fn write_compare_csv<W: Write>(out: W, c: &Comparison) -> io::Result<()> {
    let mut w = crate::export::CsvWriter::new(out);
    let columns: Vec<Column> = CSV_COLUMNS
        .iter()
        .map(|n| Column {
            name: (*n).to_owned(),
            ty: crate::query::ColType::Text,
        })
        .collect();
    w.begin(&columns)?;
    // Floats as `tko export` writes them (PostgreSQL's text form).
    let f = |v: Option<f64>| {
        v.map(|v| {
            let mut s = String::new();
            crate::query::pg_float(v, &mut s);
            s
        })
    };
    for t in &c.tests {
        let row = [
            Some("test".to_owned()),
            Some(t.test.clone()),
            t.subdir.clone(),
            t.machine.clone(),
            Some(t.class.name().to_owned()),
            t.base_status.clone(),
            t.new_status.clone(),
            Some(t.base_runs.to_string()),
            Some(t.new_runs.to_string()),
        ];
        let fields: Vec<Option<&str>> = row
            .iter()
            .map(Option::as_deref)
            .chain(std::iter::repeat_n(None, CSV_COLUMNS.len() - row.len()))
            .collect();
        w.row(&fields)?;
    }
    for p in &c.perf {
        let row = [
            Some("perf".to_owned()),
            Some(p.test.clone()),
            p.subdir.clone(),
            p.machine.clone(),
            None,
            None,
            None,
            None,
            None,
            Some(p.key.clone()),
            f(p.base_mean),
            f(p.base_stddev),
            Some(p.base_n.to_string()),
            f(p.new_mean),
            f(p.new_stddev),
            Some(p.new_n.to_string()),
            f(p.change_pct),
            Some(p.direction.to_owned()),
            f(p.p_value),
            Some(p.flagged.to_string()),
        ];
        let fields: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
        w.row(&fields)?;
    }
    w.finish()
}

/// Writes the comparison as one pretty-printed JSON object.
pub fn write_compare_json<W: Write>(mut out: W, c: &Comparison) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, c)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rec;

    fn at(test: &str, status: &str, time: &str) -> TestRecord {
        TestRecord {
            finished_time: Some(time.into()),
            ..rec(test, status, None, "")
        }
    }

    #[test]
    fn classes_use_the_latest_run() {
        let base = [
            at("a", "GOOD", "2011-01-01 00:00:00"),
            at("b", "FAIL", "2011-01-01 00:00:00"),
            at("c", "FAIL", "2011-01-01 00:00:00"),
            at("d", "GOOD", "2011-01-01 00:00:00"),
            at("e", "GOOD", "2011-01-01 00:00:00"),
            // f: failed first, then passed: the latest counts.
            at("f", "GOOD", "2011-01-02 00:00:00"),
            at("f", "FAIL", "2011-01-01 00:00:00"),
        ];
        let new = [
            at("a", "FAIL", "2011-02-01 00:00:00"),
            at("b", "GOOD", "2011-02-01 00:00:00"),
            at("c", "ERROR", "2011-02-01 00:00:00"),
            at("e", "GOOD", "2011-02-01 00:00:00"),
            at("g", "GOOD", "2011-02-01 00:00:00"),
            at("f", "GOOD", "2011-02-01 00:00:00"),
        ];
        let o = Options {
            by_machine: false,
            threshold_pct: 5.0,
            alpha: 0.05,
        };
        let (pb, pn) = (PerfRows::new(false), PerfRows::new(false));
        let c = compare(
            (BTreeMap::new(), &base, &pb),
            (BTreeMap::new(), &new, &pn),
            &o,
        );
        let got: Vec<(&str, Class, u64)> = c
            .tests
            .iter()
            .map(|t| (t.test.as_str(), t.class, t.base_runs))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Class::Regression, 1),
                ("b", Class::Fix, 1),
                ("c", Class::StillFailing, 1),
                ("d", Class::Missing, 1),
                ("e", Class::Unchanged, 1),
                ("f", Class::Unchanged, 2),
                ("g", Class::New, 0),
            ]
        );
        assert!(c.failing());
    }
}
