//! `tko summary`: one line per test name of one job (passes, fails,
//! elapsed, starts, last status, last message), computed from
//! [`TestRecord`]s and written as a text table or JSON.

use super::text::{format_elapsed, one_line, table};
use super::{fails, passes, TestRecord};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};

/// One line of `tko summary`: every run of one test name in the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryLine {
    /// Test name.
    pub test: String,
    /// Runs that passed (GOOD).
    pub passes: u64,
    /// Runs that failed (FAIL, ERROR, ABORT).
    pub fails: u64,
    /// Sum of the runs' durations, in seconds.
    pub elapsed_s: i64,
    /// Runs.
    pub starts: u64,
    /// Status of the last run.
    pub last_status: String,
    /// The last non-empty reason.
    pub info: String,
}

/// Groups records by test name, in order of first appearance.
pub fn summarize(records: &[TestRecord]) -> Vec<SummaryLine> {
    let mut lines: Vec<SummaryLine> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let i = *at.entry(&r.test).or_insert_with(|| {
            lines.push(SummaryLine {
                test: r.test.clone(),
                passes: 0,
                fails: 0,
                elapsed_s: 0,
                starts: 0,
                last_status: String::new(),
                info: String::new(),
            });
            lines.len() - 1
        });
        let l = &mut lines[i];
        l.starts += 1;
        l.passes += u64::from(passes(&r.status));
        l.fails += u64::from(fails(&r.status));
        l.elapsed_s += r.duration_s.unwrap_or(0).max(0);
        l.last_status.clone_from(&r.status);
        if let Some(reason) = r.reason.as_deref().filter(|s| !s.trim().is_empty()) {
            l.info = reason.to_owned();
        }
    }
    lines
}

/// The totals of a summary: tests, runs, passed, failed, running.
fn totals(lines: &[SummaryLine]) -> (usize, u64, u64, u64, usize) {
    (
        lines.len(),
        lines.iter().map(|l| l.starts).sum(),
        lines.iter().map(|l| l.passes).sum(),
        lines.iter().map(|l| l.fails).sum(),
        lines.iter().filter(|l| l.last_status == "RUNNING").count(),
    )
}

/// The JSON form of one job's summary (`tko summary --format json`, and
/// each job of `GET /api/running`).
#[derive(Debug, Serialize)]
pub struct SummaryJson<'a> {
    /// Job tag.
    pub job: &'a str,
    /// Distinct test names.
    pub tests: usize,
    /// Test rows.
    pub runs: u64,
    /// Passed runs.
    pub passed: u64,
    /// Failed runs.
    pub failed: u64,
    /// Tests whose last run is RUNNING.
    pub running: usize,
    /// The lines.
    pub lines: &'a [SummaryLine],
}

impl<'a> SummaryJson<'a> {
    /// The summary of job `tag`.
    pub fn new(tag: &'a str, lines: &'a [SummaryLine]) -> SummaryJson<'a> {
        let (tests, runs, passed, failed, running) = totals(lines);
        SummaryJson {
            job: tag,
            tests,
            runs,
            passed,
            failed,
            running,
            lines,
        }
    }
}

/// Writes the summary of job `tag` as one JSON object on one line: `{"job",
/// "tests", "runs", "passed", "failed", "running", "lines": [{"test",
/// "passes", "fails", "elapsed_s", "starts", "last_status", "info"}]}`.
pub fn write_summary_json<W: Write>(
    mut out: W,
    tag: &str,
    lines: &[SummaryLine],
) -> io::Result<()> {
    serde_json::to_writer(&mut out, &SummaryJson::new(tag, lines))?;
    writeln!(out)?;
    out.flush()
}

/// Writes the summary of job `tag`: a title line, then a table.
pub fn write_summary<W: Write>(mut out: W, tag: &str, lines: &[SummaryLine]) -> io::Result<()> {
    let (tests, runs, passed, failed, running) = totals(lines);
    writeln!(
        out,
        "{tag}: {tests} tests, {runs} runs, {passed} passed, {failed} failed, {running} running"
    )?;
    let rows = lines
        .iter()
        .map(|l| {
            vec![
                l.test.clone(),
                l.passes.to_string(),
                l.fails.to_string(),
                format_elapsed(l.elapsed_s),
                l.starts.to_string(),
                if l.last_status == "RUNNING" {
                    "running".to_owned()
                } else {
                    l.last_status.clone()
                },
                one_line(&l.info),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "TEST", "PASS", "FAIL", "ELAPSED", "STARTS", "STATUS", "INFO",
        ],
        &[false, true, true, true, true, false, false],
        rows,
    )?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::rec;

    #[test]
    fn summary_groups_runs_and_shows_running() {
        let r = [
            rec("a", "FAIL", Some(5), "bad"),
            rec("b", "RUNNING", None, ""),
            rec("a", "GOOD", Some(70), ""),
        ];
        let lines = summarize(&r);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (
                lines[0].passes,
                lines[0].fails,
                lines[0].starts,
                lines[0].elapsed_s
            ),
            (1, 1, 2, 75)
        );
        assert_eq!(lines[0].info, "bad");
        let mut out = Vec::new();
        write_summary(&mut out, "1-a/h", &lines).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "1-a/h: 2 tests, 3 runs, 1 passed, 1 failed, 1 running\n\
             TEST  PASS  FAIL  ELAPSED  STARTS  STATUS   INFO\n\
             a        1     1    1m15s       2  GOOD     bad\n\
             b        0     0       0s       1  running\n"
        );
    }
}
