//! Memory bounds of `tko parse` and `tko backfill` (issue 8 item 7): jobs
//! are parsed in rounds bounded by their input bytes, not only by their
//! count, so twice as many iteration-heavy jobs do not take twice the
//! memory. Peak RSS of real `tko` processes is read with `/usr/bin/time -f
//! %M`.

mod support;

use std::path::Path;
use std::process::Command;
use support::{fresh, Backend, Db};
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
/// second directory with its tag is an error naming the first) does not
/// grow with its path: a record, its slots in two tables and its
/// top-level directory's name take under 192 bytes, less than the path
/// alone, which goes to a file (55–116 bytes a job measured; with the
/// path held in memory 350–380, with a path and a tag allocated apart
/// 719). Measured between 16,384 and 32,768
/// jobs with 250-byte directory names, each alone in a top-level directory
/// with a short name (a walk holds those names while it walks their root,
/// and a round's jobs while it is in flight).
#[test]
fn a_job_found_costs_no_memory_for_its_path() {
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
    let rss = |root: &Path| max_rss_kib(&["parse", "--level", "2"], root);
    let (a, b) = (rss(&small), rss(&large));
    let per_job = (b.saturating_sub(a) << 10) / SMALL as u64;
    assert!(
        per_job < 192,
        "each job found took {per_job} bytes ({SMALL} jobs took {a} KiB, {} took {b} KiB) with a path of over 250 bytes",
        2 * SMALL
    );
}

/// A lab that removed a year of results leaves the next backfill with a
/// great many recorded listings of directories that are gone: they are
/// read as a stream, not all at once, and at most 32,768 are forgotten a
/// round (the others by the runs after). Over 300,000 such listings of a
/// root with three jobs, a backfill peaks within 16 MiB of one without
/// them (holding them all took some 90 MB more), forgets exactly 32,768,
/// and the next runs forget the rest.
#[test]
fn a_great_many_gone_listings_are_not_held_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("results");
    for t in 0..3 {
        let job = root.join(format!("{t}-a")).join("h");
        std::fs::create_dir_all(&job).expect("mkdir");
        std::fs::write(job.join("status.log"), "").expect("status.log");
    }
    let root = std::fs::canonicalize(&root).expect("canonical root");
    let f = fresh(Backend::Postgres);
    let rss = || {
        max_rss_kib(
            &["backfill", "--quiet", "--level", "2", "--db", &f.url],
            &root,
        )
    };
    rss();
    let without = rss();
    const GONE: i64 = 300_000;
    let mut db = Db::open(&f);
    let root_text = root.to_str().expect("a UTF-8 temp path");
    assert!(!root_text.contains('\''), "{root_text}");
    db.exec(&format!(
        "INSERT INTO tko_scan_listing (path, stamp, subdirs) \
         SELECT convert_to('{root_text}/gone-' || lpad(i::text, 7, '0'), 'UTF8'), \
                decode(repeat('00', 48), 'hex'), ''::bytea \
         FROM generate_series(1, {GONE}) AS i"
    ));
    // (The jobs' own directories' listings are recorded once settled.)
    let gone = |db: &mut Db| {
        db.int("SELECT count(*) FROM tko_scan_listing WHERE position('/gone-'::bytea IN path) > 0")
    };
    assert_eq!(gone(&mut db), GONE);
    let with = rss();
    assert!(
        with < without + 16 * 1024,
        "with {GONE} listings gone a backfill took {with} KiB, without {without} KiB"
    );
    const PER_ROUND: i64 = 32_768;
    assert_eq!(gone(&mut db), GONE - PER_ROUND);
    for _ in 0..(GONE / PER_ROUND) {
        rss();
    }
    assert_eq!(gone(&mut db), 0);
}
