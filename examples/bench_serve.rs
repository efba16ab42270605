//! `tko serve` latency benchmark: the jobs list and job pages under
//! concurrent clients, on both stores.
//!
//! ```text
//! cargo build --release --bin tko
//! cargo run --release --example bench_serve -- [JOBS] [CLIENTS] [SECONDS] [ROUNDS]
//! ```
//!
//! Generates a results tree with `tko::gen::generate` (JOBS jobs, default
//! 20,000; 1–2 iterations of 3–5 perf keys per test to keep the load
//! short), loads it with `tko backfill` into SQLite and into a throwaway
//! PostgreSQL (`TKO_BENCH_PG_URL`, or a cluster started as the tests do),
//! starts `tko serve` (the release binary beside this example) on each,
//! and for each of the jobs list (`/`, 50 jobs per page) and a job page
//! (`/jobs/TAG`, a different job each request) runs CLIENTS threads
//! (default 20) issuing requests back to back for SECONDS (default 10),
//! one connection per request, ROUNDS times (default 3; the pages
//! alternate between rounds). Prints p50, p99 and requests/s of each round,
//! then their medians with the min–max range, and the load average.
//!
//! `TKO_BENCH_DIR=DIR` keeps the generated tree and the SQLite warehouse
//! in DIR and reuses them on the next run (the backfill then finds every
//! job unchanged); with `TKO_BENCH_PG_URL` naming a kept database, a
//! repeated run measures without generating or loading again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tko::gen::{self, GenOptions};

#[path = "../tests/support/pg.rs"]
#[allow(dead_code, unreachable_pub)]
mod pg;

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn tko_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("tko")
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(db: &str) -> R<Server> {
    let mut child = Command::new(tko_bin())
        .args([
            "serve",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
            "--pool",
            "4",
        ])
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = child.stderr.take().ok_or("stderr")?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while err.read(&mut b)? == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| format!("tko serve did not start: {line}"))?
        .to_owned();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    Ok(Server(child, addr))
}

fn get(addr: &str, path: &str) -> R<u16> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(std::str::from_utf8(&buf[9..12])?.parse()?)
}

fn encode(s: &str) -> String {
    tko::serve::encode(s)
}

/// Runs `clients` threads for `secs`; returns sorted latencies (ms).
fn load(
    addr: &str,
    clients: usize,
    secs: u64,
    path: &(dyn Fn(usize) -> String + Sync),
) -> R<(Vec<f64>, f64)> {
    let n = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut lat: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let mut v = Vec::new();
                    while Instant::now() < end {
                        let i = n.fetch_add(1, Ordering::Relaxed);
                        let t = Instant::now();
                        match get(addr, &path(i)) {
                            Ok(200) => v.push(t.elapsed().as_secs_f64() * 1000.0),
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    v
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = t0.elapsed().as_secs_f64();
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        return Err(format!("{e} requests failed").into());
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, wall))
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn pct(v: &[f64], p: f64) -> f64 {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn main() -> R<()> {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let clients: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let secs: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse::<usize>())?.max(1);
    if !tko_bin().exists() {
        return Err(format!(
            "{} missing: cargo build --release --bin tko",
            tko_bin().display()
        )
        .into());
    }
    let temp = tempfile::tempdir()?;
    let kept = std::env::var_os("TKO_BENCH_DIR").map(PathBuf::from);
    let dir = kept.as_deref().unwrap_or(temp.path());
    std::fs::create_dir_all(dir)?;
    let root = dir.join("results");
    let opts = GenOptions {
        jobs,
        iterations_per_test: 1..=2,
        perf_keys_per_iteration: 3..=5,
        ..GenOptions::default()
    };
    if root.exists() && kept.is_some() {
        eprintln!("reusing {}", root.display());
    } else {
        let t = Instant::now();
        gen::generate(&root, &opts)?;
        eprintln!(
            "generated {jobs} jobs in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let pg_url = std::env::var("TKO_BENCH_PG_URL").unwrap_or_else(|_| pg::fresh_database_url());
    let lite = format!("sqlite:{}", dir.join("tko.db").display());
    for (name, url) in [("SQLite", &lite), ("PostgreSQL", &pg_url)] {
        let t = Instant::now();
        let out = Command::new(tko_bin())
            .args(["backfill", "--quiet", "--db", url])
            .arg(&root)
            .output()?;
        if !matches!(out.status.code(), Some(0 | 1)) {
            return Err(format!("backfill: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        eprintln!("{name}: backfill in {:.1} s", t.elapsed().as_secs_f64());
        let srv = start(url)?;
        let tags: Vec<String> = {
            let mut s = TcpStream::connect(&srv.1)?;
            write!(
                s,
                "GET /api/jobs?limit=1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )?;
            let mut b = String::new();
            s.read_to_string(&mut b)?;
            let body = b.split_once("\r\n\r\n").ok_or("no body")?.1;
            let v: serde_json::Value = serde_json::from_str(body)?;
            v["jobs"]
                .as_array()
                .ok_or("no jobs")?
                .iter()
                .filter_map(|j| j["tag"].as_str().map(str::to_owned))
                .collect()
        };
        let list = |_: usize| "/".to_owned();
        let page = |i: usize| format!("/jobs/{}", encode(&tags[i % tags.len()]));
        let pages = [
            ("jobs list /", &list as &(dyn Fn(usize) -> String + Sync)),
            ("job page /jobs/TAG", &page),
        ];
        // [page][round] = (p50, p99, requests/s)
        let mut seen = vec![Vec::new(); pages.len()];
        for round in 0..rounds {
            for (what, f) in &pages {
                let at = pages.iter().position(|(w, _)| w == what).expect("a page");
                let (lat, wall) = load(&srv.1, clients, secs, *f)?;
                let r = (pct(&lat, 0.50), pct(&lat, 0.99), lat.len() as f64 / wall);
                println!(
                    "{name:<10} {what:<20} round {}: {clients} clients, {:>6} requests, p50 {:.1} ms, p99 {:.1} ms, {:.0} requests/s (load {})",
                    round + 1,
                    lat.len(),
                    r.0,
                    r.1,
                    r.2,
                    loadavg()
                );
                seen[at].push(r);
            }
        }
        for ((what, _), rs) in pages.iter().zip(&seen) {
            let m = |f: fn(&(f64, f64, f64)) -> f64| {
                let mut v: Vec<f64> = rs.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[0], v[v.len() - 1])
            };
            let (p50, p99, rps) = (m(|r| r.0), m(|r| r.1), m(|r| r.2));
            println!(
                "{name:<10} {what:<20} median of {rounds}: p50 {:.1} ms ({:.1}–{:.1}), p99 {:.1} ms ({:.1}–{:.1}), {:.0} requests/s ({:.0}–{:.0})",
                p50.0, p50.1, p50.2, p99.0, p99.1, p99.2, rps.0, rps.1, rps.2
            );
        }
    }
    drop(temp);
    if std::env::var("TKO_BENCH_PG_URL").is_err() {
        pg::drop_database(&pg_url);
    }
    Ok(())
}
