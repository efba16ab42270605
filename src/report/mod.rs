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

pub mod compare;
pub mod diagnostics;
pub mod flaky;
pub mod history;
pub mod stats;
pub mod summary;
pub mod text;
pub mod trend;
pub mod welch;

pub use stats::{write_stats_json, write_stats_text, Stats, StatsBuilder};
pub use summary::{
    now_epoch, running_jobs, summarize, summary_query, write_summary, write_summary_json,
    RunningJob, SummaryJson, SummaryLine,
};
pub use text::format_elapsed;

use crate::model::Job;
use crate::query::{Column, Sink};
use std::io;

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
    /// Test subdirectory (`None` for `----`).
    pub subdir: Option<String>,
    /// Status word.
    pub status: String,
    /// Reason.
    pub reason: Option<String>,
    /// Finished minus started, in seconds, when both are known.
    pub duration_s: Option<i64>,
    /// Finished time, `YYYY-MM-DD HH:MM:SS` UTC.
    pub finished_time: Option<String>,
    /// Started time, `YYYY-MM-DD HH:MM:SS` UTC.
    pub started_time: Option<String>,
    /// The test's last information message (only from a query with
    /// `information`, or a parsed job).
    pub information: Option<String>,
    /// When it was recorded, `YYYY-MM-DD HH:MM:SS` UTC.
    pub information_time: Option<String>,
    /// The job's finished time, `YYYY-MM-DD HH:MM:SS` UTC.
    pub job_finished_time: Option<String>,
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of an epoch timestamp.
pub(crate) fn db_time(t: crate::model::Timestamp) -> Option<String> {
    jiff::Timestamp::from_second(t)
        .ok()
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M:%S").to_string())
}

/// The epoch seconds of a `YYYY-MM-DD HH:MM:SS` (UTC) time.
pub(crate) fn epoch_of(t: &str) -> Option<i64> {
    let ts: jiff::Timestamp = format!("{}Z", t.trim().replace(' ', "T")).parse().ok()?;
    Some(ts.as_second())
}

pub(crate) const PASS: &[&str] = &["GOOD"];
pub(crate) const FAIL: &[&str] = &["FAIL", "ERROR", "ABORT"];

pub(crate) fn passes(status: &str) -> bool {
    PASS.contains(&status)
}

pub(crate) fn fails(status: &str) -> bool {
    FAIL.contains(&status)
}

/// The records of a parsed job (no database).
pub fn records_from_job(job: &Job) -> Vec<TestRecord> {
    // Text as the warehouse stores it (Latin-1 lines decoded), so a job
    // read directly reads as the same job loaded.
    let text = |s: &str| crate::text::stored(s).into_owned();
    job.tests
        .iter()
        .map(|t| TestRecord {
            job_tag: text(&job.tag),
            label: job.label.as_deref().map(text),
            machine: Some(text(&job.machine)),
            machine_group: Some(text(&job.machine_group)),
            kernel: Some(text(&t.kernel.base)),
            test: text(&t.testname),
            status: t.status.word().to_owned(),
            reason: t.reason.as_deref().map(text),
            duration_s: t.started_time.zip(t.finished_time).map(|(s, f)| f - s),
            subdir: t.subdir.as_deref().map(text),
            finished_time: t.finished_time.and_then(db_time),
            started_time: t.started_time.and_then(db_time),
            information: t.information.as_ref().map(|i| text(&i.message)),
            information_time: t
                .information
                .as_ref()
                .and_then(|i| i.time)
                .and_then(db_time),
            job_finished_time: job.finished_time.and_then(db_time),
        })
        .collect()
}

/// Test, kernel, machine group, and the machine when the group is empty:
/// where a test's runs are compared for flakiness (runs on different
/// machines without a group are never compared).
pub(crate) type FlakyKey = (String, Option<String>, Option<String>, Option<String>);

/// The [`FlakyKey`] of a record.
pub(crate) fn flaky_key(r: &TestRecord) -> FlakyKey {
    let group_empty = r.machine_group.as_deref().is_none_or(str::is_empty);
    (
        r.test.clone(),
        r.kernel.clone(),
        r.machine_group.clone(),
        if group_empty { r.machine.clone() } else { None },
    )
}

/// Column positions of a `tests` export ([`crate::query::TEST_COLUMNS`]),
/// found once per query; opaque outside this module.
pub struct Cols {
    job_tag: usize,
    label: usize,
    machine: usize,
    machine_group: usize,
    kernel: usize,
    test: usize,
    status: usize,
    reason: usize,
    duration_s: usize,
    subdir: usize,
    finished_time: usize,
    started_time: usize,
    information: Option<usize>,
    information_time: Option<usize>,
    job_finished_time: Option<usize>,
}

impl Cols {
    pub(crate) fn find(columns: &[Column]) -> io::Result<Cols> {
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
            subdir: at("subdir")?,
            finished_time: at("finished_time")?,
            started_time: at("started_time")?,
            information: at("information").ok(),
            information_time: at("information_time").ok(),
            job_finished_time: at("job_finished_time").ok(),
        })
    }

    pub(crate) fn record(&self, f: &[Option<&str>]) -> TestRecord {
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
            subdir: s(self.subdir),
            finished_time: s(self.finished_time),
            started_time: s(self.started_time),
            information: self.information.and_then(s),
            information_time: self.information_time.and_then(s),
            job_finished_time: self.job_finished_time.and_then(s),
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

impl RecordSink for Records {
    fn cols_slot(&mut self) -> &mut Option<Cols> {
        &mut self.cols
    }

    fn take(&mut self, r: TestRecord) {
        self.records.push(r);
    }
}

/// Something built from the rows of a `tests` query one [`TestRecord`] at
/// a time (records, stats, flakiness, trends): every such builder is a
/// query [`Sink`] through the one implementation below.
pub trait RecordSink {
    /// Where the sink keeps the column positions found by `begin`.
    fn cols_slot(&mut self) -> &mut Option<Cols>;
    /// One record.
    fn take(&mut self, r: TestRecord);
}

impl<T: RecordSink> Sink for T {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        *self.cols_slot() = Some(Cols::find(columns)?);
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        let r = self
            .cols_slot()
            .as_ref()
            .expect("begin before row")
            .record(fields);
        self.take(r);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`Sink`] collecting the `job_tag` column of a query (e.g. the jobs
/// with a RUNNING test, for `tko summary --running`).
#[derive(Default)]
pub struct JobTags {
    at: usize,
    /// The tags, in query order.
    pub tags: Vec<String>,
}

impl Sink for JobTags {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.at = columns
            .iter()
            .position(|c| c.name == "job_tag")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no column job_tag"))?;
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        self.tags
            .push(fields[self.at].unwrap_or_default().to_owned());
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn rec(test: &str, status: &str, d: Option<i64>, reason: &str) -> TestRecord {
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
            subdir: None,
            finished_time: None,
            started_time: None,
            information: None,
            information_time: None,
            job_finished_time: None,
        }
    }
}
