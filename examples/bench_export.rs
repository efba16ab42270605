//! Export-rate benchmark: `tko export perf` against `psql \copy` of the very
//! same SQL, side by side in one run.
//!
//! ```text
//! cargo run --release --example bench_export -- [JOBS] [ROUNDS]
//! ```
//!
//! Generates a results tree with `tko::gen::generate` (JOBS jobs, default
//! 2,000, 20–30 perf keys per iteration: ≥ 1M perf rows), or reads the tree
//! named by `TKO_BENCH_ROOT`; loads it into a throwaway PostgreSQL (as
//! `bench_load` does: `TKO_BENCH_PG_URL` or a cluster started like the tests
//! do) and into SQLite; then, ROUNDS times (default 3) in alternation, times
//! (1) `export::write` of `perf` to a CSV file — what `tko export perf --out
//! FILE` runs — and (2) `psql "$url" -c "\copy (<same SQL>) to FILE csv
//! header"`, and checks that both files hold the same rows. Prints rows/s of
//! each, the best round of each, and the ratio; then the SQLite export rate.

use std::io::BufWriter;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tko::export::{self, ExportQuery, Filter, Format, Kind, Warehouse};
use tko::gen::{self, GenOptions};
use tko::query::{self, Dialect};
use tko::store::{self, LoadItem};

#[path = "../tests/support/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

fn load(url: &str, items: &[LoadItem<'_>]) -> Result<(), Box<dyn std::error::Error>> {
    let mut s = store::open(url)?;
    s.init()?;
    for r in s.load_jobs(items) {
        r?;
    }
    Ok(())
}

fn tko_export(
    url: &str,
    q: &ExportQuery,
    out: &Path,
) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let mut wh = Warehouse::open(url)?;
    let file = std::fs::File::create(out)?;
    let n = export::write(
        &mut wh,
        q,
        Format::Csv,
        BufWriter::with_capacity(1 << 16, file),
    )?;
    Ok((n, t.elapsed().as_secs_f64()))
}

fn psql_copy(url: &str, sql: &str, out: &Path) -> Result<f64, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let status = Command::new("psql")
        .arg(url)
        .arg("-X")
        .arg("-q")
        .arg("-c")
        .arg(format!("\\copy ({sql}) to '{}' csv header", out.display()))
        .status()?;
    if !status.success() {
        return Err(format!("psql failed: {status}").into());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The file without its header line (psql names columns after the SQL).
fn body(path: &Path) -> Result<Vec<u8>, std::io::Error> {
    let mut b = std::fs::read(path)?;
    let nl = b
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |i| i + 1);
    b.drain(..nl);
    Ok(b)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let jobs = args.first().copied().unwrap_or(2000);
    let rounds = args.get(1).copied().unwrap_or(3).max(1);
    let dir = tempfile::tempdir()?;
    let root = match std::env::var_os("TKO_BENCH_ROOT") {
        Some(r) => r.into(),
        None => {
            let root = dir.path().join("tree");
            let t = Instant::now();
            let st = gen::generate(
                &root,
                &GenOptions {
                    jobs,
                    perf_keys_per_iteration: 20..=30,
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
    let (dirs, _) = tko::discover::find_jobs(&[root], 2);
    let parsed: Vec<_> = tko::ingest::parse_all(&dirs)
        .into_iter()
        .map(|p| p.expect("readable job"))
        .collect();
    let items: Vec<LoadItem<'_>> = parsed
        .iter()
        .filter(|p| p.status_file.is_some())
        .map(|p| LoadItem {
            job: &p.job,
            source: p.path.clone(),
            fingerprint: p.fingerprint.clone(),
            force: false,
            read_at: None,
        })
        .collect();

    let pg_url = match std::env::var("TKO_BENCH_PG_URL") {
        Ok(u) => {
            std::env::set_var("TKO_TEST_PG_URL", u);
            pg::fresh_database_url()
        }
        Err(_) => pg::fresh_database_url(),
    };
    let t = Instant::now();
    load(&pg_url, &items)?;
    println!(
        "loaded {} jobs into PostgreSQL in {:.1} s",
        items.len(),
        t.elapsed().as_secs_f64()
    );
    {
        let mut c = postgres::Client::connect(&pg_url, postgres::NoTls)?;
        c.batch_execute("VACUUM ANALYZE")?;
    }

    let q = ExportQuery::new(Kind::Perf, Filter::default());
    let sql = query::plan(&q, Dialect::Postgres, &[])?.sql;
    println!("SQL: {sql}");
    let ours = dir.path().join("tko.csv");
    let theirs = dir.path().join("psql.csv");
    let (mut best_tko, mut best_psql) = (f64::MAX, f64::MAX);
    let mut rows = 0;
    for round in 1..=rounds {
        let (n, a) = tko_export(&pg_url, &q, &ours)?;
        let b = psql_copy(&pg_url, &sql, &theirs)?;
        rows = n;
        println!(
            "round {round}: tko export perf {n} rows {a:.3} s {:.0} rows/s | psql \\copy {b:.3} s {:.0} rows/s | {:.0} %",
            n as f64 / a,
            n as f64 / b,
            100.0 * b / a
        );
        best_tko = best_tko.min(a);
        best_psql = best_psql.min(b);
    }
    if body(&ours)? != body(&theirs)? {
        return Err("tko and psql wrote different rows".into());
    }
    println!(
        "best: tko {:.0} rows/s, psql \\copy {:.0} rows/s: tko at {:.0} % of psql ({} bytes, identical rows)",
        rows as f64 / best_tko,
        rows as f64 / best_psql,
        100.0 * best_psql / best_tko,
        std::fs::metadata(&ours)?.len()
    );

    let lite_url = format!("sqlite:{}", dir.path().join("bench.db").display());
    load(&lite_url, &items)?;
    let lite_out = dir.path().join("lite.csv");
    let (n, s) = tko_export(&lite_url, &q, &lite_out)?;
    println!(
        "sqlite: tko export perf {n} rows {s:.3} s {:.0} rows/s; identical to PostgreSQL's: {}",
        n as f64 / s,
        std::fs::read(&lite_out)? == std::fs::read(&ours)?
    );
    Ok(())
}
