//! Parser benchmarks: status-log (v1) and keyval throughput on one core, and
//! whole-root parsing (discover + ingest) of a generated results tree on 1
//! and 2 threads. The tree is generated once into a temp dir
//! (`TKO_BENCH_JOBS`, default 2000 jobs).
//!
//! Run: `cargo bench --bench parse`

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
    criterion::criterion_group!(parse_benches, super::benches);
}
use group::parse_benches;
criterion_main!(parse_benches);
