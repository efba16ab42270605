//! Writes a synthetic Autotest results tree (see `tko::gen`).
//!
//! ```text
//! cargo run --release --example gen_tree -- --jobs 2000 --seed 1 OUT_DIR
//! cargo run --release --example gen_tree -- --modify 50 --seed 3 OUT_DIR
//! ```

use std::path::PathBuf;
use std::process::exit;
use std::time::Instant;
use tko::gen::{generate, modify, GenOptions};

const USAGE: &str = "usage: gen_tree [--jobs N] [--seed S] [--first-id N] [--tests A-B] \
[--iterations A-B] [--perf-keys A-B] [--failed F] [--bad F] [--reboot F] [--machines N] \
[--kernels N] [--threads N] [--no-copies] [--relabel-machines] [--modify K] OUT_DIR";

fn die(msg: &str) -> ! {
    eprintln!("gen_tree: {msg}\n{USAGE}");
    exit(2)
}

fn num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let v = v.unwrap_or_else(|| die(&format!("{flag} needs a value")));
    v.parse()
        .unwrap_or_else(|_| die(&format!("bad value for {flag}: {v}")))
}

fn range(flag: &str, v: Option<String>) -> std::ops::RangeInclusive<u32> {
    let v = v.unwrap_or_else(|| die(&format!("{flag} needs a value")));
    let (a, b) = v.split_once('-').unwrap_or((&v, &v));
    match (a.parse(), b.parse()) {
        (Ok(a), Ok(b)) if a <= b => a..=b,
        _ => die(&format!("bad range for {flag}: {v} (want A-B)")),
    }
}

fn main() {
    let mut opts = GenOptions::default();
    let mut out: Option<PathBuf> = None;
    let mut modify_count: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--jobs" => opts.jobs = num(&a, args.next()),
            "--seed" => opts.seed = num(&a, args.next()),
            "--first-id" => opts.first_job_id = num(&a, args.next()),
            "--tests" => opts.tests_per_job = range(&a, args.next()),
            "--iterations" => opts.iterations_per_test = range(&a, args.next()),
            "--perf-keys" => opts.perf_keys_per_iteration = range(&a, args.next()),
            "--failed" => opts.fraction_failed = num(&a, args.next()),
            "--bad" => opts.fraction_bad = num(&a, args.next()),
            "--reboot" => opts.fraction_reboot = num(&a, args.next()),
            "--machines" => opts.machines = num(&a, args.next()),
            "--kernels" => opts.kernels = num(&a, args.next()),
            "--threads" => opts.threads = num(&a, args.next()),
            "--no-copies" => opts.subdir_status_copies = false,
            "--relabel-machines" => opts.relabel_machines = true,
            "--modify" => modify_count = Some(num(&a, args.next())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            s if s.starts_with('-') => die(&format!("unknown option {s}")),
            s if out.is_none() => out = Some(PathBuf::from(s)),
            s => die(&format!("unexpected argument {s}")),
        }
    }
    let out = out.unwrap_or_else(|| die("missing OUT_DIR"));
    let t0 = Instant::now();
    if let Some(k) = modify_count {
        match modify(&out, k, opts.seed) {
            Ok(touched) => println!(
                "modified={} seed={} secs={:.2}",
                touched.len(),
                opts.seed,
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => die(&format!("{}: {e}", out.display())),
        }
        return;
    }
    match generate(&out, &opts) {
        Ok(s) => println!(
            "jobs={} tests={} files={} bytes={} bad_jobs={} truncated={} secs={:.2}",
            s.jobs,
            s.tests,
            s.files,
            s.bytes,
            s.bad_jobs,
            s.truncated_jobs,
            t0.elapsed().as_secs_f64()
        ),
        Err(e) => die(&format!("{}: {e}", out.display())),
    }
}
