//! Parse benchmark (issue 11 item 2): the real release `tko` binary on an
//! iteration-heavy results tree, side by side in one run with `cat` of
//! exactly the files it reads:
//!
//! 1. `cat` of every file `tko parse` reads (`tko::ingest::files_read`),
//!    through `xargs -0 cat > /dev/null`: the floor;
//! 2. `tko parse -j 1` and `tko parse -j 2` (the summary a lab reads), and
//!    the same with `--json` (the JSON Lines a script reads), stdout to
//!    /dev/null, each under `/usr/bin/time -f %M` for its max RSS.
//!
//! Each is run `--rounds` times (interleaved, after one warm-up of each so
//! the page cache holds the tree); the table shows median (min–max) wall
//! seconds, input MB/s at the median, the ratio to `cat`, the speed-up of 2
//! threads over 1, and the largest max RSS.
//!
//! ```text
//! cargo build --release --bin tko --example gen_tree --example bench_parse
//! target/release/examples/bench_parse [--rounds 5] [--jobs 40] [--tests 200]
//!     [--iterations 20] [--perf-keys 30] [--tree DIR] [--tko BINARY]
//! ```
//! Without `--tree` a tree of `--jobs` jobs (`--tests` tests of
//! `--iterations` iterations of `--perf-keys` perf values each) is
//! generated into a temp dir with `tko::gen` (seed 1); with it, an existing
//! tree is parsed (its layout decides the level, as `tko parse` does).
//! `--tko` times another build (e.g. an older one, for before/after).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tko::gen::{generate, GenOptions};

type Error = Box<dyn std::error::Error>;

/// Command-line options.
struct Args {
    rounds: usize,
    jobs: usize,
    tests: u32,
    iterations: u32,
    perf_keys: u32,
    tree: Option<PathBuf>,
    tko: Option<PathBuf>,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        rounds: 5,
        jobs: 40,
        tests: 200,
        iterations: 20,
        perf_keys: 30,
        tree: None,
        tko: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => a.rounds = value()?.parse()?,
            "--jobs" => a.jobs = value()?.parse()?,
            "--tests" => a.tests = value()?.parse()?,
            "--iterations" => a.iterations = value()?.parse()?,
            "--perf-keys" => a.perf_keys = value()?.parse()?,
            "--tree" => a.tree = Some(value()?.into()),
            "--tko" => a.tko = Some(value()?.into()),
            other => return Err(format!("unknown argument {other} (see the source's doc)").into()),
        }
    }
    a.rounds = a.rounds.max(1);
    Ok(a)
}

/// Runs `program ARGS` under `/usr/bin/time`, stdout to /dev/null;
/// returns (wall seconds, max RSS MB, CPU seconds user + system). Fails
/// if it fails.
fn timed(program: &Path, args: &[&str]) -> Result<(f64, f64, f64), Error> {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss_kb=%M cpu=%U+%S"])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (rss_kb, cpu) = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("maxrss_kb="))
        .next_back()
        .and_then(|v| {
            let (rss, cpu) = v.trim().split_once(" cpu=")?;
            let (user, sys) = cpu.split_once('+')?;
            let rss: f64 = rss.parse().ok()?;
            Some((rss, user.parse::<f64>().ok()? + sys.parse::<f64>().ok()?))
        })
        .ok_or_else(|| format!("no max RSS in: {stderr}"))?;
    // `tko parse` exits 1 when a job has error diagnostics (generated
    // trees have a few bad jobs); anything else is a failed run.
    if !matches!(out.status.code(), Some(0 | 1)) {
        return Err(format!("{} {args:?} failed: {stderr}", program.display()).into());
    }
    Ok((wall, rss_kb / 1024.0, cpu))
}

/// Median, min and max of some seconds.
fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn main() -> Result<(), Error> {
    let a = args()?;
    let tko = match &a.tko {
        Some(t) => t.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("tko"))
            .filter(|p| p.is_file())
            .ok_or("cannot find target/release/tko: build it with the example")?,
    };
    let tmp = tempfile::tempdir()?;
    let root = match &a.tree {
        Some(t) => t.clone(),
        None => {
            let root = tmp.path().join("results");
            let opts = GenOptions {
                jobs: a.jobs,
                tests_per_job: a.tests..=a.tests,
                iterations_per_test: a.iterations..=a.iterations,
                perf_keys_per_iteration: a.perf_keys..=a.perf_keys,
                ..GenOptions::default()
            };
            generate(&root, &opts)?;
            root
        }
    };
    let root_s = root.to_str().ok_or("tree path is not UTF-8")?;

    // Exactly the files `tko parse` reads, found as it finds the jobs.
    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let mut files = Vec::new();
    for d in &dirs {
        files.extend(tko::ingest::files_read(d)?);
    }
    let mut bytes = 0u64;
    let mut list = Vec::new();
    for f in &files {
        use std::os::unix::ffi::OsStrExt;
        bytes += std::fs::metadata(f)?.len();
        list.extend_from_slice(f.as_os_str().as_bytes());
        list.push(0);
    }
    let list_path = tmp.path().join("files.list");
    std::fs::write(&list_path, &list)?;
    let mb = bytes as f64 / 1e6;
    println!(
        "{} jobs, {} files read by tko parse, {mb:.1} MB, under {root_s}",
        dirs.len(),
        files.len()
    );

    let cat_script = format!(
        "xargs -0 cat < '{}' > /dev/null",
        list_path.display().to_string().replace('\'', r"'\''")
    );
    let sh = PathBuf::from("/bin/sh");
    let runs: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        ("cat (same files)", sh.clone(), vec!["-c", &cat_script]),
        (
            "tko parse -j 1",
            tko.clone(),
            vec!["parse", "-j", "1", root_s],
        ),
        (
            "tko parse -j 2",
            tko.clone(),
            vec!["parse", "-j", "2", root_s],
        ),
        (
            "tko parse --json -j 1",
            tko.clone(),
            vec!["parse", "--json", "-j", "1", root_s],
        ),
        (
            "tko parse --json -j 2",
            tko.clone(),
            vec!["parse", "--json", "-j", "2", root_s],
        ),
    ];
    for (_, program, args) in &runs {
        timed(program, args)?; // warm-up: page cache, binary
    }
    let mut walls = vec![Vec::new(); runs.len()];
    let mut cpus = vec![Vec::new(); runs.len()];
    let mut rss = vec![0f64; runs.len()];
    for _ in 0..a.rounds {
        for (i, (_, program, args)) in runs.iter().enumerate() {
            let (w, r, c) = timed(program, args)?;
            walls[i].push(w);
            cpus[i].push(c);
            rss[i] = rss[i].max(r);
        }
    }
    let median = |i: usize| stats(&walls[i]).0;
    println!(
        "{} rounds; median (min-max) wall seconds; MB/s of input at the median; \
         CPU seconds (user+system) median (min-max)",
        a.rounds
    );
    println!(
        "{:<24} {:>24} {:>7} {:>6} {:>24} {:>8}",
        "command", "seconds", "MB/s", "x cat", "CPU seconds", "max RSS"
    );
    for (i, (name, _, _)) in runs.iter().enumerate() {
        let (m, lo, hi) = stats(&walls[i]);
        let (cm, clo, chi) = stats(&cpus[i]);
        println!(
            "{name:<24} {:>24} {:>7.0} {:>6.2} {:>24} {:>5.0} MB",
            format!("{m:.3} ({lo:.3}-{hi:.3})"),
            mb / m,
            m / median(0),
            format!("{cm:.2} ({clo:.2}-{chi:.2})"),
            rss[i]
        );
    }
    println!(
        "2 threads over 1: summary {:.2}x, --json {:.2}x",
        median(1) / median(2),
        median(3) / median(4)
    );
    Ok(())
}
