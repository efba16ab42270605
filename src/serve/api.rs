//! The JSON API (`/api/...`, described by `/api/openapi.json`): jobs with
//! their worst status and counts, one job in full, tests, statistics,
//! running jobs and one test's history. Query parameters are the export
//! filters; an unknown parameter or a bad value is a 400 naming it.

use super::{run_query, App, Failure};
use crate::export::{self, Format};
use crate::query::{
    parse_status, parse_time, Filter, JobDetail, JobPage, Kind, Query as ExportQuery, Warehouse,
};
use crate::report::{self, Stats};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Query parameters, as given (repeated names kept).
pub type Params = Vec<(String, String)>;

/// The filter parameters.
pub const FILTERS: [&str; 8] = [
    "job", "label", "machine", "test", "status", "kernel", "since", "until",
];

/// Most rows a page may ask for.
pub const MAX_LIMIT: u64 = 1000;

/// Filter and paging read from query parameters.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// The filter.
    pub filter: Filter,
    /// `limit`.
    pub limit: Option<u64>,
    /// `cursor`.
    pub cursor: Option<String>,
}

/// Reads the filter parameters plus `extra` ones (returned by name); an
/// unknown parameter or a bad value is a 400 naming it. Empty values
/// count as absent (an HTML form sends every field).
pub fn parse_params(
    params: &Params,
    extra: &[&str],
) -> Result<(Asked, Vec<(String, String)>), Failure> {
    let mut a = Asked::default();
    let mut rest = Vec::new();
    for (k, v) in params {
        if v.is_empty() {
            continue;
        }
        let f = &mut a.filter;
        match k.as_str() {
            "job" => f.job = Some(v.clone()),
            "label" => f.label = Some(v.clone()),
            "machine" => f.machine = Some(v.clone()),
            "test" if !extra.contains(&"test") => f.test = Some(v.clone()),
            "kernel" => f.kernel = Some(v.clone()),
            "status" => {
                for w in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let st = parse_status(w).map_err(|e| {
                        Failure::bad("status", e.to_string().trim_start_matches("--").to_owned())
                    })?;
                    if !f.status.contains(&st) {
                        f.status.push(st);
                    }
                }
            }
            "since" | "until" => {
                let t = parse_time(v, k == "until")
                    .map_err(|e| Failure::bad(k, format!("{k}: {e}")))?;
                if k == "since" {
                    f.since = Some(t);
                } else {
                    f.until = Some(t);
                }
            }
            "limit" => {
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Failure::bad(
                            "limit",
                            format!("limit: {v:?} is not a number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
                a.limit = Some(n);
            }
            "cursor" => a.cursor = Some(v.clone()),
            k if extra.contains(&k) => rest.push((k.to_owned(), v.clone())),
            k => {
                return Err(Failure::bad(
                    k,
                    format!(
                        "{k}: unknown parameter; known: {}",
                        FILTERS
                            .iter()
                            .chain(&["limit", "cursor"])
                            .chain(extra)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
    }
    a.filter
        .validate()
        .map_err(|e| Failure::from(crate::query::Error::Filter(e.to_string())))?;
    Ok((a, rest))
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "status": self.status.as_u16() });
        if let Some(p) = self.parameter {
            body["parameter"] = Value::String(p);
        }
        (self.status, Json(body)).into_response()
    }
}

/// The API routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{tag}", get(job))
        .route("/api/tests", get(tests))
        .route("/api/stats", get(stats))
        .route("/api/running", get(running))
        .route("/api/history", get(history))
        .route("/api/history/perf", get(perf_history))
        .route("/api/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// Default page size.
pub const DEFAULT_LIMIT: u64 = 50;

/// One page of jobs (shared with the jobs page).
pub async fn job_page(app: &Arc<App>, a: Asked) -> Result<JobPage, Failure> {
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
    run_query(app, move |wh| {
        wh.job_page(&a.filter, limit, a.cursor.as_deref())
    })
    .await
}

async fn jobs(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
) -> Result<Json<JobPage>, Failure> {
    let (a, _) = parse_params(&p, &[])?;
    Ok(Json(job_page(&app, a).await?))
}

/// Rows of `query` as JSON objects (typed as `tko export --format json`).
pub fn rows_json(
    wh: &mut Warehouse,
    query: &ExportQuery,
) -> Result<Vec<Value>, crate::query::Error> {
    let mut buf = Vec::new();
    export::write(wh, query, Format::Json, &mut buf)?;
    Ok(buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect())
}

/// `GET /api/jobs/{tag}`: the job in full (tests with their attributes,
/// iterations and information nested) plus its testcase summary.
#[derive(Debug, Serialize)]
pub struct JobAnswer {
    /// The job, keyvals, tests, diagnostics.
    #[serde(flatten)]
    pub detail: JobDetail,
    /// The summary lines (`tko summary`), one per test name.
    pub summary: Vec<report::SummaryLine>,
}

/// The records `tko summary` reads, from a job read in full.
pub fn records(d: &JobDetail) -> Vec<report::TestRecord> {
    let j = &d.job;
    d.tests
        .iter()
        .map(|t| report::TestRecord {
            job_tag: j.tag.clone(),
            label: j.label.clone(),
            machine: j.machine.clone(),
            machine_group: j.machine_group.clone(),
            kernel: t.kernel.clone(),
            test: t.test.clone().unwrap_or_default(),
            subdir: t.subdir.clone(),
            status: t.status.clone(),
            reason: t.reason.clone(),
            duration_s: t.duration_s,
            finished_time: t.finished_time.clone(),
            started_time: t.started_time.clone(),
            information: t.information.as_ref().map(|i| i.message.clone()),
            information_time: t.information.as_ref().and_then(|i| i.time.clone()),
            job_finished_time: j.finished_time.clone(),
        })
        .collect()
}

/// Reads job `tag` (one statement); `None` when there is no such job.
pub fn read_job(wh: &mut Warehouse, tag: &str) -> Result<Option<JobAnswer>, crate::query::Error> {
    Ok(wh.job_detail(tag)?.map(|detail| JobAnswer {
        summary: report::summarize(&records(&detail), report::now_epoch()),
        detail,
    }))
}

/// Job `tag` or a 404.
pub async fn job_detail(app: &Arc<App>, tag: String) -> Result<JobAnswer, Failure> {
    let t = tag.clone();
    run_query(app, move |wh| read_job(wh, &t))
        .await?
        .ok_or_else(|| Failure::not_found(format!("no job {tag:?} in the warehouse")))
}

async fn job(
    State(app): State<Arc<App>>,
    Path(tag): Path<String>,
) -> Result<Json<JobAnswer>, Failure> {
    Ok(Json(job_detail(&app, tag).await?))
}

async fn tests(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
) -> Result<Json<Value>, Failure> {
    let (a, _) = parse_params(&p, &[])?;
    let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = match a.cursor.as_deref() {
        None => 0,
        Some(c) => c.parse::<u64>().map_err(|_| {
            Failure::bad(
                "cursor",
                format!("cursor: {c:?} is not a cursor this server gave"),
            )
        })?,
    };
    let q = ExportQuery {
        limit: Some(limit + 1),
        offset: Some(offset),
        ..ExportQuery::new(Kind::Tests, a.filter)
    };
    let mut rows = run_query(&app, move |wh| rows_json(wh, &q)).await?;
    let next = (rows.len() as u64 > limit).then(|| (offset + limit).to_string());
    rows.truncate(limit as usize);
    Ok(Json(json!({ "tests": rows, "next_cursor": next })))
}

/// Statistics and the per-day pass rate (shared with the stats page).
pub async fn read_stats(
    app: &Arc<App>,
    f: Filter,
    top: usize,
) -> Result<(Stats, Vec<report::trend::Day>), Failure> {
    run_query(app, move |wh| {
        let q = ExportQuery::new(Kind::Tests, f);
        let mut b = report::StatsBuilder::default();
        wh.export(&q, &mut b)?;
        let mut t = report::trend::TrendBuilder::default();
        wh.export(&q, &mut t)?;
        Ok((b.build_top(top), t.build()))
    })
    .await
}

fn top_param(rest: &[(String, String)]) -> Result<usize, Failure> {
    match rest.iter().find(|(k, _)| k == "top") {
        None => Ok(crate::report::stats::DEFAULT_TOP),
        Some((_, v)) => v
            .parse()
            .map_err(|_| Failure::bad("top", format!("top: {v:?} is not a number"))),
    }
}

async fn stats(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
) -> Result<Json<Stats>, Failure> {
    let (a, rest) = parse_params(&p, &["top"])?;
    let top = top_param(&rest)?;
    Ok(Json(read_stats(&app, a.filter, top).await?.0))
}

/// Every job with a RUNNING test, with its summary (as `tko summary
/// --running`).
pub async fn read_running(app: &Arc<App>) -> Result<Vec<report::RunningJob>, Failure> {
    run_query(app, |wh| report::running_jobs(wh, report::now_epoch())).await
}

async fn running(State(app): State<Arc<App>>) -> Result<Json<Value>, Failure> {
    let jobs = read_running(&app).await?;
    let v: Vec<Value> = jobs
        .iter()
        .map(|(tag, lines)| json!(report::SummaryJson::new(tag, lines)))
        .collect();
    Ok(Json(json!({ "jobs": v })))
}

/// A history request: one test (exact name), optionally narrowed to
/// machines and kernels (globs), at most `last` runs or values; for a perf
/// plot also the perf key and the x axis.
#[derive(Debug, Clone, Default)]
pub struct HistoryAsk {
    /// Test name.
    pub test: Option<String>,
    /// Machine glob.
    pub machine: Option<String>,
    /// Kernel glob.
    pub kernel: Option<String>,
    /// At most this many runs (history) or values (perf).
    pub last: u64,
    /// Perf key.
    pub key: Option<String>,
    /// Perf plot x axis.
    pub by: By,
}

/// The x axis of a perf plot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum By {
    /// Finished time.
    #[default]
    Time,
    /// Kernel, in order of first run.
    Kernel,
}

impl HistoryAsk {
    /// The filter: the test exactly, machine and kernel globs.
    pub fn filter(&self, test: &str) -> Result<Filter, Failure> {
        let f = Filter {
            test: Some(crate::query::glob_escape(test)),
            machine: self.machine.clone(),
            kernel: self.kernel.clone(),
            ..Filter::default()
        };
        f.validate()?;
        Ok(f)
    }

    /// The test, or a 400 saying it is required.
    pub fn need_test(&self) -> Result<String, Failure> {
        self.test
            .clone()
            .ok_or_else(|| Failure::bad("test", "test: required (a test name)"))
    }
}

/// Reads a history request's parameters; `known` are the ones this
/// endpoint takes (of `test`, `machine`, `kernel`, `last`, `key`, `by`).
pub fn history_params(p: &Params, known: &[&str]) -> Result<HistoryAsk, Failure> {
    let mut a = HistoryAsk {
        last: 100,
        ..HistoryAsk::default()
    };
    for (k, v) in p {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            k if !known.contains(&k) => {
                return Err(Failure::bad(
                    k,
                    format!("{k}: unknown parameter; known: {}", known.join(", ")),
                ))
            }
            "test" => a.test = Some(v.clone()),
            "machine" => a.machine = Some(v.clone()),
            "kernel" => a.kernel = Some(v.clone()),
            "key" => a.key = Some(v.clone()),
            "by" => {
                a.by = match v.as_str() {
                    "time" => By::Time,
                    "kernel" => By::Kernel,
                    _ => {
                        return Err(Failure::bad(
                            "by",
                            format!("by: {v:?} is neither time nor kernel"),
                        ))
                    }
                }
            }
            _ => {
                a.last = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Failure::bad(
                            "last",
                            format!("last: {v:?} is not a number from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
        }
    }
    Ok(a)
}

/// Parameters of `/api/history`.
pub const HISTORY_PARAMS: [&str; 4] = ["test", "machine", "kernel", "last"];
/// Parameters of `/api/history/perf`.
pub const PERF_PARAMS: [&str; 5] = ["test", "key", "machine", "kernel", "last"];

/// One test's history (as `tko history`).
pub async fn read_history(
    app: &Arc<App>,
    test: String,
    a: &HistoryAsk,
) -> Result<report::history::History, Failure> {
    let q = ExportQuery {
        newest_first: true,
        limit: Some(a.last),
        ..ExportQuery::new(Kind::Tests, a.filter(&test)?)
    };
    let records = run_query(app, move |wh| {
        let mut r = report::Records::default();
        wh.export(&q, &mut r)?;
        Ok(r.records)
    })
    .await?;
    Ok(report::history::history(&test, &records))
}

async fn history(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
) -> Result<Json<report::history::History>, Failure> {
    let a = history_params(&p, &HISTORY_PARAMS)?;
    let test = a.need_test()?;
    Ok(Json(read_history(&app, test, &a).await?))
}

/// `GET /api/history/perf`: one perf key of one test over time.
#[derive(Debug, Serialize)]
pub struct PerfHistory {
    /// Test name.
    pub test: String,
    /// Perf key.
    pub key: String,
    /// Its finite values, newest run first.
    pub points: Vec<crate::query::PerfPoint>,
}

/// The values of perf key `key` of `test`, and every perf key the test
/// has (to choose from), in one connection.
pub async fn read_perf(
    app: &Arc<App>,
    test: String,
    key: Option<String>,
    a: &HistoryAsk,
) -> Result<(Vec<String>, Option<PerfHistory>), Failure> {
    let f = a.filter(&test)?;
    let last = a.last;
    run_query(app, move |wh| {
        let keys = wh.perf_keys(&f)?;
        let series = match key {
            None => None,
            Some(key) => Some(PerfHistory {
                points: wh.perf_series(&f, &key, last)?,
                test,
                key,
            }),
        };
        Ok((keys, series))
    })
    .await
}

async fn perf_history(
    State(app): State<Arc<App>>,
    Query(p): Query<Params>,
) -> Result<Json<PerfHistory>, Failure> {
    let a = history_params(&p, &PERF_PARAMS)?;
    let test = a.need_test()?;
    let key = a
        .key
        .clone()
        .ok_or_else(|| Failure::bad("key", "key: required (a perf key)"))?;
    let f = a.filter(&test)?;
    let last = a.last;
    let points = run_query(&app, move |wh| wh.perf_series(&f, &key, last)).await?;
    Ok(Json(PerfHistory {
        test,
        key: a.key.unwrap_or_default(),
        points,
    }))
}
