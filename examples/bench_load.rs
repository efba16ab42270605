//! Load-rate benchmark for the stores, on synthetic jobs built in memory.
//!
//! ```text
//! cargo run --release --example bench_load -- [JOBS] [TESTS_PER_JOB] [BATCH_JOBS]
//! ```
//!
//! Measures (1) the SQLite load rate, (2) the PostgreSQL `load_jobs` rate
//! and (3) a raw binary `COPY FROM` of the very same rows, exported to files
//! first (`PgStore::export_rows_to_dir` / `raw_copy_from_dir`): the ceiling
//! the loader is judged against (measured limits of this kind of machine). PostgreSQL is the server named by
//! `TKO_BENCH_PG_URL` (a fresh database is created on it), or else a
//! throwaway cluster started like the tests do (tests/support/pg.rs).
//! With `TKO_PG_TIMING=1` the PostgreSQL load's time per phase is printed.

use std::collections::BTreeMap;
use std::time::Instant;
use tko::model::{Iteration, Job, Kernel, Patch, PerfValue, Status, Test, Value};
use tko::store::{self, postgres::PgStore, LoadItem, Store};
use tko::table::RowCounts;

#[path = "../tests/support/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

/// `n` synthetic jobs of `tests` tests each: 10 attributes per test, three
/// iterations of 5 attributes and 10 perf values, 8 machines, 4 kernels.
fn synthetic_jobs(n: usize, tests: usize) -> Vec<Job> {
    let kernels: Vec<Kernel> = (0..4)
        .map(|k| {
            let patches = (0..k)
                .map(|p| Patch {
                    spec: format!("p{p}"),
                    reference: format!("http://patches/{k}/{p}.patch"),
                    hash: format!("{k:x}{p:x}"),
                })
                .collect();
            Kernel::new(format!("2.6.{}", 30 + k), patches)
        })
        .collect();
    (0..n)
        .map(|j| {
            let machine = format!("host{}", j % 8);
            let tests = (0..tests)
                .map(|t| {
                    let attributes = (0..10)
                        .map(|a| (format!("attr{a}"), Value::Str(format!("value {j} {t} {a}"))))
                        .collect();
                    let iterations = (1..=3)
                        .map(|index| Iteration {
                            index,
                            attr: (0..5)
                                .map(|a| (format!("iattr{a}"), format!("{a}")))
                                .collect(),
                            perf: (0..10)
                                .map(|p| {
                                    (
                                        format!("perf{p}"),
                                        PerfValue::Float(p as f64 * 1.25 + t as f64),
                                    )
                                })
                                .collect(),
                        })
                        .collect();
                    Test {
                        subdir: Some(format!("test{t}")),
                        testname: format!("test{t}"),
                        status: if t % 7 == 0 {
                            Status::Fail
                        } else {
                            Status::Good
                        },
                        reason: Some(String::new()),
                        started_time: Some(1_300_000_000 + t as i64),
                        finished_time: Some(1_300_000_060 + t as i64),
                        machine: machine.clone(),
                        kernel: kernels[(j + t) % kernels.len()].clone(),
                        attributes,
                        iterations,
                        labels: Vec::new(),
                        information: None,
                    }
                })
                .collect();
            let mut keyval = BTreeMap::new();
            keyval.insert("user".to_string(), Value::Str("bench".into()));
            Job {
                tag: format!("{j}-bench/{machine}"),
                afe_job_id: Some(j as u64),
                status_version: 1,
                label: Some(format!("bench job {j}")),
                user: Some("bench".into()),
                machine: machine.clone(),
                machine_group: "x86_64".into(),
                machine_owner: None,
                queued_time: Some(1_299_999_000),
                started_time: Some(1_299_999_500),
                finished_time: Some(1_300_001_000),
                aborted_by: None,
                aborted_on: None,
                keyval: keyval.into(),
                tests,
                diagnostics: Vec::new(),
            }
        })
        .collect()
}

fn total_rows(results: Vec<Result<store::LoadOutcome, store::Error>>) -> usize {
    let mut all = RowCounts::default();
    for r in results {
        match r {
            Ok(o) => all.add(&o.rows),
            Err(e) => panic!("load failed: {e}: {:?}", std::error::Error::source(&e)),
        }
    }
    all.tests
        + all.test_attributes
        + all.iteration_attributes
        + all.iteration_results
        + all.job_keyvals
        + all.diagnostics
}

fn report(what: &str, rows: usize, secs: f64) {
    println!(
        "{what:<34} {rows:>10} rows {secs:>8.3} s {:>12.0} rows/s",
        rows as f64 / secs
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(200);
    let tests = args.get(1).copied().unwrap_or(20);
    let batch = args.get(2).copied().unwrap_or(store::DEFAULT_BATCH_JOBS);
    // TKO_BENCH_ROOT=<generated results root>: load that tree (parsed with
    // --level 2) instead of synthetic in-memory jobs.
    let jobs = match std::env::var_os("TKO_BENCH_ROOT") {
        Some(root) => {
            let (dirs, _) = tko::discover::find_jobs(&[root.into()], 2);
            let jobs: Vec<_> = tko::ingest::parse_jobs(&dirs)
                .into_iter()
                .map(|j| j.expect("readable job"))
                .collect();
            println!("parsed {} jobs from TKO_BENCH_ROOT", jobs.len());
            jobs
        }
        None => synthetic_jobs(n, tests),
    };
    let items: Vec<LoadItem<'_>> = jobs
        .iter()
        .map(|job| LoadItem {
            job,
            source: format!("/bench/{}", job.tag).into(),
            fingerprint: "bench".into(),
            force: false,
            read_at: None,
        })
        .collect();
    println!(
        "{} jobs, {} tests, {batch} jobs per transaction",
        jobs.len(),
        jobs.iter().map(|j| j.tests.len()).sum::<usize>()
    );

    let dir = tempfile::tempdir()?;
    let mut lite = store::open(&format!("sqlite:{}", dir.path().join("bench.db").display()))?;
    lite.init()?;
    lite.set_batch_jobs(batch);
    let t = Instant::now();
    let rows = total_rows(lite.load_jobs(&items));
    report("sqlite load_jobs", rows, t.elapsed().as_secs_f64());

    let url = match std::env::var("TKO_BENCH_PG_URL") {
        Ok(u) => {
            std::env::set_var("TKO_TEST_PG_URL", u);
            pg::fresh_database_url()
        }
        Err(_) => pg::fresh_database_url(),
    };
    let mut pgs = PgStore::connect(&url)?;
    pgs.init()?;
    pgs.set_batch_jobs(batch);
    let t = Instant::now();
    let rows = total_rows(pgs.load_jobs(&items));
    let load = t.elapsed().as_secs_f64();
    report("postgres load_jobs (binary COPY)", rows, load);
    for (phase, secs) in tko::store::postgres::timing::phases() {
        println!("  {phase:<32} {secs:>8.3} s");
    }

    let export = dir.path().join("export");
    std::fs::create_dir_all(&export)?;
    let exported: u64 = pgs.export_rows_to_dir(&export)?.iter().map(|r| r.1).sum();
    let t = Instant::now();
    pgs.raw_copy_from_dir(&export)?;
    let raw = t.elapsed().as_secs_f64();
    report("postgres raw COPY FROM files", exported as usize, raw);
    println!("load_jobs / raw COPY time: {:.2}x", load / raw);
    Ok(())
}
