//! HTML pages (maud templates; every value is escaped by maud, so a
//! hostile reason or test name renders as text): the jobs list, one job
//! (the testcase table, attributes and iterations on demand through
//! `<details>`, diagnostics), statistics with a server-side SVG plot of
//! the pass rate per day ([`super::plot`]), running jobs (refreshing
//! through `<meta http-equiv=refresh>`) and one test's history with a plot
//! of one of its perf keys over time or over kernels. No JavaScript; the
//! stylesheet is embedded.

use super::api::{self, parse_params, Params};
use super::{encode, plot, App, Failure};
use crate::report::{self, format_elapsed};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::fmt::Write as _;
use std::sync::Arc;

const CSS: &str = include_str!("style.css");

/// The page routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(jobs))
        .route("/jobs/{tag}", get(job))
        .route("/stats", get(stats))
        .route("/running", get(running))
        .route("/history", get(history))
        .route("/style.css", get(style))
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], CSS).into_response()
}

fn layout(title: &str, refresh: Option<u32>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                    title { (title) " — tko" }
                    link rel="stylesheet" href="/style.css";
                }
                body {
                    nav {
                        a href="/" { "Jobs" } " "
                        a href="/running" { "Running" } " "
                        a href="/stats" { "Statistics" } " "
                        a href="/history" { "History" } " "
                        a href="/api/openapi.json" { "API" }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

/// An error as a page with its status code.
pub fn error_page(f: Failure) -> Response {
    let status = f.status;
    let body = layout(
        &format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        None,
        html! { p.error { (f.message) } },
    );
    (status, body).into_response()
}

fn status_class(s: &str) -> &'static str {
    match s {
        "GOOD" => "good",
        "FAIL" | "ERROR" | "ABORT" => "bad",
        "RUNNING" => "running",
        _ => "other",
    }
}

fn job_link(tag: &str) -> String {
    format!("/jobs/{}", encode(tag))
}

fn filter_form(action: &str, p: &Params, fields: &[&str]) -> Markup {
    let val = |k: &str| {
        p.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    html! {
        form.filters method="get" action=(action) {
            @for f in fields {
                label { (f) " " input type="text" name=(f) value=(val(f)); }
                " "
            }
            button type="submit" { "Filter" }
        }
    }
}

async fn jobs(State(app): State<Arc<App>>, Query(p): Query<Params>) -> Response {
    let page = match parse_params(&p, &[]) {
        Ok((a, _)) => api::job_page(&app, a).await,
        Err(e) => Err(e),
    };
    let page = match page {
        Ok(page) => page,
        Err(f) => return error_page(f),
    };
    let next = page.next_cursor.as_ref().map(|c| {
        let mut q = String::from("/?");
        for (k, v) in p.iter().filter(|(k, v)| k != "cursor" && !v.is_empty()) {
            let _ = write!(q, "{}={}&", encode(k), encode(v));
        }
        let _ = write!(q, "cursor={}", encode(c));
        q
    });
    layout(
        "Jobs",
        None,
        html! {
            (filter_form("/", &p, &api::FILTERS))
            @if page.jobs.is_empty() { p { "No jobs match." } }
            @else {
                table.jobs {
                    thead { tr {
                        th { "Job" } th { "Label" } th { "Machine" } th { "User" }
                        th { "Started" } th { "Finished" } th { "Status" } th { "Tests" }
                    } }
                    tbody {
                        @for j in &page.jobs {
                            tr {
                                td { a.tag href=(job_link(&j.tag)) { (j.tag) } }
                                td { (j.label.as_deref().unwrap_or("")) }
                                td { (j.machine.as_deref().unwrap_or("")) }
                                td { (j.user.as_deref().unwrap_or("")) }
                                td { (j.started_time.as_deref().unwrap_or("")) }
                                td { (j.finished_time.as_deref().unwrap_or("")) }
                                td class=(status_class(j.status.as_deref().unwrap_or(""))) {
                                    (j.status.as_deref().unwrap_or("—"))
                                    @if j.running { " (running)" }
                                }
                                td {
                                    @for (w, n) in &j.counts {
                                        span class=(status_class(w)) { (w) " " (n) } " "
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(n) = next { p { a.next href=(n) { "Next page →" } } }
        },
    )
    .into_response()
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// A test's attributes and iterations, shown on demand.
fn test_extras(t: &crate::query::jobdetail::TestDetail) -> Markup {
    let perf_text = |v: Option<f64>| match v {
        None => String::from("NaN"),
        Some(x) => x.to_string(),
    };
    html! {
        @if !t.attributes.is_empty() || !t.iterations.is_empty() {
            details.extras {
                summary { (t.attributes.len()) " attributes, " (t.iterations.len()) " iterations" }
                @if !t.attributes.is_empty() {
                    table.attributes {
                        thead { tr { th { "Attribute" } th { "Value" } } }
                        tbody { @for a in &t.attributes {
                            tr { td { (opt(&a.attribute)) } td { (opt(&a.value)) } }
                        } }
                    }
                }
                @if !t.iterations.is_empty() {
                    table.iterations {
                        thead { tr { th { "Iteration" } th { "Kind" } th { "Key" } th { "Value" } } }
                        tbody { @for it in &t.iterations {
                            @for a in &it.attributes {
                                tr { td { (it.iteration.map(|i| i.to_string()).unwrap_or_default()) }
                                     td { "attr" } td { (opt(&a.attribute)) } td { (opt(&a.value)) } }
                            }
                            @for p in &it.perf {
                                tr { td { (it.iteration.map(|i| i.to_string()).unwrap_or_default()) }
                                     td { "perf" } td { (opt(&p.key)) } td { (perf_text(p.value)) } }
                            }
                        } }
                    }
                }
            }
        }
    }
}

async fn job(State(app): State<Arc<App>>, Path(tag): Path<String>) -> Response {
    let d = match api::job_detail(&app, tag.clone()).await {
        Ok(d) => d,
        Err(f) => return error_page(f),
    };
    let j = &d.detail.job;
    let fields: [(&str, String); 9] = [
        ("label", opt(&j.label).to_owned()),
        ("user", opt(&j.user).to_owned()),
        ("machine", opt(&j.machine).to_owned()),
        ("machine_group", opt(&j.machine_group).to_owned()),
        ("machine_owner", opt(&j.machine_owner).to_owned()),
        (
            "afe_job_id",
            j.afe_job_id.map(|i| i.to_string()).unwrap_or_default(),
        ),
        ("queued_time", opt(&j.queued_time).to_owned()),
        ("started_time", opt(&j.started_time).to_owned()),
        ("finished_time", opt(&j.finished_time).to_owned()),
    ];
    layout(
        &format!("Job {tag}"),
        None,
        html! {
            dl.job { @for (k, v) in &fields { dt { (k) } dd { (v) } } }
            h2 { "Tests" }
            table.summary {
                thead { tr {
                    th { "Test" } th { "Passes" } th { "Fails" } th { "Elapsed" }
                    th { "Starts" } th { "Status" } th { "Information" }
                } }
                tbody {
                    @for l in &d.summary {
                        tr {
                            td.test { (l.test) }
                            td { (l.passes) } td { (l.fails) }
                            td { (format_elapsed(l.elapsed_s)) }
                            td { (l.starts) }
                            td class=(status_class(&l.last_status)) { (l.last_status) }
                            td.info { (l.information) }
                        }
                    }
                }
            }
            h2 { "Test runs" }
            table.runs {
                thead { tr {
                    th { "Test" } th { "Subdir" } th { "Status" } th { "Reason" } th { "Kernel" }
                    th { "Started" } th { "Finished" } th { "Seconds" } th { "Information" }
                    th { "Attributes and iterations" }
                } }
                tbody {
                    @for t in &d.detail.tests {
                        tr {
                            td.test { (opt(&t.test)) } td { (opt(&t.subdir)) }
                            td class=(status_class(&t.status)) { (t.status) }
                            td.info { (opt(&t.reason)) } td { (opt(&t.kernel)) }
                            td { (opt(&t.started_time)) } td { (opt(&t.finished_time)) }
                            td { (t.duration_s.map(|s| s.to_string()).unwrap_or_default()) }
                            td.info { @if let Some(i) = &t.information { (i.message) } }
                            td { (test_extras(t)) }
                        }
                    }
                }
            }
            details {
                summary { "Keyvals (" (d.detail.keyvals.len()) ")" }
                table {
                    thead { tr { th { "Key" } th { "Value" } } }
                    tbody { @for k in &d.detail.keyvals { tr { td { (k.key) } td { (opt(&k.value)) } } } }
                }
            }
            h2 { "Diagnostics" }
            @if d.detail.diagnostics.is_empty() { p { "None." } }
            @else {
                table.diagnostics {
                    thead { tr { th { "File" } th { "Line" } th { "Severity" } th { "Message" } } }
                    tbody { @for g in &d.detail.diagnostics {
                        tr { td { (opt(&g.file)) } td { (g.line.map(|l| l.to_string()).unwrap_or_default()) }
                             td { (g.severity) } td { (opt(&g.message)) } }
                    } }
                }
            }
            p { a href=(format!("/api/jobs/{}", encode(&tag))) { "This job as JSON" } }
        },
    )
    .into_response()
}

fn groups(title: &str, g: &[report::stats::Group]) -> Markup {
    html! {
        h2 { (title) }
        table {
            thead { tr { th { "Name" } th { "Tests" } th { "Passed" } th { "Failed" } th { "Pass rate" } } }
            tbody {
                @for x in g {
                    tr {
                        td { (x.name.as_deref().unwrap_or("(none)")) }
                        td { (x.tests) } td { (x.passed) } td { (x.failed) }
                        td { @if let Some(r) = x.pass_rate { (format!("{:.1}%", r * 100.0)) } }
                    }
                }
            }
        }
    }
}

async fn stats(State(app): State<Arc<App>>, Query(p): Query<Params>) -> Response {
    let r = match parse_params(&p, &[]) {
        Ok((a, _)) => api::read_stats(&app, a.filter, report::stats::DEFAULT_TOP).await,
        Err(e) => Err(e),
    };
    let (st, days) = match r {
        Ok(x) => x,
        Err(f) => return error_page(f),
    };
    layout(
        "Statistics",
        None,
        html! {
            (filter_form("/stats", &p, &api::FILTERS))
            p.totals {
                (st.jobs) " jobs, " (st.tests) " tests: " (st.passed) " passed, "
                (st.failed) " failed, " (st.running) " running"
                @if let Some(r) = st.pass_rate { "; pass rate " (format!("{:.1}%", r * 100.0)) }
            }
            h2 { "Pass rate per day" }
            (PreEscaped(plot::pass_rate_svg(&days)))
            (groups("By machine", &st.by_machine))
            (groups("By label", &st.by_label))
            (groups("By kernel", &st.by_kernel))
            h2 { "Flaky tests" }
            @if st.flaky.is_empty() { p { "None." } }
            @else {
                table {
                    thead { tr { th { "Test" } th { "Kernel" } th { "Machine group" } th { "Machine" } th { "Passed" } th { "Failed" } } }
                    tbody {
                        @for f in &st.flaky {
                            tr {
                                td { (f.test) } td { (f.kernel.as_deref().unwrap_or("")) }
                                td { (f.machine_group.as_deref().unwrap_or("")) }
                                td { (f.machine.as_deref().unwrap_or("")) }
                                td { (f.passed) } td { (f.failed) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

async fn running(State(app): State<Arc<App>>) -> Response {
    let jobs = match api::read_running(&app).await {
        Ok(j) => j,
        Err(f) => return error_page(f),
    };
    layout(
        "Running jobs",
        Some(10),
        html! {
            p { "This page refreshes every 10 seconds." }
            @if jobs.is_empty() { p { "No job is running." } }
            @for (tag, lines) in &jobs {
                h2 { a.tag href=(job_link(tag)) { (tag) } }
                table.summary {
                    thead { tr { th { "Test" } th { "Passes" } th { "Fails" } th { "Elapsed" } th { "Starts" } th { "Status" } th { "Information" } } }
                    tbody {
                        @for l in lines {
                            tr {
                                td.test { (l.test) } td { (l.passes) } td { (l.fails) }
                                td { (format_elapsed(l.elapsed_s)) } td { (l.starts) }
                                td class=(status_class(&l.last_status)) { (l.last_status) }
                                td.info { (l.information) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `/history?test=&machine=&kernel=&last=` plus `key=` and `by=`.
const HISTORY_PAGE: [&str; 6] = ["test", "machine", "kernel", "last", "key", "by"];

/// `/history` with `params` changed: `set` values replace (or add) theirs.
fn history_link(p: &Params, set: &[(&str, &str)]) -> String {
    let mut q = String::from("/history?");
    let mut first = true;
    let mut add = |k: &str, v: &str| {
        if !first {
            q.push('&');
        }
        first = false;
        let _ = write!(q, "{}={}", encode(k), encode(v));
    };
    for (k, v) in p {
        if !v.is_empty() && !set.iter().any(|(n, _)| n == k) {
            add(k, v);
        }
    }
    for (k, v) in set {
        add(k, v);
    }
    q
}

async fn history(State(app): State<Arc<App>>, Query(p): Query<Params>) -> Response {
    let a = match api::history_params(&p, &HISTORY_PAGE) {
        Ok(a) => a,
        Err(f) => return error_page(f),
    };
    let (h, keys, perf) = match &a.test {
        None => (None, Vec::new(), None),
        Some(t) => {
            let h = api::read_history(&app, t.clone(), &a).await;
            let perf = api::read_perf(&app, t.clone(), a.key.clone(), &a).await;
            match (h, perf) {
                (Ok(h), Ok((keys, perf))) => (Some(h), keys, perf),
                (Err(f), _) | (_, Err(f)) => return error_page(f),
            }
        }
    };
    layout(
        "Test history",
        None,
        html! {
            (filter_form("/history", &p, &["test", "machine", "kernel", "key"]))
            @if !keys.is_empty() {
                p.keys {
                    "Perf keys: "
                    @for k in &keys {
                        a.key href=(history_link(&p, &[("key", k)])) { (k) } " "
                    }
                }
            }
            @if let Some(s) = &perf {
                h2 { "Perf key " (s.key) }
                p.plot-by {
                    (s.points.len()) " values; plot over "
                    a href=(history_link(&p, &[("by", "time")])) { "time" } " or "
                    a href=(history_link(&p, &[("by", "kernel")])) { "kernels" }
                }
                (PreEscaped(plot::perf_svg(&s.test, &s.key, &s.points, a.by)))
            }
            @if let Some(h) = &h {
                h2 { "Runs" }
                p.totals {
                    (h.runs.len()) " runs of " (h.test) ": " (h.passed) " passed, "
                    (h.failed) " failed, " (h.switches) " pass/fail switches"
                }
                table {
                    thead { tr { th { "Finished" } th { "Job" } th { "Machine" } th { "Kernel" } th { "Status" } th { "Reason" } } }
                    tbody {
                        @for r in &h.runs {
                            tr {
                                td { (r.time.as_deref().unwrap_or("")) }
                                td { a.tag href=(job_link(&r.job)) { (r.job) } }
                                td { (r.machine.as_deref().unwrap_or("")) }
                                td { (r.kernel.as_deref().unwrap_or("")) }
                                td class=(status_class(&r.status)) { (r.status) }
                                td.info { (r.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            } @else { p { "Name a test to see its runs and plot its perf keys." } }
        },
    )
    .into_response()
}
