//! `tko summary`: one line per test name of one job (passes, fails,
//! elapsed, starts, last status, last message), computed from
//! [`TestRecord`]s and written as a text table or JSON.

use super::text::{format_elapsed, one_line, table};
use super::{epoch_of, fails, passes, TestRecord};
use serde::Serialize;
use std::collections::HashMap;
use std::io::{self, Write};

/// One line of `tko summary`: every run of one test name in the job, as
/// STAX's `LIST TESTCASES` shows a testcase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryLine {
    /// Test name.
    pub test: String,
    /// Subdirectory of the last run (`None` for `----`).
    pub subdir: Option<String>,
    /// Runs that passed (GOOD).
    pub passes: u64,
    /// Runs that failed (FAIL, ERROR, ABORT).
    pub fails: u64,
    /// Sum of the runs' durations, in seconds; a run still RUNNING counts
    /// the time from its start to the job's end, or to now while the job
    /// has no finished time.
    pub elapsed_s: i64,
    /// Runs.
    pub starts: u64,
    /// True when the last run is RUNNING.
    pub running: bool,
    /// Status of the last run.
    pub last_status: String,
    /// The last run's information message, else its reason (the last
    /// non-empty one of either over the runs).
    pub information: String,
    /// When the last status was recorded: the last run's finished time,
    /// else (running) its last information message's time, else its start.
    pub status_time: Option<String>,
}

/// The `tests` query a summary reads: with each test's information
/// message and the job's finished time ([`crate::query::INFORMATION_COLUMNS`]).
pub fn summary_query(filter: crate::query::Filter) -> crate::query::Query {
    crate::query::Query {
        information: true,
        ..crate::query::Query::new(crate::query::Kind::Tests, filter)
    }
}

/// One running job: its tag and summary lines.
pub type RunningJob = (String, Vec<SummaryLine>);

/// Every job with a RUNNING test (in job tag order) with its summary, as
/// `tko summary --running` and `GET /api/running` show them.
pub fn running_jobs(
    wh: &mut crate::query::Warehouse,
    now: i64,
) -> Result<Vec<RunningJob>, crate::query::Error> {
    let running = crate::query::Filter {
        status: vec![crate::model::Status::Running],
        ..crate::query::Filter::default()
    };
    let mut tags = super::JobTags::default();
    wh.export(
        &crate::query::Query::new(crate::query::Kind::Jobs, running),
        &mut tags,
    )?;
    let mut out = Vec::with_capacity(tags.tags.len());
    for tag in tags.tags {
        let mut job = super::Records::default();
        wh.export(&summary_query(crate::query::Filter::job(&tag)), &mut job)?;
        let lines = summarize(&job.records, now);
        out.push((tag, lines));
    }
    Ok(out)
}

/// Seconds since the epoch now: a running test's elapsed time so far.
pub fn now_epoch() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Groups records by test name, in order of first appearance; `now` (epoch
/// seconds) ends the elapsed time of a running test in a job that has not
/// finished.
pub fn summarize(records: &[TestRecord], now: i64) -> Vec<SummaryLine> {
    let mut lines: Vec<SummaryLine> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let i = *at.entry(&r.test).or_insert_with(|| {
            lines.push(SummaryLine {
                test: r.test.clone(),
                subdir: None,
                passes: 0,
                fails: 0,
                elapsed_s: 0,
                starts: 0,
                running: false,
                last_status: String::new(),
                information: String::new(),
                status_time: None,
            });
            lines.len() - 1
        });
        let l = &mut lines[i];
        let running = r.status == "RUNNING";
        l.starts += 1;
        l.passes += u64::from(passes(&r.status));
        l.fails += u64::from(fails(&r.status));
        let so_far = || {
            let start = epoch_of(r.started_time.as_deref()?)?;
            let end = r
                .job_finished_time
                .as_deref()
                .and_then(epoch_of)
                .unwrap_or(now);
            Some(end - start)
        };
        let elapsed = match r.duration_s {
            Some(d) => Some(d),
            None if running => so_far(),
            None => None,
        };
        l.elapsed_s += elapsed.unwrap_or(0).max(0);
        l.last_status.clone_from(&r.status);
        l.running = running;
        l.subdir.clone_from(&r.subdir);
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        if let Some(text) = non_empty(&r.information).or_else(|| non_empty(&r.reason)) {
            l.information = text;
        }
        l.status_time = r
            .finished_time
            .clone()
            .or_else(|| r.information_time.clone().filter(|_| running))
            .or_else(|| r.started_time.clone());
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
        lines.iter().filter(|l| l.running).count(),
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

/// Writes the summary of job `tag` as JSON Lines, one object per test:
/// `job` and the [`SummaryLine`] keys `test`, `subdir`, `passes`, `fails`,
/// `elapsed_s`, `starts`, `running`, `last_status`, `information`,
/// `status_time`.
pub fn write_summary_json<W: Write>(
    mut out: W,
    tag: &str,
    lines: &[SummaryLine],
) -> io::Result<()> {
    /// One test of one job: the job's tag and the line's own keys.
    #[derive(Serialize)]
    struct TestJson<'a> {
        job: &'a str,
        #[serde(flatten)]
        line: &'a SummaryLine,
    }
    for line in lines {
        serde_json::to_writer(&mut out, &TestJson { job: tag, line })?;
        writeln!(out)?;
    }
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
                if l.running {
                    "running".to_owned()
                } else {
                    l.last_status.clone()
                },
                one_line(&l.information),
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
    fn running_test_counts_time_so_far_and_shows_its_information() {
        let mut r = rec("t", "RUNNING", None, "started");
        r.started_time = Some("2011-03-13 07:06:40".into());
        r.information = Some("Percent Complete: 40%".into());
        r.information_time = Some("2011-03-13 07:07:00".into());
        let lines = summarize(std::slice::from_ref(&r), 1_300_000_100);
        assert_eq!(lines[0].elapsed_s, 100);
        assert!(lines[0].running);
        assert_eq!(lines[0].information, "Percent Complete: 40%");
        assert_eq!(lines[0].status_time.as_deref(), Some("2011-03-13 07:07:00"));
        // A finished job ends the running time at its finished time.
        r.job_finished_time = Some("2011-03-13 07:07:10".into());
        r.information = None;
        let lines = summarize(&[r], 1_300_000_100);
        assert_eq!(lines[0].elapsed_s, 30);
        assert_eq!(lines[0].information, "started");
    }

    #[test]
    fn summary_groups_runs_and_shows_running() {
        let r = [
            rec("a", "FAIL", Some(5), "bad"),
            rec("b", "RUNNING", None, ""),
            rec("a", "GOOD", Some(70), ""),
        ];
        let lines = summarize(&r, 0);
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
        assert_eq!(lines[0].information, "bad");
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
