//! `tko history TEST`: one test's runs, newest first (time, job, machine,
//! kernel, status, reason), and how often its result switched between pass
//! and fail. Built from [`TestRecord`]s of a newest-first `tests` query;
//! written as a text table or one JSON object.

use super::text::{one_line, table};
use super::{fails, passes, TestRecord};
use serde::Serialize;
use std::io::{self, Write};

/// One run of the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Finished time (`YYYY-MM-DD HH:MM:SS` UTC), `None` when unknown.
    pub time: Option<String>,
    /// Job tag.
    pub job: String,
    /// Machine.
    pub machine: Option<String>,
    /// Kernel (base version).
    pub kernel: Option<String>,
    /// Status word.
    pub status: String,
    /// Reason.
    pub reason: Option<String>,
}

/// `tko history --format json`: keys in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct History {
    /// The test name.
    pub test: String,
    /// Runs, newest first.
    pub runs: Vec<Run>,
    /// Runs that passed (GOOD).
    pub passed: u64,
    /// Runs that failed (FAIL, ERROR, ABORT).
    pub failed: u64,
    /// Times a passing run followed a failing one or the other way round,
    /// in time order, over the runs listed (other statuses are skipped).
    pub switches: u64,
}

/// The history of `test` from its records, newest first.
pub fn history(test: &str, records: &[TestRecord]) -> History {
    let runs: Vec<Run> = records
        .iter()
        .map(|r| Run {
            time: r.finished_time.clone(),
            job: r.job_tag.clone(),
            machine: r.machine.clone(),
            kernel: r.kernel.clone(),
            status: r.status.clone(),
            reason: r.reason.clone(),
        })
        .collect();
    History {
        test: test.to_owned(),
        passed: runs.iter().filter(|r| passes(&r.status)).count() as u64,
        failed: runs.iter().filter(|r| fails(&r.status)).count() as u64,
        switches: switches(runs.iter().rev().map(|r| r.status.as_str())),
        runs,
    }
}

/// Pass/fail switches over statuses in time order (others skipped).
pub fn switches<'a>(statuses: impl Iterator<Item = &'a str>) -> u64 {
    let mut last: Option<bool> = None;
    let mut n = 0;
    for s in statuses {
        let pass = if passes(s) {
            true
        } else if fails(s) {
            false
        } else {
            continue;
        };
        if last.is_some_and(|l| l != pass) {
            n += 1;
        }
        last = Some(pass);
    }
    n
}

fn or_dash(v: &Option<String>) -> String {
    v.as_deref().map_or_else(|| "-".to_owned(), one_line)
}

/// Writes the history as a table and a totals line.
pub fn write_history_text<W: Write>(mut out: W, h: &History) -> io::Result<()> {
    let rows = h
        .runs
        .iter()
        .map(|r| {
            vec![
                r.time.clone().unwrap_or_else(|| "-".to_owned()),
                one_line(&r.job),
                or_dash(&r.machine),
                or_dash(&r.kernel),
                r.status.clone(),
                r.reason.as_deref().map(one_line).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["TIME", "JOB", "MACHINE", "KERNEL", "STATUS", "REASON"],
        &[false; 6],
        rows,
    )?;
    writeln!(
        out,
        "{}: {} runs, {} passed, {} failed, {} pass/fail switches",
        one_line(&h.test),
        h.runs.len(),
        h.passed,
        h.failed,
        h.switches
    )?;
    out.flush()
}

/// Writes the history as one pretty-printed JSON object and a newline.
pub fn write_history_json<W: Write>(mut out: W, h: &History) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut out, h)?;
    writeln!(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_count_pass_fail_changes_only() {
        let s = [
            "GOOD", "FAIL", "WARN", "FAIL", "GOOD", "GOOD", "ABORT", "TEST_NA",
        ];
        assert_eq!(switches(s.into_iter()), 3);
        assert_eq!(switches(["GOOD", "GOOD"].into_iter()), 0);
        assert_eq!(switches(std::iter::empty()), 0);
    }
}
