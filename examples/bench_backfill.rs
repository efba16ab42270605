//! Backfill benchmark: the real `tko` binary on a generated results root,
//! against a throwaway PostgreSQL. First, once, `tko parse` of the root on
//! 1 and on 2 threads (parse-only scaling; it also warms the page cache).
//! Then RUNS times (default 3), side by side in each run:
//!
//! 1. `tko backfill` end to end (walk, parse, load) into a fresh database,
//!    with its max RSS;
//! 2. a second `tko backfill` of the unchanged root;
//! 3. a raw binary `COPY FROM` of the very rows the backfill wrote (exported
//!    to files first), the ceiling the backfill is judged against.
//!
//! The second backfill's CPU seconds (user + system, of `tko` alone) are
//! printed too: on a shared machine they vary less than its wall time.
//! Before each timed step the server is settled ([`settle`]): a
//! `CHECKPOINT`, then no autovacuum worker running (after a load of millions
//! of rows autovacuum takes a core for seconds, which otherwise lands on
//! whichever step comes next).
//! With `TKO_BENCH_ONE_WRITER=1` each run also times a `tko backfill
//! --writers 1` into another fresh database, side by side with the default
//! (two writers).
//!
//! Each run also prints the floors of this machine, what no backfill can
//! beat here, so that a ratio short of a target can be told apart from a
//! target out of reach:
//!
//! - **load**: on 2 cores a backfill takes at least half the CPU of `tko
//!   parse -j 2` of the root (the reading and parsing it cannot skip) plus
//!   that of the server process of the raw `COPY` (the same rows' work on
//!   the server); the raw `COPY` over that is the best rate it can have.
//! - **re-run**: the `stat`s no correct re-run can skip ([`stat_floor`]),
//!   plus a `tko backfill` of one unchanged job (start-up, connections, one
//!   ledger check); the first backfill over that is the best speed-up.
//!
//! Each figure is printed as median (min-max) over the runs; the ratios are
//! taken within each run.
//!
//! ```text
//! cargo build --release --bin tko --example gen_tree --example bench_backfill
//! target/release/examples/gen_tree --jobs 20000 --seed 1 /tmp/g20k
//! target/release/examples/bench_backfill /tmp/g20k 3
//! # realistic proportions: many small jobs, one iteration per test
//! target/release/examples/gen_tree --jobs 20000 --seed 2 --tests 1-5 \
//!     --iterations 1-1 --perf-keys 1-6 /tmp/real20k
//! target/release/examples/bench_backfill /tmp/real20k 3
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

/// Settles the server of `url` before a timed step: `CHECKPOINT` (dirty
/// buffers written now, not during the step), then waits (at most two
/// minutes) until no autovacuum worker runs.
fn settle(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut c = PgStore::connect(url)?;
    let c = c.client();
    c.batch_execute("CHECKPOINT")?;
    let start = Instant::now();
    while start.elapsed().as_secs() < 120 {
        let busy: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
                &[],
            )?
            .get(0);
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// What `/usr/bin/time` says of one `tko` run.
struct Timed {
    /// Wall seconds.
    wall: f64,
    /// Max RSS, MB.
    rss: f64,
    /// User and system CPU seconds of the `tko` process.
    cpu: (f64, f64),
}

/// Runs `tko ARGS` under `/usr/bin/time`.
fn timed(tko: &Path, args: &[&str]) -> Result<Timed, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M\ncpu=%U %S"])
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
    let cpu: Vec<f64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("cpu="))
        .next_back()
        .map(|v| v.split(' ').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default();
    let [user, sys] = cpu[..] else {
        return Err(format!("no CPU times in: {stderr}").into());
    };
    Ok(Timed {
        wall,
        rss: rss_kb / 1024.0,
        cpu: (user, sys),
    })
}

/// CPU seconds (user + system) process `pid` of this machine has used so
/// far, from `/proc` (`None`: no such process here, e.g. a remote server).
fn process_cpu(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses), from the third:
    // utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_second)
}

/// The `stat`s no correct re-run can skip, timed (seconds): per job its
/// directory (whose mtime is the cheapest proof that no file came or went
/// in it), `status.log` and `keyval` (rewritten in place, a file changes
/// only its own metadata), each relative to the open root, as cheap as a
/// path gets; on one thread and on two, the faster. The listing of the
/// top-level directories, the ledger and everything else are not counted.
fn stat_floor(
    root: &Path,
    dirs: &[tko::discover::JobDir],
) -> Result<f64, Box<dyn std::error::Error>> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let root = tko::discover::absolute(root)?;
    let mut rels = Vec::new();
    for d in dirs {
        let Ok(rel) = d.path.strip_prefix(&root) else {
            continue;
        };
        for file in ["", "/status.log", "/keyval"] {
            let mut bytes = rel.as_os_str().as_bytes().to_vec();
            bytes.extend_from_slice(file.as_bytes());
            rels.push(CString::new(bytes)?);
        }
    }
    let dir = std::fs::File::open(&root)?;
    let stat_all = |names: &[CString]| {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        for name in names {
            // SAFETY: `dir` is open, `name` NUL-terminated, `st` large enough.
            unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), 0) };
        }
    };
    let t = Instant::now();
    stat_all(&rels);
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (a, b) = rels.split_at(rels.len() / 2);
    std::thread::scope(|s| {
        s.spawn(|| stat_all(a));
        stat_all(b);
    });
    Ok(one.min(t.elapsed().as_secs_f64()))
}

/// `median (min-max)` of `v`, each formatted by `f`.
fn spread(v: &[f64], f: impl Fn(f64) -> String) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    format!(
        "{} ({}-{})",
        f(median),
        f(s[0]),
        f(*s.last().expect("at least one run"))
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let root: PathBuf = args
        .next()
        .ok_or("usage: bench_backfill RESULTS_ROOT [RUNS]")?
        .into();
    let runs: usize = match args.next() {
        Some(n) => n
            .to_str()
            .and_then(|n| n.parse().ok())
            .ok_or("RUNS: a number")?,
        None => 3,
    };
    let runs = runs.max(1);
    let tko = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tko"))
        .ok_or("cannot locate the tko binary")?;
    let root_s = root.to_str().ok_or("root path is not UTF-8")?;
    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let jobs = dirs.len() as f64;
    println!("{} jobs under {root_s}, {runs} runs", dirs.len());

    // Warm the page cache so that every measurement below reads from memory.
    timed(&tko, &["parse", "--level", "2", root_s])?;
    let p1 = timed(&tko, &["parse", "-j", "1", "--level", "2", root_s])?.wall;
    let p2 = timed(&tko, &["parse", "-j", "2", "--level", "2", root_s])?.wall;
    println!(
        "parse only (once): 1 thread {:.0} jobs/s, 2 threads {:.0} jobs/s, speed-up {:.2}x",
        jobs / p1,
        jobs / p2,
        p1 / p2
    );

    if let Ok(u) = std::env::var("TKO_BENCH_PG_URL") {
        std::env::set_var("TKO_TEST_PG_URL", u);
    }
    let (mut first, mut second, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss1s, mut rss2s, mut rates, mut speedups) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cpu2s, mut sys2s) = (Vec::new(), Vec::new());
    let one_writer = std::env::var_os("TKO_BENCH_ONE_WRITER").is_some();
    let (mut ones, mut one_rates, mut gains) = (Vec::new(), Vec::new(), Vec::new());
    let (mut load_bests, mut rerun_floors, mut rerun_bests) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = 0.0;
    for run in 1..=runs {
        let one = if one_writer {
            let url = pg::fresh_database_url();
            settle(&url)?;
            let args = ["backfill", "--quiet", "--level", "2", "--writers", "1"];
            let t = timed(&tko, &[&args[..], &["--db", &url, root_s]].concat())?.wall;
            pg::drop_database(&url);
            Some(t)
        } else {
            None
        };
        let url = pg::fresh_database_url();
        let backfill = ["backfill", "--quiet", "--level", "2", "--db", &url, root_s];
        settle(&url)?;
        let Timed {
            wall: b1,
            rss: rss1,
            ..
        } = timed(&tko, &backfill)?;
        settle(&url)?;
        let Timed {
            wall: b2,
            rss: rss2,
            cpu: (user2, sys2),
        } = timed(&tko, &backfill)?;
        // The re-run floor: the stats, and a run of one unchanged job.
        let stats = stat_floor(&root, &dirs)?;
        let one_job = dirs[0].path.to_str().ok_or("job path is not UTF-8")?;
        let start = timed(
            &tko,
            &["backfill", "--quiet", "--level", "2", "--db", &url, one_job],
        )?
        .wall;
        let rerun_floor = stats + start;
        let mut pgs = PgStore::connect(&url)?;
        let export = tempfile::tempdir()?;
        let n: u64 = pgs
            .export_rows_to_dir(export.path())?
            .iter()
            .map(|r| r.1)
            .sum();
        settle(&url)?;
        let server: i32 = pgs
            .client()
            .query_one("SELECT pg_backend_pid()", &[])?
            .get(0);
        let server_cpu = process_cpu(server);
        let t = Instant::now();
        pgs.raw_copy_from_dir(export.path())?;
        let raw = t.elapsed().as_secs_f64();
        let server_cpu = server_cpu.zip(process_cpu(server)).map(|(a, b)| b - a);
        drop(pgs);
        pg::drop_database(&url);
        rows = n as f64;
        // The load floor: the parse's CPU and the raw COPY's server CPU
        // shared by 2 cores.
        let parse = timed(&tko, &["parse", "-j", "2", "--level", "2", root_s])?.cpu;
        let parse_cpu = parse.0 + parse.1;
        if let Some(server_cpu) = server_cpu {
            let floor = (parse_cpu + server_cpu) / 2.0;
            println!(
                "run {run}: load floor on 2 cores: (parse CPU {parse_cpu:.2} s + raw COPY server \
                 CPU {server_cpu:.2} s) / 2 = {floor:.2} s: at most {:.0} % of the raw COPY",
                100.0 * raw / floor
            );
            load_bests.push(100.0 * raw / floor);
        }
        println!(
            "run {run}: re-run floor: {stats:.3} s of stats + {start:.3} s for one unchanged job \
             = {rerun_floor:.3} s: at most {:.0}x",
            b1 / rerun_floor
        );
        rerun_floors.push(rerun_floor);
        rerun_bests.push(b1 / rerun_floor);
        println!(
            "run {run}: backfill {b1:.2} s (max RSS {rss1:.0} MB), raw COPY {raw:.2} s \
             ({:.0} %), second backfill {b2:.3} s ({:.0}x, max RSS {rss2:.0} MB, \
             CPU {user2:.2} s user + {sys2:.2} s system)",
            100.0 * raw / b1,
            b1 / b2
        );
        first.push(b1);
        second.push(b2);
        raws.push(raw);
        rss1s.push(rss1);
        rss2s.push(rss2);
        rates.push(100.0 * raw / b1);
        speedups.push(b1 / b2);
        cpu2s.push(user2 + sys2);
        sys2s.push(sys2);
        if let Some(one) = one {
            println!(
                "run {run}: one writer {one:.2} s ({:.0} % of raw COPY), two writers {:.2}x faster",
                100.0 * raw / one,
                one / b1
            );
            ones.push(one);
            one_rates.push(100.0 * raw / one);
            gains.push(one / b1);
        }
    }
    let secs = |d: usize| move |v: f64| format!("{v:.d$} s");
    println!("median (min-max) of {runs} runs, {rows:.0} rows:");
    println!(
        "backfill (walk+parse+load): {}, {} rows/s",
        spread(&first, secs(2)),
        spread(&first, |v| format!("{:.0}", rows / v))
    );
    println!(
        "raw COPY FROM of the same rows: {}, {} rows/s",
        spread(&raws, secs(2)),
        spread(&raws, |v| format!("{:.0}", rows / v))
    );
    println!(
        "backfill / raw COPY rate: {}",
        spread(&rates, |v| format!("{v:.0} %"))
    );
    if one_writer {
        println!(
            "one writer (--writers 1): {}, {} of raw COPY; two writers {} faster",
            spread(&ones, secs(2)),
            spread(&one_rates, |v| format!("{v:.0} %")),
            spread(&gains, |v| format!("{v:.2}x"))
        );
    }
    println!(
        "second backfill (unchanged): {}, {} faster",
        spread(&second, secs(3)),
        spread(&speedups, |v| format!("{v:.0}x"))
    );
    println!(
        "second backfill CPU of tko: {} (system: {})",
        spread(&cpu2s, secs(2)),
        spread(&sys2s, secs(2))
    );
    if !load_bests.is_empty() {
        println!(
            "best possible backfill / raw COPY rate here (load floor): {}",
            spread(&load_bests, |v| format!("{v:.0} %"))
        );
    }
    println!(
        "re-run floor: {}, best possible speed-up here {}",
        spread(&rerun_floors, secs(3)),
        spread(&rerun_bests, |v| format!("{v:.0}x"))
    );
    println!(
        "max RSS: first {}, second {}",
        spread(&rss1s, |v| format!("{v:.0} MB")),
        spread(&rss2s, |v| format!("{v:.0} MB"))
    );
    Ok(())
}
