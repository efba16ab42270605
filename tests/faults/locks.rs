//! Locks, descriptors and exit statuses of `tko load` and `tko backfill`.

use crate::support::{contents, fresh, Backend, Db, TestResult};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tko::gen::{generate, GenOptions};

/// A generated tree in the scheduler's layout and its job directories in
/// tag order.
fn tree(jobs: usize) -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("results");
    let opts = GenOptions {
        jobs,
        tests_per_job: 2..=4,
        iterations_per_test: 1..=2,
        perf_keys_per_iteration: 2..=3,
        fraction_bad: 0.0,
        ..GenOptions::default()
    };
    generate(&root, &opts).expect("generate");
    let mut dirs = Vec::new();
    for top in std::fs::read_dir(&root).expect("root") {
        for host in std::fs::read_dir(top.expect("entry").path()).expect("job") {
            dirs.push(host.expect("entry").path());
        }
    }
    dirs.sort();
    assert_eq!(dirs.len(), jobs);
    (dir, root, dirs)
}

fn tko() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tko"));
    c.stdin(Stdio::null());
    c
}

fn load(url: &str, paths: &[PathBuf], extra: &[&str]) -> Command {
    let mut c = tko();
    c.args(["load", "--level", "2", "--db", url])
        .args(extra)
        .args(paths);
    c
}

/// Waits for every child, killing all of them and failing once `limit`
/// has passed: a hang is a test failure, never a hung test run.
fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<Output> {
    let start = Instant::now();
    let mut children: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    loop {
        let running = children
            .iter_mut()
            .flatten()
            .filter_map(|c| c.try_wait().expect("try_wait").is_none().then_some(()))
            .count();
        if running == 0 {
            break;
        }
        if start.elapsed() > limit {
            for c in children.iter_mut().flatten() {
                let _ = c.kill();
            }
            panic!("{running} loader(s) still running after {limit:?}: deadlock");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .iter_mut()
        .map(|c| c.take().expect("child").wait_with_output().expect("output"))
        .collect()
}

fn lock(job: &Path) -> File {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(job.join(".parse.lock"))
        .expect("lock file");
    f.try_lock().expect("lock is free");
    f
}

/// Jobs committed so far in a SQLite warehouse another process writes
/// (`None` before its schema exists).
fn committed_jobs(f: &crate::support::Fresh) -> Option<i64> {
    let path = f.url.strip_prefix("sqlite:")?;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    conn.query_row("SELECT count(*) FROM tko_jobs", [], |r| r.get(0))
        .ok()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Issue 8 item 2: four loaders started at once on overlapping job sets in
/// different orders finish, and the warehouse equals one serial load.
#[test]
fn pg_concurrent_loaders_on_overlapping_sets_finish_and_equal_a_serial_load() -> TestResult {
    concurrent_loaders_equal_a_serial_load(|url, set| load(url, set, &["--quiet"]))
}

/// The same with four `tko backfill`s of two writers each (eight
/// connections loading batches of two jobs at once, every job on several
/// of them): they finish, and the warehouse equals one serial load.
#[test]
fn pg_concurrent_two_writer_backfills_equal_a_serial_load() -> TestResult {
    concurrent_loaders_equal_a_serial_load(|url, set| {
        let mut c = tko();
        c.args(["backfill", "--quiet", "--level", "2", "--writers", "2"])
            .args(["--batch", "2", "--db", url])
            .args(set);
        c
    })
}

/// Four loaders (`loader` of a URL and a job set) started at once on
/// overlapping job sets in different orders finish with exit 0, and the
/// warehouse equals one serial `tko load`.
fn concurrent_loaders_equal_a_serial_load(
    loader: impl Fn(&str, &[PathBuf]) -> Command,
) -> TestResult {
    let (_t, _root, dirs) = tree(30);
    let sets: Vec<Vec<PathBuf>> = vec![
        dirs[..20].to_vec(),
        dirs[10..].iter().rev().cloned().collect(),
        dirs.iter().step_by(2).cloned().collect(),
        dirs.iter().skip(1).step_by(2).rev().cloned().collect(),
    ];
    let f = fresh(Backend::Postgres);
    // The schema first, so that the loaders race on jobs, not on DDL.
    let out = tko().args(["db", "init", "--db", &f.url]).output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let children = sets
        .iter()
        .map(|set| {
            loader(&f.url, set)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for out in wait_all(children, Duration::from_secs(120)) {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    let serial = fresh(Backend::Postgres);
    let out = load(&serial.url, &dirs, &["--quiet"]).output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        contents(&mut Db::open(&f)),
        contents(&mut Db::open(&serial))
    );
    Ok(())
}

/// Issue 8 item 2: a job whose lock stays held is waited for with a bound,
/// after the other jobs were committed (no lock is held while waiting),
/// then reported as locked with exit 1; once free it loads.
#[test]
fn a_lock_held_past_the_timeout_is_reported_after_the_rest_is_committed() -> TestResult {
    let (_t, _root, dirs) = tree(3);
    let f = fresh(Backend::Sqlite);
    let held = lock(&dirs[1]);
    let start = Instant::now();
    let child = load(&f.url, &dirs, &["--lock-timeout", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // While it waits for the held job, the two others are already visible.
    let mut seen_while_waiting = false;
    let mut child = Some(child);
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(c) = child.as_mut() {
            if c.try_wait()?.is_some() {
                break;
            }
        }
        if committed_jobs(&f) == Some(2) {
            seen_while_waiting = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = wait_all(vec![child.take().expect("child")], Duration::from_secs(60))
        .pop()
        .expect("one");
    let took = start.elapsed();
    assert!(
        seen_while_waiting,
        "the free jobs were not committed before the wait"
    );
    assert!(took >= Duration::from_secs(3), "gave up after {took:?}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1 job(s) still locked"), "{stdout}");
    let tag = format!(
        "{}/{}",
        dirs[1]
            .parent()
            .and_then(Path::file_name)
            .expect("p")
            .to_string_lossy(),
        dirs[1].file_name().expect("n").to_string_lossy()
    );
    assert!(stdout.contains(&tag), "{stdout}");
    let mut db = Db::open(&f);
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 2);

    drop(held);
    let out = load(&f.url, &dirs, &[]).output()?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 3);
    Ok(())
}

/// Issue 8 item 4: with few descriptors (here 48) a forced reload of 300
/// jobs in batches of 100 loses no test: lock files do not pile up with
/// the batch, and a file that cannot be opened fails its job instead of
/// emptying it.
#[test]
fn a_low_descriptor_limit_never_empties_a_loaded_job() -> TestResult {
    let (_t, root, _dirs) = tree(300);
    let f = fresh(Backend::Sqlite);
    let out = tko()
        .args(["backfill", "--quiet", "--level", "2", "--db", &f.url])
        .arg(&root)
        .output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = contents(&mut Db::open(&f));

    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 48 && exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_tko"))
        .args([
            "backfill", "--force", "--batch", "100", "--level", "2", "--db", &f.url,
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .output()?;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("300 reloaded"), "{stdout}");
    assert_eq!(contents(&mut Db::open(&f)), before);
    Ok(())
}

/// Issue 8 item 9: 0 = everything found is loaded or current (jobs
/// without a status file are only counted); 2 = nothing found.
#[test]
fn exit_status_means_what_readme_says() -> TestResult {
    let (_t, root, dirs) = tree(4);
    // A job whose verify failed: a keyval, no status log.
    std::fs::remove_file(dirs[2].join("status.log"))?;
    let f = fresh(Backend::Sqlite);
    for run in 0..2 {
        let out = tko()
            .args(["backfill", "--level", "2", "--db", &f.url])
            .arg(&root)
            .output()?;
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "run {run}: {stdout}");
        assert!(
            stdout.contains("1 job dir(s) without a status file"),
            "{stdout}"
        );
    }
    let empty = tempfile::tempdir()?;
    for cmd in ["load", "backfill"] {
        let out = tko()
            .args([cmd, "--db", &f.url])
            .arg(empty.path())
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{cmd} of an empty root");
        assert!(text(&out.stderr).contains("no job directory found"));
        let out = tko()
            .args([cmd, "--db", &f.url, "/nonexistent/tko/root"])
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{cmd} of a missing root");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("/nonexistent/tko/root")
                && stderr.contains("no such file or directory"),
            "{stderr}"
        );
    }
    Ok(())
}
