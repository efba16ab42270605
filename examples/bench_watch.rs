//! `tko watch` lag benchmark: JOBS running jobs (default 200) each append a
//! line every PERIOD seconds (default 2; each line starts a new test, so
//! each is a new RUNNING row); a reader polls the warehouse every 20 ms and
//! records when each row first becomes visible. Prints the median and p99
//! lag from a line's write to its row being visible, and the CPU the
//! `tko watch` process used (user + system, from /proc).
//!
//! ```text
//! cargo build --release --bin tko --example bench_watch
//! target/release/examples/bench_watch [JOBS] [PERIOD] [SECONDS] [DB URL]
//! ```
//! The default warehouse is a temp SQLite file; pass a `postgres://` URL to
//! measure PostgreSQL.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// user + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based) of the whole line.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// The (tag, test) pairs visible as rows now.
fn visible(url: &str) -> Vec<(String, String)> {
    let sql = "SELECT j.tag, t.test FROM tko_tests t JOIN tko_jobs j ON j.job_idx = t.job_idx";
    if let Some(path) = url.strip_prefix("sqlite:") {
        let Ok(c) = rusqlite::Connection::open(path) else {
            return Vec::new();
        };
        let Ok(mut s) = c.prepare(sql) else {
            return Vec::new();
        };
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map(|it| it.filter_map(Result::ok).collect())
            .unwrap_or_default()
    } else {
        let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls) else {
            return Vec::new();
        };
        c.query(sql, &[])
            .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            .unwrap_or_default()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let jobs: usize = args.first().map_or(Ok(200), |a| a.parse())?;
    let period: f64 = args.get(1).map_or(Ok(2.0), |a| a.parse())?;
    let seconds: f64 = args.get(2).map_or(Ok(30.0), |a| a.parse())?;
    let tmp = tempfile::tempdir()?;
    let url = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| format!("sqlite:{}", tmp.path().join("tko.db").display()));
    let tko = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .ok_or("no target dir")?
        .join("tko");
    let root = tmp.path().join("results");
    let mut dirs: Vec<PathBuf> = Vec::new();
    for j in 0..jobs {
        let dir = root.join(format!("{}-bench/host{j}", j + 1));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("keyval"),
            format!("status_version=1\nhostname=host{j}\njob_started=1300000000\n"),
        )?;
        std::fs::write(
            dir.join("status.log"),
            "START\t----\t----\ttimestamp=1300000000\t\n",
        )?;
        dirs.push(dir);
    }
    let mut child = Command::new(&tko)
        .args(["watch", "--db", &url])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    // Wait until every job's SERVER_JOB row is in (the start-up replay).
    let t0 = Instant::now();
    while visible(&url).len() < jobs {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            return Err("the watcher did not pick the jobs up in 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{jobs} jobs picked up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let written: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<(String, String), Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (seen, done, url) = (Arc::clone(&seen), Arc::clone(&done), url.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let now = Instant::now();
                let rows = visible(&url);
                let mut s = seen.lock().expect("lock");
                for r in rows {
                    s.entry(r).or_insert(now);
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    // Job j writes at offsets j * period / jobs, then every period.
    let mut next: Vec<f64> = (0..jobs).map(|j| j as f64 * period / jobs as f64).collect();
    let mut count = vec![0usize; jobs];
    while start.elapsed().as_secs_f64() < seconds {
        let now = start.elapsed().as_secs_f64();
        for j in 0..jobs {
            if next[j] <= now {
                count[j] += 1;
                let test = format!("t{}", count[j]);
                let line = format!("\tSTART\t{test}\t{test}\ttimestamp=1300000001\t\n\tEND GOOD\t{test}\t{test}\ttimestamp=1300000002\t\n");
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(dirs[j].join("status.log"))?;
                f.write_all(line.as_bytes())?;
                let tag = format!("{}-bench/host{j}", j + 1);
                written
                    .lock()
                    .expect("lock")
                    .insert((tag, test), Instant::now());
                next[j] += period;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = start.elapsed().as_secs_f64();
    // Let the last lines land.
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(pid) - cpu0;
    done.store(true, Ordering::Relaxed);
    reader.join().expect("reader");
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let written = written.lock().expect("lock");
    let seen = seen.lock().expect("lock");
    let mut lags: Vec<f64> = written
        .iter()
        .filter_map(|(k, w)| {
            seen.get(k)
                .map(|s| s.saturating_duration_since(*w).as_secs_f64())
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    println!(
        "{} lines written in {wall:.1} s ({:.0} lines/s), {} seen",
        written.len(),
        written.len() as f64 / wall,
        lags.len()
    );
    println!(
        "lag write -> visible row: median {:.0} ms, p99 {:.0} ms, max {:.0} ms (poll every 20 ms)",
        percentile(&lags, 0.5) * 1e3,
        percentile(&lags, 0.99) * 1e3,
        lags.last().copied().unwrap_or(f64::NAN) * 1e3
    );
    println!(
        "tko watch CPU: {cpu:.2} s over {:.1} s ({:.0}% of one core)",
        wall + 3.0,
        cpu / (wall + 3.0) * 100.0
    );
    Ok(())
}
