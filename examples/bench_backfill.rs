//! Backfill benchmark: the real `tko` binary on a generated results root,
//! against a throwaway PostgreSQL, side by side in one run:
//!
//! 1. `tko parse` of the root on 1 and on 2 threads (parse-only scaling);
//! 2. `tko backfill` end to end (walk, parse, load) with its max RSS;
//! 3. a second `tko backfill` of the unchanged root;
//! 4. a raw binary `COPY FROM` of the very rows the backfill wrote (exported
//!    to files first), the ceiling the backfill is judged against.
//!
//! ```text
//! cargo build --release --bin tko --example gen_tree --example bench_backfill
//! target/release/examples/gen_tree --jobs 20000 --seed 1 /tmp/g20k
//! target/release/examples/bench_backfill /tmp/g20k
//! ```
//! PostgreSQL: `TKO_BENCH_PG_URL`, else a throwaway cluster started like the
//! tests do. Needs `/usr/bin/time` for max RSS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use tko::store::postgres::PgStore;

#[path = "../tests/support/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

/// Runs `tko ARGS` under `/usr/bin/time`; returns (wall seconds, max RSS MB).
fn timed(tko: &Path, args: &[&str]) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M"])
        .arg(tko)
        .args(args)
        .stdout(std::process::Stdio::null())
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss_kb: f64 = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("maxrss_kb="))
        .next_back()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no max RSS in: {stderr}"))?;
    Ok((wall, rss_kb / 1024.0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root: PathBuf = std::env::args_os()
        .nth(1)
        .ok_or("usage: bench_backfill RESULTS_ROOT")?
        .into();
    let tko = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tko"))
        .ok_or("cannot locate the tko binary")?;
    let root_s = root.to_str().ok_or("root path is not UTF-8")?;
    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let jobs = dirs.len() as f64;
    println!("{} jobs under {root_s}", dirs.len());

    // Warm the page cache so that every measurement below reads from memory.
    timed(&tko, &["parse", "--level", "2", root_s])?;
    let (p1, _) = timed(&tko, &["parse", "-j", "1", "--level", "2", root_s])?;
    let (p2, _) = timed(&tko, &["parse", "-j", "2", "--level", "2", root_s])?;
    println!(
        "parse only: 1 thread {:.0} jobs/s, 2 threads {:.0} jobs/s, speed-up {:.2}x",
        jobs / p1,
        jobs / p2,
        p1 / p2
    );

    if let Ok(u) = std::env::var("TKO_BENCH_PG_URL") {
        std::env::set_var("TKO_TEST_PG_URL", u);
    }
    let url = pg::fresh_database_url();
    let (b1, rss1) = timed(
        &tko,
        &["backfill", "--quiet", "--level", "2", "--db", &url, root_s],
    )?;
    let (b2, rss2) = timed(
        &tko,
        &["backfill", "--quiet", "--level", "2", "--db", &url, root_s],
    )?;

    let mut pgs = PgStore::connect(&url)?;
    let export = tempfile::tempdir()?;
    let rows: u64 = pgs
        .export_rows_to_dir(export.path())?
        .iter()
        .map(|r| r.1)
        .sum();
    let t = Instant::now();
    pgs.raw_copy_from_dir(export.path())?;
    let raw = t.elapsed().as_secs_f64();
    let rows = rows as f64;
    println!(
        "backfill (walk+parse+load): {b1:.2} s, {:.0} rows/s, {:.0} jobs/s, max RSS {rss1:.0} MB",
        rows / b1,
        jobs / b1
    );
    println!(
        "raw COPY FROM of the same {rows:.0} rows: {raw:.2} s, {:.0} rows/s",
        rows / raw
    );
    println!("backfill / raw COPY rate: {:.0} %", 100.0 * raw / b1);
    println!(
        "second backfill (unchanged): {b2:.3} s, {:.0}x faster, max RSS {rss2:.0} MB",
        b1 / b2
    );
    Ok(())
}
