//! Memory bounds of `tko parse` and `tko backfill` (issue 8 item 7): jobs
//! are parsed in rounds bounded by their input bytes, not only by their
//! count, so twice as many iteration-heavy jobs do not take twice the
//! memory. Peak RSS of real `tko` processes is read with `/usr/bin/time -f
//! %M`.

use std::path::Path;
use std::process::Command;
use tko::gen::{generate, GenOptions};

/// Peak RSS in KiB of `tko parse --json` over `root`.
fn parse_max_rss_kib(root: &Path) -> u64 {
    max_rss_kib(&["parse", "--json", "--level", "2"], root)
}

/// Peak RSS in KiB of `tko ARGS... root`.
fn max_rss_kib(args: &[&str], root: &Path) -> u64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss=%M"])
        .arg(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .arg(root)
        .output()
        .expect("run /usr/bin/time tko");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("maxrss="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"))
}

fn tree(root: &Path, jobs: usize) {
    let opts = GenOptions {
        jobs,
        tests_per_job: 10..=10,
        iterations_per_test: 20..=20,
        perf_keys_per_iteration: 100..=100,
        fraction_bad: 0.0,
        subdir_status_copies: false,
        ..GenOptions::default()
    };
    generate(root, &opts).expect("generate tree");
}

#[test]
fn twice_the_iteration_heavy_jobs_take_no_more_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (small, large) = (tmp.path().join("small"), tmp.path().join("large"));
    // About 0.5 MB of results/keyval per job: 20 MB and 40 MB of input.
    tree(&small, 40);
    tree(&large, 80);
    let a = parse_max_rss_kib(&small);
    let b = parse_max_rss_kib(&large);
    assert!(
        b * 10 < a * 13,
        "80 jobs took {b} KiB, 40 jobs {a} KiB: memory grows with the number of jobs"
    );
}

/// `tko backfill` with a batch larger than the tree: the chunks parsed
/// together are still bounded by their bytes.
#[test]
fn backfill_chunks_are_bounded_by_bytes_not_only_by_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (small, large) = (tmp.path().join("small"), tmp.path().join("large"));
    tree(&small, 40);
    tree(&large, 80);
    let rss = |root: &Path, db: &str| {
        let url = format!("sqlite:{}", tmp.path().join(db).display());
        max_rss_kib(
            &[
                "backfill", "--quiet", "--batch", "1000", "--level", "2", "--db", &url,
            ],
            root,
        )
    };
    let a = rss(&small, "small.db");
    let b = rss(&large, "large.db");
    assert!(
        b * 10 < a * 13,
        "80 jobs took {b} KiB, 40 jobs {a} KiB: memory grows with the number of jobs"
    );
}

/// One status line carrying a 40 MB reason costs at most 1.5 times its
/// size plus a constant: the reason is cut from the line's own buffer,
/// merged without a copy and moved into its test (it used to be copied
/// five times).
#[test]
fn one_huge_reason_line_costs_one_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = tmp.path().join("1-a/h1");
    std::fs::create_dir_all(&job).expect("job dir");
    std::fs::write(job.join("keyval"), "status_version=1\n").expect("keyval");
    let size = 40usize << 20;
    let mut log =
        b"START\t----\t----\ttimestamp=1300000000\n\tSTART\tt\tt\ttimestamp=1300000001\n".to_vec();
    log.extend_from_slice(b"\t\tWARN\tt\tt\ttimestamp=1300000002\t");
    log.resize(log.len() + size, b'x');
    log.extend_from_slice(
        b"\n\tEND GOOD\tt\tt\ttimestamp=1300000003\nEND GOOD\t----\t----\ttimestamp=1300000004\n",
    );
    std::fs::write(job.join("status.log"), log).expect("status.log");
    let rss = max_rss_kib(&["parse", "--level", "2"], &job) << 10;
    let limit = size as u64 * 3 / 2 + (20 << 20);
    assert!(
        rss < limit,
        "peak RSS {rss} bytes for a {size}-byte line (limit {limit})"
    );
}

/// A re-run reads the listings an earlier backfill recorded a round of
/// top-level directories at a time, not all of them at once (they were
/// held for the whole run, some 10 MB here): over 32,768 top-level
/// directories with 240-byte names, a re-run that uses the recorded
/// listings peaks lower than one that lists every directory afresh (the
/// listings deleted first), give or take a few rounds' worth.
#[test]
fn recorded_listings_are_read_a_round_at_a_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("results");
    const TOPS: usize = 32_768;
    for t in 0..TOPS {
        // One sub-directory each, a job without tests.
        let job = root.join(format!("{t:0>240}")).join("h");
        std::fs::create_dir_all(&job).expect("mkdir");
        std::fs::write(job.join("status.log"), "").expect("status.log");
    }
    // Listings are recorded once their directories have been still.
    std::thread::sleep(tko::discover::SETTLED + std::time::Duration::from_millis(1100));
    let db = tmp.path().join("w.db");
    let url = format!("sqlite:{}", db.display());
    let rss = || {
        max_rss_kib(
            &["backfill", "--quiet", "--level", "2", "--db", &url],
            &root,
        )
    };
    rss();
    let recorded: i64 = rusqlite::Connection::open(&db)
        .expect("open the warehouse")
        .query_row("SELECT count(*) FROM tko_scan_listing", [], |r| r.get(0))
        .expect("count listings");
    assert_eq!(recorded, TOPS as i64, "the first run records every listing");
    let listed = rss();
    rusqlite::Connection::open(&db)
        .expect("open the warehouse")
        .execute("DELETE FROM tko_scan_listing", [])
        .expect("forget the listings");
    let unlisted = rss();
    assert!(
        listed < unlisted + 4 * 1024,
        "a re-run reading the recorded listings took {listed} KiB, one listing every directory {unlisted} KiB"
    );
}

/// What a run keeps of each job it found (so each comes out once, and a
/// second directory with its tag is an error naming the first) is its
/// path, held once, and under 192 bytes besides (its record, its slots in
/// two tables, its top-level directory's name): no second copy of the
/// path for the tag, no allocation of its own (it was 447 bytes besides
/// the path; some 80–90 now). Measured between
/// 16,384 and 32,768 jobs with 250-byte directory names, each alone in a
/// top-level directory with a short name (a walk holds those names while
/// it walks their root, and a round's jobs while it is in flight).
#[test]
fn a_job_found_costs_its_path_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let make = |name: &str, jobs: usize| {
        let root = tmp.path().join(name);
        for j in 0..jobs {
            let job = root.join(format!("{j}-a")).join(format!("{j:0>250}"));
            std::fs::create_dir_all(&job).expect("mkdir");
            std::fs::write(job.join("status.log"), "").expect("status.log");
        }
        root
    };
    const SMALL: usize = 16_384;
    let small = make("s", SMALL);
    let large = make("l", 2 * SMALL);
    let path_len = large
        .join("0-a")
        .join(format!("{:0>250}", 0))
        .as_os_str()
        .len() as u64;
    let rss = |root: &Path| max_rss_kib(&["parse", "--level", "2"], root);
    let (a, b) = (rss(&small), rss(&large));
    let per_job = (b.saturating_sub(a) << 10) / SMALL as u64;
    assert!(
        per_job < path_len + 192,
        "each job found took {per_job} bytes ({SMALL} jobs took {a} KiB, {} took {b} KiB) for a {path_len}-byte path",
        2 * SMALL
    );
}
