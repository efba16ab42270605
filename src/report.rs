//! Summaries and statistics over test rows: `tko summary` (one line per
//! test of one job, like a test harness's testcase listing) and `tko stats`
//! (totals, pass rates, counts by status, machine, label and kernel,
//! durations, most executed and flaky tests). Both read [`TestRecord`]s,
//! which come either from a `tests` export of the warehouse (streamed
//! through [`StatsBuilder`] / [`Records`], both [`Sink`]s, so stats keep
//! only per-group counters, never the rows) or from a parsed [`Job`]
//! ([`records_from_job`], for a job directory read without a database).
//! A test **passes** when its status is GOOD and **fails** when it is FAIL,
//! ERROR or ABORT; other statuses (WARN, TEST_NA, NOSTATUS, ALERT, BUG)
//! count as runs only; RUNNING tests are shown as running and left out of
//! pass rates.

use crate::export::{Column, Sink};
use crate::model::{Job, Status};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

/// One test row, as summaries and statistics need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// Job tag.
    pub job_tag: String,
    /// Job label.
    pub label: Option<String>,
    /// The job's machine.
    pub machine: Option<String>,
    /// The machine's group (platforms).
    pub machine_group: Option<String>,
    /// Kernel (base version).
    pub kernel: Option<String>,
    /// Test name (empty when NULL).
    pub test: String,
    /// Status word.
    pub status: String,
    /// Reason.
    pub reason: Option<String>,
    /// Finished minus started, in seconds, when both are known.
    pub duration_s: Option<i64>,
}

const PASS: &[&str] = &["GOOD"];
const FAIL: &[&str] = &["FAIL", "ERROR", "ABORT"];

fn passes(status: &str) -> bool {
    PASS.contains(&status)
}

fn fails(status: &str) -> bool {
    FAIL.contains(&status)
}

/// The records of a parsed job (no database).
pub fn records_from_job(job: &Job) -> Vec<TestRecord> {
    job.tests
        .iter()
        .map(|t| TestRecord {
            job_tag: job.tag.clone(),
            label: job.label.clone(),
            machine: Some(job.machine.clone()),
            machine_group: Some(job.machine_group.clone()),
            kernel: Some(t.kernel.base.clone()),
            test: t.testname.clone(),
            status: t.status.word().to_owned(),
            reason: t.reason.clone(),
            duration_s: t.started_time.zip(t.finished_time).map(|(s, f)| f - s),
        })
        .collect()
}

/// Column positions of a `tests` export ([`crate::export::TEST_COLUMNS`]).
struct Cols {
    job_tag: usize,
    label: usize,
    machine: usize,
    machine_group: usize,
    kernel: usize,
    test: usize,
    status: usize,
    reason: usize,
    duration_s: usize,
}

impl Cols {
    fn find(columns: &[Column]) -> io::Result<Cols> {
        let at = |name: &str| {
            columns.iter().position(|c| c.name == name).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a tests export: no column {name}"),
                )
            })
        };
        Ok(Cols {
            job_tag: at("job_tag")?,
            label: at("label")?,
            machine: at("machine")?,
            machine_group: at("machine_group")?,
            kernel: at("kernel")?,
            test: at("test")?,
            status: at("status")?,
            reason: at("reason")?,
            duration_s: at("duration_s")?,
        })
    }

    fn record(&self, f: &[Option<&str>]) -> TestRecord {
        let s = |i: usize| f[i].map(str::to_owned);
        TestRecord {
            job_tag: s(self.job_tag).unwrap_or_default(),
            label: s(self.label),
            machine: s(self.machine),
            machine_group: s(self.machine_group),
            kernel: s(self.kernel),
            test: s(self.test).unwrap_or_default(),
            status: s(self.status).unwrap_or_default(),
            reason: s(self.reason),
            duration_s: f[self.duration_s].and_then(|d| d.parse().ok()),
        }
    }
}

/// A [`Sink`] collecting the records of a (small) `tests` export, e.g. one
/// job's for a summary.
#[derive(Default)]
pub struct Records {
    cols: Option<Cols>,
    /// The records, in export order.
    pub records: Vec<TestRecord>,
}

impl Sink for Records {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.cols = Some(Cols::find(columns)?);
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        let cols = self.cols.as_ref().expect("begin before row");
        self.records.push(cols.record(fields));
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ------------------------------------------------------------- summary

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

/// `90s` → `1m30s`, `3725` → `1h02m05s`.
pub fn format_elapsed(s: i64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// Writes the summary of job `tag`: a title line, then a table.
pub fn write_summary<W: Write>(mut out: W, tag: &str, lines: &[SummaryLine]) -> io::Result<()> {
    let runs: u64 = lines.iter().map(|l| l.starts).sum();
    let passed: u64 = lines.iter().map(|l| l.passes).sum();
    let failed: u64 = lines.iter().map(|l| l.fails).sum();
    let running = lines.iter().filter(|l| l.last_status == "RUNNING").count();
    writeln!(
        out,
        "{tag}: {} tests, {runs} runs, {passed} passed, {failed} failed, {running} running",
        lines.len()
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

/// Newlines and tabs as spaces, so one test stays on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A plain-text table: columns padded to their widest cell (right-aligned
/// where `right`), trailing spaces trimmed.
fn table<W: Write>(
    out: &mut W,
    headers: &[&str],
    right: &[bool],
    rows: Vec<Vec<String>>,
) -> io::Result<()> {
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for r in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width[i] - c.chars().count();
            if right[i] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

// ------------------------------------------------------------- stats

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

/// A test that both passed and failed on one kernel and machine group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flaky {
    /// Test name.
    pub test: String,
    /// Kernel.
    pub kernel: Option<String>,
    /// Machine group.
    pub machine_group: Option<String>,
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
    /// The ten tests run most often.
    pub most_executed: Vec<Executed>,
    /// Tests that passed and failed on the same kernel and machine group.
    pub flaky: Vec<Flaky>,
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
    by_flaky: HashMap<(String, Option<String>, Option<String>), Count>,
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
        self.by_flaky
            .entry((r.test.clone(), r.kernel.clone(), r.machine_group.clone()))
            .or_default()
            .add(s);
    }

    /// The statistics so far.
    pub fn build(&self) -> Stats {
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
        most.truncate(10);
        let mut flaky: Vec<Flaky> = self
            .by_flaky
            .iter()
            .filter(|(_, c)| c.passed > 0 && c.failed > 0)
            .map(|((t, k, g), c)| Flaky {
                test: t.clone(),
                kernel: k.clone(),
                machine_group: g.clone(),
                passed: c.passed,
                failed: c.failed,
            })
            .collect();
        flaky.sort_by(|a, b| {
            (&a.test, &a.kernel, &a.machine_group).cmp(&(&b.test, &b.kernel, &b.machine_group))
        });
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
            by_machine: groups(&self.by_machine),
            by_label: groups(&self.by_label),
            by_kernel: groups(&self.by_kernel),
            most_executed: most,
            flaky,
        }
    }
}

impl Sink for StatsBuilder {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.cols = Some(Cols::find(columns)?);
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        let r = self.cols.as_ref().expect("begin before row").record(fields);
        self.add(&r);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
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
    for (title, head, groups) in [
        ("by machine", "MACHINE", &st.by_machine),
        ("by label", "LABEL", &st.by_label),
        ("by kernel", "KERNEL", &st.by_kernel),
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
    writeln!(
        out,
        "\nflaky tests (passed and failed on one kernel and machine group)"
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
                    f.passed.to_string(),
                    f.failed.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &["TEST", "KERNEL", "MACHINE GROUP", "PASSED", "FAILED"],
            &[false, false, false, true, true],
            rows,
        )?;
    }
    out.flush()
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

    fn rec(test: &str, status: &str, d: Option<i64>, reason: &str) -> TestRecord {
        TestRecord {
            job_tag: "1-a/h".into(),
            label: None,
            machine: Some("h".into()),
            machine_group: Some("x86_64".into()),
            kernel: Some("2.6".into()),
            test: test.into(),
            status: status.into(),
            reason: Some(reason.into()),
            duration_s: d,
        }
    }

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
