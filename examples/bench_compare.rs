//! Compare benchmark: the real `tko compare` of two kernels over a
//! generated warehouse on PostgreSQL.
//!
//! ```text
//! cargo build --release --bin tko --example bench_compare
//! target/release/examples/bench_compare [JOBS] [RUNS]
//! ```
//!
//! Generates JOBS jobs (default 20,000) with `tko::gen::generate`
//! (`kernels: 2`: every test ran kernel base 2.6.32 or 2.6.33),
//! or reads the tree named by `TKO_BENCH_ROOT` (generating it there first
//! when it does not exist); loads it with `tko
//! backfill` into a throwaway PostgreSQL (`TKO_BENCH_PG_URL`, else a
//! cluster started like the tests do) and runs `ANALYZE` (what autovacuum
//! does on its own); then times RUNS (default 3) pairs of runs of
//!
//! ```text
//! tko compare --base-kernel 2.6.32 --new-kernel 2.6.33 \
//!     --format json --db URL
//! ```
//!
//! (output to /dev/null): per run once cold (the cache of perf moments
//! emptied first, so the compare reads the detail rows and builds it) and
//! once warm (reading the cache); prints each run, and the median and
//! min–max of each kind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tko::gen::{self, GenOptions};

#[path = "../tests/support/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

fn run(tko: &Path, args: &[&str]) -> Result<f64, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let out = Command::new(tko)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    let secs = t.elapsed().as_secs_f64();
    // compare exits 1 when something regressed: an answer, not an error.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!(
            "tko {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(secs)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let jobs = args.first().copied().unwrap_or(20_000);
    let runs = args.get(1).copied().unwrap_or(3).max(1);
    let tko = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tko"))
        .ok_or("cannot locate the tko binary")?;
    let dir = tempfile::tempdir()?;
    // TKO_BENCH_ROOT: the tree to load, generated there first if missing
    // (so runs of two builds load the same tree).
    let given: Option<PathBuf> = std::env::var_os("TKO_BENCH_ROOT").map(PathBuf::from);
    let root: PathBuf = match given {
        Some(r) if r.exists() => r,
        given => {
            let root = given.unwrap_or_else(|| dir.path().join("results"));
            let t = Instant::now();
            let st = gen::generate(
                &root,
                &GenOptions {
                    jobs,
                    kernels: 2,
                    subdir_status_copies: false,
                    ..GenOptions::default()
                },
            )?;
            println!(
                "generated {} jobs, {} tests in {:.1} s",
                st.jobs,
                st.tests,
                t.elapsed().as_secs_f64()
            );
            root
        }
    };
    let root_s = root.to_str().ok_or("root path is not UTF-8")?;
    if let Ok(u) = std::env::var("TKO_BENCH_PG_URL") {
        std::env::set_var("TKO_TEST_PG_URL", u);
    }
    let url = pg::fresh_database_url();
    let t = run(
        &tko,
        &["backfill", "--quiet", "--level", "2", "--db", &url, root_s],
    )?;
    println!("backfill: {t:.1} s");
    let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
    client.batch_execute("ANALYZE")?;
    let counts = client.query_one(
        "SELECT (SELECT count(*) FROM tko_jobs), (SELECT count(*) FROM tko_tests), \
            (SELECT count(*) FROM tko_iteration_result)",
        &[],
    )?;
    println!(
        "warehouse: {} jobs, {} tests, {} perf values",
        counts.get::<_, i64>(0),
        counts.get::<_, i64>(1),
        counts.get::<_, i64>(2)
    );
    let cmp = [
        "compare",
        "--base-kernel",
        "2.6.32",
        "--new-kernel",
        "2.6.33",
        "--format",
        "json",
        "--db",
        &url,
    ];
    if std::env::var_os("TKO_BENCH_EXPLAIN").is_some() {
        for kind in [tko::query::Kind::Tests, tko::query::Kind::Perf] {
            let f = tko::query::Filter {
                kernel: Some("2.6.32".into()),
                ..tko::query::Filter::default()
            };
            let q = tko::query::Query::new(kind, f);
            let p = tko::query::plan(&q, tko::query::Dialect::Postgres, &[])?;
            println!("{}", p.sql);
            for r in client.query(&format!("EXPLAIN ANALYZE {}", p.sql), &[])? {
                println!("  {}", r.get::<_, String>(0));
            }
        }
    }
    // Each run: a cold compare (the cache emptied first, so it reads the
    // detail rows and builds the cache of both bases), then a warm one.
    let (mut cold, mut warm) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        client.batch_execute("DELETE FROM tko_perf_cache_kernels; DELETE FROM tko_perf_cache")?;
        let c = run(&tko, &cmp)?;
        let w = run(&tko, &cmp)?;
        println!("run {}: cold {c:.3} s, warm {w:.3} s", i + 1);
        cold.push(c);
        warm.push(w);
    }
    for (what, times) in [
        ("cold (builds the cache)", &mut cold),
        ("warm (reads the cache)", &mut warm),
    ] {
        times.sort_by(f64::total_cmp);
        println!(
            "tko compare --base-kernel 2.6.32 --new-kernel 2.6.33 --format json, {what}: \
             median {:.3} s ({:.3}–{:.3} s) over {runs} runs",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
    }
    Ok(())
}
