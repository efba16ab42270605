//! `tko watch` as a real process on both stores: a test writes a job's
//! status log line by line and reads the warehouse as the lines arrive.
//! RUNNING rows and information messages appear before the job ends; after
//! the END line the warehouse equals a `tko load` of the same directory;
//! a kill -9 and a restart end in the same state; a truncated status log
//! is read again from the start. Every wait is bounded.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{contents, fresh, Backend, Db, Fresh, TestResult};

const TAG: &str = "1-alice/host1";
/// How long anything the watcher should do may take.
const PATIENCE: Duration = Duration::from_secs(30);

fn tko() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tko"))
}

/// A running `tko watch`, killed (by its own pid) if the test ends early.
struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(f: &Fresh, root: &Path, extra: &[&str]) -> Watcher {
        let log = root.parent().expect("parent").join(format!(
            "watch-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos()
        ));
        let child = tko()
            .args(["watch", "--level", "2", "--db", &f.url])
            .args(extra)
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start tko watch");
        Watcher { child, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "tko watch: {status:?}\n{}", self.stderr());
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "tko watch did not stop on SIGTERM\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` until it holds, for at most [`PATIENCE`].
fn wait_for(what: &str, w: &Watcher, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < PATIENCE,
            "timed out waiting for {what}\n--- tko watch stderr:\n{}",
            w.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (test, status) of the job's rows, by test name.
fn tests_of(f: &Fresh) -> Vec<(String, String)> {
    let mut db = match try_open(f) {
        Some(db) => db,
        None => return Vec::new(),
    };
    db.texts(
        "SELECT test_name, status FROM tko_test_view_2 WHERE job_tag = '1-alice/host1' \
         ORDER BY test_name",
    )
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        )
    })
    .collect()
}

fn information_of(f: &Fresh, test: &str) -> Option<String> {
    let mut db = try_open(f)?;
    db.texts(&format!(
        "SELECT i.message FROM tko_test_information i JOIN tko_tests t \
         ON t.test_idx = i.test_idx WHERE t.test = '{test}'"
    ))
    .into_iter()
    .next()
    .and_then(|r| r[0].clone())
}

/// The ledger says the job was loaded by a full parse (not a live load).
fn finalised(f: &Fresh) -> bool {
    let Some(mut db) = try_open(f) else {
        return false;
    };
    db.texts("SELECT fingerprint FROM tko_ingest_ledger WHERE tag = '1-alice/host1'")
        .into_iter()
        .any(|r| r[0].as_deref().is_some_and(|fp| !fp.starts_with("live:")))
}

/// A reader once the watcher has created the schema.
fn try_open(f: &Fresh) -> Option<Db> {
    let mut db = Db::open(f);
    let ready = match &mut db {
        Db::Lite(c) => c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'tko_test_information'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0),
        Db::Pg(c) => c
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'tko_test_information'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0),
    };
    (ready > 0).then_some(db)
}

/// A job directory of the scheduler's layout, its status log empty.
fn new_job(root: &Path) -> PathBuf {
    let dir = root.join(TAG);
    std::fs::create_dir_all(dir.join("dbench")).expect("mkdir");
    std::fs::write(
        dir.join("keyval"),
        "status_version=1\nhostname=host1\nuser=alice\njob_started=1300000000\n",
    )
    .expect("keyval");
    std::fs::write(dir.join("dbench/keyval"), "version=1\n").expect("test keyval");
    std::fs::write(dir.join("status.log"), "").expect("status.log");
    dir
}

fn append(dir: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("status.log"))
        .expect("open status.log");
    for l in lines {
        // One write per line, as autoserv records them.
        f.write_all(format!("{l}\n").as_bytes()).expect("append");
        f.flush().expect("flush");
    }
}

const FIRST: &[&str] = &[
    "START\t----\t----\ttimestamp=1300000001\t",
    "\tSTART\tdbench\tdbench\ttimestamp=1300000002\t",
    "\t\tINFO\t----\t----\ttimestamp=1300000003\tPercent Complete: 40%",
];
const SECOND: &[&str] = &[
    "\t\tGOOD\tdbench\tdbench\ttimestamp=1300000004\tcompleted successfully",
    "\tEND GOOD\tdbench\tdbench\ttimestamp=1300000005\t",
    "\tSTART\tkernbench\tkernbench\ttimestamp=1300000006\t",
    "\t\tINFO\t----\t----\ttimestamp=1300000007\tbuilding",
];
const LAST: &[&str] = &[
    "\t\tFAIL\tkernbench\tkernbench\ttimestamp=1300000008\tbuild failed",
    "\tEND FAIL\tkernbench\tkernbench\ttimestamp=1300000009\t",
    "END GOOD\t----\t----\ttimestamp=1300000010\t",
];

fn has(rows: &[(String, String)], test: &str, status: &str) -> bool {
    rows.iter().any(|(t, s)| t == test && s == status)
}

/// The warehouse `tko load` makes of `dir`.
fn loaded_contents(backend: Backend, dir: &Path) -> Vec<Vec<Option<String>>> {
    let f = fresh(backend);
    let out = tko()
        .args(["load", "--quiet", "--level", "2", "--db", &f.url])
        .arg(dir)
        .output()
        .expect("tko load");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    contents(&mut Db::open(&f))
}

fn summary_json(f: &Fresh) -> serde_json::Value {
    let out = tko()
        .args(["summary", "--format", "json", "--db", &f.url, TAG])
        .output()
        .expect("tko summary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One object per test (JSON Lines), gathered as {"lines": [...]}.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    serde_json::json!({ "lines": lines })
}

fn live_rows_then_final_load(backend: Backend, poll: bool) -> TestResult {
    let f = fresh(backend);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("results");
    std::fs::create_dir_all(&root)?;
    let extra: &[&str] = if poll { &["--poll", "0.5"] } else { &[] };
    let w = Watcher::start(&f, &root, extra);
    // A new job directory is picked up and followed line by line.
    let dir = new_job(&root);
    append(&dir, FIRST);
    wait_for("dbench RUNNING with its information", &w, || {
        has(&tests_of(&f), "dbench", "RUNNING")
            && information_of(&f, "dbench").as_deref() == Some("Percent Complete: 40%")
    });
    let s = summary_json(&f);
    let dbench = s["lines"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["test"] == "dbench"))
        .ok_or("dbench in the summary")?;
    assert_eq!(dbench["running"], true, "{s}");
    assert_eq!(dbench["information"], "Percent Complete: 40%", "{s}");
    assert_eq!(dbench["last_status"], "RUNNING", "{s}");
    append(&dir, SECOND);
    wait_for("dbench GOOD and kernbench RUNNING", &w, || {
        let rows = tests_of(&f);
        has(&rows, "dbench", "GOOD") && has(&rows, "kernbench", "RUNNING")
    });
    assert_eq!(information_of(&f, "kernbench").as_deref(), Some("building"));
    assert!(!finalised(&f), "not finalised before the END line");
    append(&dir, LAST);
    wait_for("the final load", &w, || finalised(&f));
    assert!(
        has(&tests_of(&f), "SERVER_JOB", "ABORT"),
        "no exit status yet"
    );
    // The scheduler's markers come after the END line: the exit status
    // in `.autoserv_execute` and `job_finished`. The job is loaded again.
    std::fs::write(
        dir.join(".autoserv_execute"),
        "autoserv -P 1-alice/host1\n0\n",
    )?;
    let mut kv = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("keyval"))?;
    kv.write_all(b"job_finished=1300000011\n")?;
    drop(kv);
    wait_for("SERVER_JOB GOOD", &w, || {
        has(&tests_of(&f), "SERVER_JOB", "GOOD")
    });
    w.stop();
    assert_eq!(
        contents(&mut Db::open(&f)),
        loaded_contents(backend, &dir),
        "after the END line the warehouse equals tko load"
    );
    Ok(())
}

#[test]
fn sqlite_live_rows_then_final_load() -> TestResult {
    live_rows_then_final_load(Backend::Sqlite, false)
}

#[test]
fn pg_live_rows_then_final_load() -> TestResult {
    live_rows_then_final_load(Backend::Postgres, false)
}

#[test]
fn sqlite_live_rows_then_final_load_polling() -> TestResult {
    live_rows_then_final_load(Backend::Sqlite, true)
}

fn kill9_and_restart(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("results");
    std::fs::create_dir_all(&root)?;
    let dir = new_job(&root);
    append(&dir, FIRST);
    let w = Watcher::start(&f, &root, &[]);
    wait_for("dbench RUNNING", &w, || {
        has(&tests_of(&f), "dbench", "RUNNING")
    });
    append(&dir, &SECOND[..2]);
    wait_for("dbench GOOD", &w, || has(&tests_of(&f), "dbench", "GOOD"));
    w.kill9();
    // Lines written while nothing watches.
    append(&dir, &SECOND[2..]);
    let w = Watcher::start(&f, &root, &[]);
    wait_for("kernbench RUNNING after the restart", &w, || {
        has(&tests_of(&f), "kernbench", "RUNNING")
    });
    // Replayed from byte 0: no row twice.
    let rows = tests_of(&f);
    assert_eq!(
        rows.iter().filter(|(t, _)| t == "dbench").count(),
        1,
        "{rows:?}"
    );
    append(&dir, LAST);
    wait_for("the final load", &w, || finalised(&f));
    w.kill9();
    // A restart after the end changes nothing, and does not even read
    // the finished job again (its backfill signature vouches for it).
    let w = Watcher::start(&f, &root, &[]);
    std::thread::sleep(Duration::from_secs(2));
    let said = w.stderr();
    assert!(!said.contains("finished, loaded"), "{said}");
    w.stop();
    assert_eq!(contents(&mut Db::open(&f)), loaded_contents(backend, &dir));
    Ok(())
}

#[test]
fn sqlite_kill9_and_restart() -> TestResult {
    kill9_and_restart(Backend::Sqlite)
}

#[test]
fn pg_kill9_and_restart() -> TestResult {
    kill9_and_restart(Backend::Postgres)
}

fn truncated_log_is_read_again(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("results");
    std::fs::create_dir_all(&root)?;
    let w = Watcher::start(&f, &root, &[]);
    let dir = new_job(&root);
    append(&dir, FIRST);
    append(&dir, SECOND);
    wait_for("kernbench RUNNING", &w, || {
        has(&tests_of(&f), "kernbench", "RUNNING")
    });
    // The log is truncated and written again with other tests.
    std::fs::write(dir.join("status.log"), "")?;
    append(
        &dir,
        &[
            "START\t----\t----\ttimestamp=1300000101\t",
            "\tSTART\tsleeptest\tsleeptest\ttimestamp=1300000102\t",
        ],
    );
    wait_for("only sleeptest, RUNNING", &w, || {
        let rows = tests_of(&f);
        has(&rows, "sleeptest", "RUNNING") && !rows.iter().any(|(t, _)| t == "dbench")
    });
    append(
        &dir,
        &[
            "\tEND GOOD\tsleeptest\tsleeptest\ttimestamp=1300000103\t",
            "END GOOD\t----\t----\ttimestamp=1300000104\t",
        ],
    );
    wait_for("the final load", &w, || finalised(&f));
    w.stop();
    assert_eq!(contents(&mut Db::open(&f)), loaded_contents(backend, &dir));
    Ok(())
}

#[test]
fn sqlite_truncated_log_is_read_again() -> TestResult {
    truncated_log_is_read_again(Backend::Sqlite)
}

#[test]
fn pg_truncated_log_is_read_again() -> TestResult {
    truncated_log_is_read_again(Backend::Postgres)
}

/// A kernel only the RUNNING rows referred to (UNKNOWN, before the kernel
/// line) does not survive the final load.
fn live_kernel_rows_do_not_survive(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("results");
    std::fs::create_dir_all(&root)?;
    let w = Watcher::start(&f, &root, &[]);
    let dir = new_job(&root);
    append(&dir, FIRST);
    wait_for("dbench RUNNING", &w, || {
        has(&tests_of(&f), "dbench", "RUNNING")
    });
    append(
        &dir,
        &["\t\tINFO\t----\t----\ttimestamp=1300000003\tkernel=2.6.30-autotest\tbooted"],
    );
    append(&dir, SECOND);
    append(&dir, LAST);
    wait_for("the final load", &w, || finalised(&f));
    w.stop();
    let want = loaded_contents(backend, &dir);
    assert!(
        want.contains(&vec![Some("tko_kernels".into()), Some("1".into())]),
        "{want:?}"
    );
    assert_eq!(contents(&mut Db::open(&f)), want);
    Ok(())
}

#[test]
fn sqlite_live_kernel_rows_do_not_survive() -> TestResult {
    live_kernel_rows_do_not_survive(Backend::Sqlite)
}

#[test]
fn pg_live_kernel_rows_do_not_survive() -> TestResult {
    live_kernel_rows_do_not_survive(Backend::Postgres)
}

/// While another process holds the job's `.parse.lock`, nothing is read;
/// once it is released, the watcher catches up.
#[test]
fn a_held_parse_lock_is_respected() -> TestResult {
    let f = fresh(Backend::Sqlite);
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("results");
    std::fs::create_dir_all(&root)?;
    let dir = new_job(&root);
    let lock = std::fs::File::create(dir.join(".parse.lock"))?;
    lock.lock()?;
    append(&dir, FIRST);
    let w = Watcher::start(&f, &root, &[]);
    wait_for("the schema", &w, || try_open(&f).is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert!(tests_of(&f).is_empty(), "read under another's lock");
    drop(lock);
    wait_for("dbench RUNNING once the lock is free", &w, || {
        has(&tests_of(&f), "dbench", "RUNNING")
    });
    w.stop();
    Ok(())
}
