//! `tko stats --flaky --last N --switches K`: flakiness measured over
//! history rather than inside a filter window. Runs come newest first; for
//! each test on one kernel and machine group (or machine, when the group is
//! empty) the newest N runs are kept as pass / fail / other, and the test is
//! flaky when its result switched between pass and fail at least K times
//! over them, in time order. Memory is N bytes per (test, kernel, group),
//! never the rows.

use super::history::switches;
use super::text::{one_line, table};
use super::{flaky_key, Cols, FlakyKey, RecordSink, TestRecord};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};

/// A test whose result keeps switching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlakyOverTime {
    /// Test name.
    pub test: String,
    /// Kernel.
    pub kernel: Option<String>,
    /// Machine group.
    pub machine_group: Option<String>,
    /// The machine, when the machine group is empty (else `null`).
    pub machine: Option<String>,
    /// Runs looked at (at most N).
    pub runs: u64,
    /// Of those, passed.
    pub passed: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Pass/fail switches over those runs.
    pub switches: u64,
}

/// `tko stats --flaky --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlakyReport {
    /// N.
    pub last: u64,
    /// K.
    pub min_switches: u64,
    /// Flaky tests, most switches first.
    pub flaky: Vec<FlakyOverTime>,
    /// Entries left out by `--top`, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more: Option<u64>,
}

/// Accumulates newest-first test rows (a [`Sink`] for a newest-first
/// `tests` query).
pub struct FlakyBuilder {
    last: usize,
    cols: Option<Cols>,
    runs: HashMap<FlakyKey, Vec<&'static str>>,
}

impl FlakyBuilder {
    /// Keeps the newest `last` runs per test, kernel and group.
    pub fn new(last: usize) -> FlakyBuilder {
        FlakyBuilder {
            last: last.max(1),
            cols: None,
            runs: HashMap::new(),
        }
    }

    /// Adds one run; runs must come newest first.
    pub fn add(&mut self, r: &TestRecord) {
        let v = self.runs.entry(flaky_key(r)).or_default();
        if v.len() < self.last {
            v.push(if super::passes(&r.status) {
                "GOOD"
            } else if super::fails(&r.status) {
                "FAIL"
            } else {
                "-"
            });
        }
    }

    /// Tests with at least `min_switches` switches, cut to `top` (0: all).
    pub fn build(&self, min_switches: u64, top: usize) -> FlakyReport {
        let mut flaky: Vec<FlakyOverTime> = self
            .runs
            .iter()
            .map(|((t, k, g, m), v)| FlakyOverTime {
                test: t.clone(),
                kernel: k.clone(),
                machine_group: g.clone(),
                machine: m.clone(),
                runs: v.len() as u64,
                passed: v.iter().filter(|s| **s == "GOOD").count() as u64,
                failed: v.iter().filter(|s| **s == "FAIL").count() as u64,
                switches: switches(v.iter().rev().copied()),
            })
            .filter(|f| f.switches >= min_switches.max(1))
            .collect();
        flaky.sort_by(|a, b| {
            b.switches.cmp(&a.switches).then_with(|| {
                (&a.test, &a.kernel, &a.machine_group, &a.machine).cmp(&(
                    &b.test,
                    &b.kernel,
                    &b.machine_group,
                    &b.machine,
                ))
            })
        });
        let more = (top > 0 && flaky.len() > top).then(|| (flaky.len() - top) as u64);
        if top > 0 {
            flaky.truncate(top);
        }
        FlakyReport {
            last: self.last as u64,
            min_switches,
            flaky,
            more,
        }
    }
}

impl RecordSink for FlakyBuilder {
    fn cols_slot(&mut self) -> &mut Option<Cols> {
        &mut self.cols
    }

    fn take(&mut self, r: TestRecord) {
        self.add(&r);
    }
}

fn or_dash(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "-".to_owned(), one_line)
}

/// Writes the report as a table.
pub fn write_flaky_text<W: Write>(mut out: W, r: &FlakyReport) -> io::Result<()> {
    writeln!(
        out,
        "flaky tests: at least {} pass/fail switches over their last {} runs on one kernel and machine group (or machine)",
        r.min_switches, r.last
    )?;
    if r.flaky.is_empty() {
        writeln!(out, "none")?;
        return out.flush();
    }
    let rows = r
        .flaky
        .iter()
        .map(|f| {
            vec![
                one_line(&f.test),
                or_dash(&f.kernel),
                or_dash(&f.machine_group),
                or_dash(&f.machine),
                f.runs.to_string(),
                f.passed.to_string(),
                f.failed.to_string(),
                f.switches.to_string(),
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
            "RUNS",
            "PASSED",
            "FAILED",
            "SWITCHES",
        ],
        &[false, false, false, false, true, true, true, true],
        rows,
    )?;
    if let Some(n) = r.more {
        writeln!(out, "... and {n} more (--top 0 lists all)")?;
    }
    out.flush()
}

/// Writes the report as one pretty-printed JSON object.
pub fn write_flaky_json<W: Write>(mut out: W, r: &FlakyReport) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, r)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rec;

    #[test]
    fn switches_over_the_newest_runs_only() {
        let mut b = FlakyBuilder::new(4);
        // Newest first: G F G F | G G G (older runs beyond N are ignored).
        for s in ["GOOD", "FAIL", "GOOD", "FAIL", "GOOD", "GOOD", "GOOD"] {
            b.add(&rec("a", s, None, ""));
        }
        for s in ["GOOD", "GOOD", "FAIL", "FAIL"] {
            b.add(&rec("b", s, None, ""));
        }
        let r = b.build(2, 0);
        assert_eq!(r.flaky.len(), 1);
        assert_eq!(r.flaky[0].test, "a");
        assert_eq!((r.flaky[0].runs, r.flaky[0].switches), (4, 3));
        assert_eq!(b.build(1, 1).more, Some(1));
    }
}
