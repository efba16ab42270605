//! The jobs listing of `tko serve`: one page of jobs, newest first (by
//! `job_idx`, i.e. the most recently loaded first), each with its test
//! counts per status word and its worst status (Autotest's ranking,
//! [`Status`]), under the same [`Filter`] as `export jobs`. Paging is by
//! keyset: the cursor is the last `job_idx` shown, so a page costs the
//! same however deep it is and loads in between never shift it. One
//! statement per page on either store; its values (filters, cursor, limit)
//! are parameters, so the statement is prepared once per connection and
//! its plan kept ([`Warehouse::rows_prepared`]).

use super::plan::{job_conds, job_test_exists, ts, Column, Plan, Sql};
use super::{Error, Filter, Warehouse};
use crate::model::Status;
use serde::Serialize;
use std::collections::BTreeMap;

/// One job of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    /// Job tag.
    pub tag: String,
    /// Autotest frontend job id.
    pub afe_job_id: Option<i64>,
    /// Label.
    pub label: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Machine (hostname).
    pub machine: Option<String>,
    /// Queued (`YYYY-MM-DD HH:MM:SS` UTC).
    pub queued_time: Option<String>,
    /// Started.
    pub started_time: Option<String>,
    /// Finished.
    pub finished_time: Option<String>,
    /// The worst test status (`None` for a job without tests).
    pub status: Option<String>,
    /// Tests per status word.
    pub counts: BTreeMap<String, u64>,
    /// Some test is RUNNING.
    pub running: bool,
}

/// One page of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Parses a cursor given by [`JobPage::next_cursor`].
pub fn parse_cursor(s: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::Filter(format!("cursor: {s:?} is not a cursor this server gave")))
}

/// Plans the statement: the page's jobs (at most `limit + 1`, to know
/// whether there is a next page) joined with their per-status counts.
fn plan(f: &Filter, limit: u64, before: Option<i64>, d: super::Dialect) -> Result<Plan, Error> {
    let mut inner = Sql::bound(d);
    inner.push(
        "SELECT j.job_idx FROM tko_jobs j JOIN tko_machines m ON m.machine_idx = j.machine_idx \
         WHERE true",
    );
    job_conds(&mut inner, f, true)?;
    job_test_exists(&mut inner, f)?;
    if let Some(b) = before {
        inner.push(" AND j.job_idx < ");
        inner.int(b)?;
    }
    inner.push(" ORDER BY j.job_idx DESC LIMIT ");
    inner.int(i64::try_from(limit + 1).unwrap_or(i64::MAX))?;
    // The page's jobs first; then its tests counted per job and status
    // (grouping two integers, not the job's text columns), named last.
    // Jobs are found by key from the page (`IN`): SQLite, not knowing the
    // bound limit, would otherwise scan every job and probe the page.
    let sql = format!(
        "WITH page AS ({}), \
         c AS (SELECT t.job_idx, t.status, count(*) AS n FROM tko_tests t \
               WHERE t.job_idx IN (SELECT job_idx FROM page) GROUP BY t.job_idx, t.status) \
         SELECT j.job_idx, j.tag, j.afe_job_id, j.label, j.username, m.hostname, {}, {}, {}, \
         s.word, c.n \
         FROM tko_jobs j JOIN tko_machines m ON m.machine_idx = j.machine_idx \
         LEFT JOIN c ON c.job_idx = j.job_idx \
         LEFT JOIN tko_status s ON s.status_idx = c.status \
         WHERE j.job_idx IN (SELECT job_idx FROM page) \
         ORDER BY j.job_idx DESC",
        inner.text,
        ts(d, "j.queued_time"),
        ts(d, "j.started_time"),
        ts(d, "j.finished_time"),
    );
    Ok(Plan {
        sql,
        params: inner.params,
        columns: Vec::<Column>::new(),
        pivot: None,
    })
}

impl Warehouse {
    /// One page of jobs, newest first: at most `limit` (at least 1) jobs
    /// matching `f`, older than the job of `cursor` when given.
    pub fn job_page(
        &mut self,
        f: &Filter,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<JobPage, Error> {
        f.validate()?;
        let limit = limit.max(1);
        let before = cursor.map(parse_cursor).transpose()?;
        let p = plan(f, limit, before, self.dialect())?;
        let mut jobs: Vec<(i64, JobSummary)> = Vec::new();
        self.rows_prepared(&p, &mut |r| {
            let idx: i64 = r[0].and_then(|v| v.parse().ok()).unwrap_or_default();
            if jobs.last().is_none_or(|(i, _)| *i != idx) {
                let s = |i: usize| r[i].map(str::to_owned);
                jobs.push((
                    idx,
                    JobSummary {
                        tag: s(1).unwrap_or_default(),
                        afe_job_id: r[2].and_then(|v| v.parse().ok()),
                        label: s(3),
                        user: s(4),
                        machine: s(5),
                        queued_time: s(6),
                        started_time: s(7),
                        finished_time: s(8),
                        status: None,
                        counts: BTreeMap::new(),
                        running: false,
                    },
                ));
            }
            let job = &mut jobs.last_mut().expect("pushed").1;
            if let Some(word) = r[9] {
                let n: u64 = r[10].and_then(|v| v.parse().ok()).unwrap_or_default();
                *job.counts.entry(word.to_owned()).or_default() += n;
                let st = Status::from_word(word);
                let worse = match (&job.status, st) {
                    (None, _) => true,
                    (Some(cur), Some(st)) => {
                        Status::from_word(cur).is_none_or(|c| st.is_worse_than(c))
                    }
                    (Some(_), None) => false,
                };
                if worse {
                    job.status = Some(word.to_owned());
                }
                job.running |= word == Status::Running.word();
            }
            Ok(())
        })?;
        let more = jobs.len() as u64 > limit;
        jobs.truncate(limit as usize);
        let next_cursor = if more {
            jobs.last().map(|(i, _)| i.to_string())
        } else {
            None
        };
        Ok(JobPage {
            jobs: jobs.into_iter().map(|(_, j)| j).collect(),
            next_cursor,
        })
    }
}
