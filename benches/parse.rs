//! Parser benchmarks: status-log (v1) and keyval throughput on one core,
//! whole-root parsing (discover + ingest) of a generated results tree on 1
//! and 2 threads, and the scaling of two worst cases: one test with N
//! distinct `WARN` reasons (`status_log_v1_warn_reasons`, N from
//! `TKO_BENCH_WARN_LINES`, default 1000,2000,4000,8000) and a line that
//! closes D nested groups by an indentation regression while carrying a
//! 64 KiB reason (`status_log_v1_nested_abort`, D from `TKO_BENCH_NEST`,
//! same default). The tree is generated once into a temp dir
//! (`TKO_BENCH_JOBS`, default 2000 jobs).
//!
//! Run: `cargo bench --bench parse` (scaling only:
//! `cargo bench --bench parse -- 'status_log_v1_(warn|nested)'`)

use criterion::{criterion_main, Criterion, Throughput};
use std::path::Path;
use tko::gen::{generate, GenOptions};
use tko::parse::{self, v1};

/// All `status.log` files of the first `n` generated jobs, concatenated as
/// one big log of many client jobs.
fn big_status_log(root: &Path, n: usize) -> Vec<u8> {
    let (dirs, _) = tko::discover::find_jobs(&[root.to_path_buf()], 2);
    let mut out = Vec::new();
    for d in dirs.iter().take(n) {
        if let Ok(b) = std::fs::read(d.path.join("status.log")) {
            out.extend_from_slice(&b);
        }
    }
    out
}

/// Concatenated contents of files named `name` (test keyvals when
/// `in_results` is false, `results/keyval` when true), up to `limit` bytes.
fn keyval_files(root: &Path, in_results: bool, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .flatten()
    {
        let parent_is_results =
            e.path().parent().and_then(Path::file_name) == Some("results".as_ref());
        if e.file_name() != "keyval" || parent_is_results != in_results {
            continue;
        }
        if let Ok(b) = std::fs::read(e.path()) {
            out.extend_from_slice(&b);
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        if out.len() > limit {
            break;
        }
    }
    out
}

/// One client job with one test whose group holds `n` WARN lines, about 80
/// bytes each: distinct reasons of varying length, every fourth one a part
/// of the reason before it (dropped from the merged reason).
fn warn_reasons_log(n: usize) -> String {
    let mut log = String::from("START\t----\t----\ttimestamp=1\t\n\tSTART\tt\tt\ttimestamp=2\t\n");
    for i in 0..n {
        let reason = if i % 4 == 3 {
            format!("sector {} later", i - 1)
        } else {
            format!("disk {i} is slow, retrying the read of sector {i} later")
        };
        log.push_str(&format!("\t\tWARN\tt\tt\ttimestamp=3\t{reason}\n"));
    }
    log.push_str("\tEND GOOD\tt\tt\ttimestamp=4\t\nEND GOOD\t----\t----\ttimestamp=5\t\n");
    log
}

/// A test holding `depth` nested groups, then an unindented WARN line with
/// a 64 KiB reason that closes all of them by indentation regression.
fn nested_abort_log(depth: usize) -> String {
    let mut log = String::from("START\t----\t----\ttimestamp=1\t\n");
    for d in 1..=depth {
        log.push_str(&"\t".repeat(d));
        log.push_str("START\tt\tt\ttimestamp=2\t\n");
    }
    log.push_str("WARN\t----\t----\ttimestamp=3\t");
    log.push_str(&"x".repeat(64 << 10));
    log.push('\n');
    log
}

/// Parses a whole v1 status log; returns the number of results.
fn parse_v1(log: &str) -> usize {
    let mut m = v1::V1::new(v1::JobContext::default());
    m.process(log.split_inclusive('\n').zip(1..).map(|(l, n)| (n, l)));
    m.end().tests.len()
}

/// Sizes from an environment variable (`1000,2000`), or the default.
fn sizes(var: &str) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 2000, 4000, 8000])
}

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("status_log_v1_warn_reasons");
    g.sample_size(10);
    for n in sizes("TKO_BENCH_WARN_LINES") {
        let log = warn_reasons_log(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_lines"), |b| b.iter(|| parse_v1(&log)));
    }
    g.finish();
    let mut g = c.benchmark_group("status_log_v1_nested_abort");
    g.sample_size(10);
    for d in sizes("TKO_BENCH_NEST") {
        let log = nested_abort_log(d);
        g.throughput(Throughput::Elements(d as u64));
        g.bench_function(format!("depth_{d}"), |b| b.iter(|| parse_v1(&log)));
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let jobs: usize = std::env::var("TKO_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("results");
    let opts = GenOptions {
        jobs,
        ..GenOptions::default()
    };
    generate(&root, &opts).expect("generate tree");

    let log = big_status_log(&root, 500);
    let mut g = c.benchmark_group("status_log_v1");
    g.throughput(Throughput::Bytes(log.len() as u64));
    g.sample_size(20);
    g.bench_function("parse", |b| {
        b.iter(|| {
            let text = String::from_utf8_lossy(&log);
            let mut m = v1::V1::new(v1::JobContext::default());
            m.process(
                parse::lines_with_numbers(text.as_bytes())
                    .map(|(n, l)| (n, std::str::from_utf8(l).expect("utf8"))),
            );
            m.end().tests.len()
        })
    });
    g.finish();

    let keyvals = keyval_files(&root, false, 4 << 20);
    let mut g = c.benchmark_group("keyval");
    g.throughput(Throughput::Bytes(keyvals.len() as u64));
    g.sample_size(20);
    g.bench_function("parse", |b| {
        b.iter(|| parse::keyval::keyval(&keyvals).map.len())
    });
    g.finish();

    let results = keyval_files(&root, true, 4 << 20);
    let mut g = c.benchmark_group("iteration_keyval_v1");
    g.throughput(Throughput::Bytes(results.len() as u64));
    g.sample_size(20);
    g.bench_function("parse", |b| {
        b.iter(|| parse::iteration::iterations(&results, 1).iterations.len())
    });
    g.finish();

    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let mut g = c.benchmark_group("parse_root");
    g.throughput(Throughput::Elements(dirs.len() as u64));
    g.sample_size(10);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| {
                    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
                    tko::ingest::parse_jobs(&dirs).len()
                })
            })
        });
    }
    g.finish();
}

#[allow(missing_docs)] // criterion's macro generates an undocumented fn
mod group {
    criterion::criterion_group!(parse_benches, super::scaling, super::benches);
}
use group::parse_benches;
criterion_main!(parse_benches);
