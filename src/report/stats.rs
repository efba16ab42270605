//! `tko stats`: totals, pass rates, counts by status, machine, label and
//! kernel, durations, most executed and flaky tests, accumulated from
//! [`TestRecord`]s with one counter per group (never the rows), and
//! written as text tables or one JSON object.

use super::text::{format_elapsed, one_line, table};
use super::{fails, flaky_key, passes, Cols, FlakyKey, RecordSink, TestRecord};
use crate::model::Status;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

/// Counts of one group (a machine, label or kernel).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// The machine, label or kernel (`null` when unknown).
    pub name: Option<String>,
    /// Test rows.
    pub tests: u64,
    /// Passed.
    pub passed: u64,
    /// Failed.
    pub failed: u64,
    /// Passed / (tests not RUNNING), rounded to 4 places.
    pub pass_rate: Option<f64>,
}

/// A test and how often it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Executed {
    /// Test name.
    pub test: String,
    /// Runs.
    pub runs: u64,
    /// Passed.
    pub passed: u64,
    /// Failed.
    pub failed: u64,
}

/// A test that both passed and failed on one kernel and machine group (or,
/// when the machine group is empty, on one machine: runs on different
/// machines without a group are never compared).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flaky {
    /// Test name.
    pub test: String,
    /// Kernel.
    pub kernel: Option<String>,
    /// Machine group.
    pub machine_group: Option<String>,
    /// The machine, when the machine group is empty (else `null`).
    pub machine: Option<String>,
    /// Passed runs.
    pub passed: u64,
    /// Failed runs.
    pub failed: u64,
}

/// Test durations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Durations {
    /// Tests with both a start and a finish time.
    pub timed_tests: u64,
    /// Their total, in seconds.
    pub total_s: i64,
    /// Their average, in seconds (rounded to 0.1).
    pub average_s: Option<f64>,
}

/// `tko stats`: the public JSON form (`--format json`), keys in this order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Test rows.
    pub tests: u64,
    /// Distinct jobs.
    pub jobs: u64,
    /// Passed tests.
    pub passed: u64,
    /// Failed tests.
    pub failed: u64,
    /// RUNNING tests.
    pub running: u64,
    /// passed / (tests − running), rounded to 4 places.
    pub pass_rate: Option<f64>,
    /// Durations.
    pub duration: Durations,
    /// Tests per status word.
    pub by_status: BTreeMap<String, u64>,
    /// Per machine, most tests first.
    pub by_machine: Vec<Group>,
    /// Per job label, most tests first.
    pub by_label: Vec<Group>,
    /// Per kernel, most tests first.
    pub by_kernel: Vec<Group>,
    /// The tests run most often.
    pub most_executed: Vec<Executed>,
    /// Tests that passed and failed on the same kernel and machine group
    /// (or machine), most evenly split first.
    pub flaky: Vec<Flaky>,
    /// Entries left out of each list cut to the top N (`by_machine`,
    /// `by_label`, `by_kernel`, `most_executed`, `flaky`); absent when
    /// nothing was left out.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub more: BTreeMap<String, u64>,
}

/// How many entries each list of [`Stats`] keeps by default.
pub const DEFAULT_TOP: usize = 10;

/// Keeps the first `top` entries of `v` (all when `top` is 0) and records
/// how many were left out under `name`.
fn cut<T>(v: &mut Vec<T>, top: usize, name: &str, more: &mut BTreeMap<String, u64>) {
    if top > 0 && v.len() > top {
        more.insert(name.to_owned(), (v.len() - top) as u64);
        v.truncate(top);
    }
}

#[derive(Default, Clone, Copy)]
struct Count {
    tests: u64,
    passed: u64,
    failed: u64,
    running: u64,
}

impl Count {
    fn add(&mut self, status: &str) {
        self.tests += 1;
        self.passed += u64::from(passes(status));
        self.failed += u64::from(fails(status));
        self.running += u64::from(status == Status::Running.word());
    }

    fn rate(&self) -> Option<f64> {
        let done = self.tests - self.running;
        (done > 0).then(|| round(self.passed as f64 / done as f64, 4))
    }
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// Builds [`Stats`] from records; also a [`Sink`] for a `tests` export,
/// keeping counters per group only (memory grows with the number of
/// distinct machines, labels, kernels and tests, not with rows).
#[derive(Default)]
pub struct StatsBuilder {
    cols: Option<Cols>,
    all: Count,
    jobs: u64,
    last_job: Option<String>,
    timed: u64,
    total_s: i64,
    by_status: BTreeMap<String, u64>,
    by_machine: HashMap<Option<String>, Count>,
    by_label: HashMap<Option<String>, Count>,
    by_kernel: HashMap<Option<String>, Count>,
    by_test: HashMap<String, Count>,
    by_flaky: HashMap<FlakyKey, Count>,
}

impl StatsBuilder {
    /// Adds one test row. Jobs are counted by tag changes, so records of
    /// one job must be adjacent (exports are ordered by tag).
    pub fn add(&mut self, r: &TestRecord) {
        let s = r.status.as_str();
        self.all.add(s);
        if self.last_job.as_deref() != Some(&r.job_tag) {
            self.jobs += 1;
            self.last_job = Some(r.job_tag.clone());
        }
        if let Some(d) = r.duration_s {
            self.timed += 1;
            self.total_s += d;
        }
        *self.by_status.entry(r.status.clone()).or_default() += 1;
        self.by_machine.entry(r.machine.clone()).or_default().add(s);
        self.by_label.entry(r.label.clone()).or_default().add(s);
        self.by_kernel.entry(r.kernel.clone()).or_default().add(s);
        self.by_test.entry(r.test.clone()).or_default().add(s);
        self.by_flaky.entry(flaky_key(r)).or_default().add(s);
    }

    /// The statistics so far, each list cut to [`DEFAULT_TOP`] entries.
    pub fn build(&self) -> Stats {
        self.build_top(DEFAULT_TOP)
    }

    /// The statistics so far, each list cut to `top` entries (0: all).
    pub fn build_top(&self, top: usize) -> Stats {
        fn groups(m: &HashMap<Option<String>, Count>) -> Vec<Group> {
            let mut v: Vec<Group> = m
                .iter()
                .map(|(name, c)| Group {
                    name: name.clone(),
                    tests: c.tests,
                    passed: c.passed,
                    failed: c.failed,
                    pass_rate: c.rate(),
                })
                .collect();
            v.sort_by(|a, b| b.tests.cmp(&a.tests).then_with(|| a.name.cmp(&b.name)));
            v
        }
        let mut most: Vec<Executed> = self
            .by_test
            .iter()
            .map(|(t, c)| Executed {
                test: t.clone(),
                runs: c.tests,
                passed: c.passed,
                failed: c.failed,
            })
            .collect();
        most.sort_by(|a, b| b.runs.cmp(&a.runs).then_with(|| a.test.cmp(&b.test)));
        let mut flaky: Vec<Flaky> = self
            .by_flaky
            .iter()
            .filter(|(_, c)| c.passed > 0 && c.failed > 0)
            .map(|((t, k, g, m), c)| Flaky {
                test: t.clone(),
                kernel: k.clone(),
                machine_group: g.clone(),
                machine: m.clone(),
                passed: c.passed,
                failed: c.failed,
            })
            .collect();
        flaky.sort_by(|a, b| {
            let split = |f: &Flaky| (f.passed.min(f.failed), f.passed + f.failed);
            split(b).cmp(&split(a)).then_with(|| {
                (&a.test, &a.kernel, &a.machine_group, &a.machine).cmp(&(
                    &b.test,
                    &b.kernel,
                    &b.machine_group,
                    &b.machine,
                ))
            })
        });
        let mut more = BTreeMap::new();
        let mut by_machine = groups(&self.by_machine);
        let mut by_label = groups(&self.by_label);
        let mut by_kernel = groups(&self.by_kernel);
        cut(&mut by_machine, top, "by_machine", &mut more);
        cut(&mut by_label, top, "by_label", &mut more);
        cut(&mut by_kernel, top, "by_kernel", &mut more);
        cut(&mut most, top, "most_executed", &mut more);
        cut(&mut flaky, top, "flaky", &mut more);
        Stats {
            tests: self.all.tests,
            jobs: self.jobs,
            passed: self.all.passed,
            failed: self.all.failed,
            running: self.all.running,
            pass_rate: self.all.rate(),
            duration: Durations {
                timed_tests: self.timed,
                total_s: self.total_s,
                average_s: (self.timed > 0)
                    .then(|| round(self.total_s as f64 / self.timed as f64, 1)),
            },
            by_status: self.by_status.clone(),
            by_machine,
            by_label,
            by_kernel,
            most_executed: most,
            flaky,
            more,
        }
    }
}

impl RecordSink for StatsBuilder {
    fn cols_slot(&mut self) -> &mut Option<Cols> {
        &mut self.cols
    }

    fn take(&mut self, r: TestRecord) {
        self.add(&r);
    }
}

fn pct(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

fn name(n: &Option<String>) -> String {
    n.as_deref().map_or_else(|| "-".to_owned(), one_line)
}

/// Writes `stats` as human-readable tables.
pub fn write_stats_text<W: Write>(mut out: W, st: &Stats) -> io::Result<()> {
    writeln!(
        out,
        "{} tests in {} jobs: {} passed, {} failed, {} running; pass rate {}",
        st.tests,
        st.jobs,
        st.passed,
        st.failed,
        st.running,
        pct(st.pass_rate)
    )?;
    writeln!(
        out,
        "duration: total {}, average {} over {} timed tests",
        format_elapsed(st.duration.total_s),
        st.duration
            .average_s
            .map_or_else(|| "-".to_owned(), |a| format!("{a:.1}s")),
        st.duration.timed_tests
    )?;
    writeln!(out, "\nby status")?;
    let rows = st
        .by_status
        .iter()
        .map(|(s, n)| vec![s.clone(), n.to_string()])
        .collect();
    table(&mut out, &["STATUS", "TESTS"], &[false, true], rows)?;
    for (title, head, groups, key) in [
        ("by machine", "MACHINE", &st.by_machine, "by_machine"),
        ("by label", "LABEL", &st.by_label, "by_label"),
        ("by kernel", "KERNEL", &st.by_kernel, "by_kernel"),
    ] {
        writeln!(out, "\n{title}")?;
        let rows = groups
            .iter()
            .map(|g| {
                vec![
                    name(&g.name),
                    g.tests.to_string(),
                    g.passed.to_string(),
                    g.failed.to_string(),
                    pct(g.pass_rate),
                ]
            })
            .collect();
        table(
            &mut out,
            &[head, "TESTS", "PASSED", "FAILED", "PASS RATE"],
            &[false, true, true, true, true],
            rows,
        )?;
        and_more(&mut out, st, key)?;
    }
    writeln!(out, "\nmost executed tests")?;
    let rows = st
        .most_executed
        .iter()
        .map(|e| {
            vec![
                one_line(&e.test),
                e.runs.to_string(),
                e.passed.to_string(),
                e.failed.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["TEST", "RUNS", "PASSED", "FAILED"],
        &[false, true, true, true],
        rows,
    )?;
    and_more(&mut out, st, "most_executed")?;
    writeln!(
        out,
        "\nflaky tests (passed and failed on one kernel and machine group, or one machine when the group is empty)"
    )?;
    if st.flaky.is_empty() {
        writeln!(out, "none")?;
    } else {
        let rows = st
            .flaky
            .iter()
            .map(|f| {
                vec![
                    one_line(&f.test),
                    name(&f.kernel),
                    name(&f.machine_group),
                    name(&f.machine),
                    f.passed.to_string(),
                    f.failed.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "TEST",
                "KERNEL",
                "MACHINE GROUP",
                "MACHINE",
                "PASSED",
                "FAILED",
            ],
            &[false, false, false, false, true, true],
            rows,
        )?;
        and_more(&mut out, st, "flaky")?;
    }
    out.flush()
}

/// `... and N more` under a list cut to the top N.
fn and_more<W: Write>(out: &mut W, st: &Stats, key: &str) -> io::Result<()> {
    match st.more.get(key) {
        Some(n) => writeln!(out, "... and {n} more (--top 0 lists all)"),
        None => Ok(()),
    }
}

/// Writes `stats` as one pretty-printed JSON object and a newline.
pub fn write_stats_json<W: Write>(mut out: W, st: &Stats) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, st)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rec;

    #[test]
    fn stats_find_flaky_tests() {
        let mut b = StatsBuilder::default();
        for r in [
            rec("a", "FAIL", Some(5), ""),
            rec("a", "GOOD", Some(5), ""),
            rec("b", "GOOD", None, ""),
        ] {
            b.add(&r);
        }
        let st = b.build();
        assert_eq!((st.tests, st.jobs, st.passed, st.failed), (3, 1, 2, 1));
        assert_eq!(st.pass_rate, Some(0.6667));
        assert_eq!(st.flaky.len(), 1);
        assert_eq!(st.most_executed[0].test, "a");
        assert_eq!(st.duration.average_s, Some(5.0));
    }
}
