//! `tko backfill` end to end, with the real binary on generated results
//! trees: resume after SIGKILL (SQLite and PostgreSQL) ends in exactly the
//! state of an uninterrupted run; a job whose `.parse.lock` is held is not
//! loaded and is reported, then loaded once free; a second run skips every
//! job by metadata, and each kind of change the signature covers makes the
//! job read again (both stores); a dry run writes nothing.

mod support;

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{contents, fresh, Backend, Db, TestResult};
use tko::gen::{generate, GenOptions};

fn tree(jobs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        jobs,
        tests_per_job: 2..=4,
        fraction_bad: 0.0,
        ..GenOptions::default()
    };
    generate(&dir.path().join("results"), &opts).expect("generate");
    dir
}

fn tko(url: &str, root: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tko"));
    c.args(["backfill", "--quiet", "--level", "2", "--db", url])
        .args(extra)
        .arg(root)
        .stdin(Stdio::null());
    c
}

fn run(url: &str, root: &Path, extra: &[&str]) -> Output {
    tko(url, root, extra).output().expect("run tko")
}

fn ledger_rows(db: &mut Db) -> i64 {
    db.int("SELECT count(*) FROM tko_ingest_ledger")
}

fn resume_after_sigkill(backend: Backend) -> TestResult {
    let t = tree(400);
    let root = t.path().join("results");

    let reference = fresh(backend);
    let out = run(&reference.url, &root, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want_db = Db::open(&reference);
    let want = contents(&mut want_db);
    assert_eq!(ledger_rows(&mut want_db), 400);

    let f = fresh(backend);
    // Create the schema first so the ledger can be polled.
    let init = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["db", "init", "--db", &f.url])
        .output()?;
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut db = Db::open(&f);
    let mut child = tko(&f.url, &root, &["--batch", "5"]).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = ledger_rows(&mut db);
        if n >= 40 {
            break;
        }
        assert!(
            child.try_wait()?.is_none(),
            "backfill finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let after_kill = ledger_rows(&mut db);
    assert!(
        after_kill < 400,
        "the kill came too late ({after_kill} jobs loaded)"
    );

    let out = run(&f.url, &root, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(contents(&mut db), want);
    assert_eq!(ledger_rows(&mut db), 400);
    Ok(())
}

#[test]
fn sqlite_backfill_resumes_after_sigkill() -> TestResult {
    resume_after_sigkill(Backend::Sqlite)
}

#[test]
fn pg_backfill_resumes_after_sigkill() -> TestResult {
    resume_after_sigkill(Backend::Postgres)
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

#[test]
fn missing_root_is_fatal() {
    let f = fresh(Backend::Sqlite);
    let out = run(&f.url, Path::new("/nonexistent/results/root"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/results/root"));
}

#[test]
fn locked_job_is_reported_then_loaded_and_reruns_skip_by_metadata() -> TestResult {
    let t = tree(30);
    let root = t.path().join("results");
    let f = fresh(Backend::Sqlite);
    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let victim = &dirs[3];

    let held = lock(&victim.path);
    let out = tko(&f.url, &root, &["--lock-timeout", "0.3"])
        .arg("--batch")
        .arg("7")
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    let mut db = Db::open(&f);
    let tag = victim.tag.replace('\'', "''");
    assert_eq!(
        db.int(&format!(
            "SELECT count(*) FROM tko_jobs WHERE tag = '{tag}'"
        )),
        0
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 29);
    drop(held);

    // Dry run: says one job would be loaded, writes nothing.
    let before = contents(&mut db);
    let out = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["backfill", "--dry-run", "--level", "2", "--db", &f.url])
        .arg(&root)
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 new would be loaded"), "{text}");
    assert!(text.contains("29 by metadata"), "{text}");
    assert_eq!(contents(&mut db), before);

    let out = run(&f.url, &root, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 30);

    // Unchanged tree: every job skipped without being read.
    let out = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["backfill", "--level", "2", "--db", &f.url])
        .arg(&root)
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("30 unchanged (30 by metadata, 0 by content)"),
        "{text}"
    );

    // One job changes: only it is reloaded.
    let changed = tko::gen::modify(&root, 1, 7)?;
    assert_eq!(changed.len(), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["backfill", "--level", "2", "--db", &f.url])
        .arg(&root)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 reloaded, 29 unchanged"), "{text}");
    Ok(())
}

/// Backfill options for many rounds (7 top-level directories) of many
/// chunks (`chunk_jobs` jobs).
fn small_chunks(chunk_jobs: usize) -> tko::backfill::Options {
    tko::backfill::Options {
        level: Some(2),
        chunk_jobs,
        units_per_round: 7,
        ..tko::backfill::Options::default()
    }
}

/// Records nothing: the library's backfill without output.
struct Silent;
impl tko::backfill::Observer for Silent {}

#[test]
fn many_small_rounds_and_chunks_give_the_same_warehouse() -> TestResult {
    let t = tree(60);
    let root = t.path().join("results");
    let reference = fresh(Backend::Sqlite);
    let out = run(&reference.url, &root, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let f = fresh(Backend::Sqlite);
    let mut store = tko::store::open(&f.url)?;
    store.init()?;
    store.set_batch_jobs(3);
    let mut reader = tko::store::open(&f.url)?;
    let opts = small_chunks(4);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let s = tko::backfill::run(
        store.as_mut(),
        reader.as_mut(),
        std::slice::from_ref(&root),
        &opts,
        &stop,
        &mut Silent,
    )?;
    assert_eq!(
        (s.units, s.units_done, s.found, s.done, s.inserted),
        (60, 60, 60, 60, 60)
    );
    assert_eq!(s.verdict(), tko::backfill::Verdict::Clean, "{s:?}");
    assert_eq!(
        contents(&mut Db::open(&f)),
        contents(&mut Db::open(&reference))
    );

    // Again: every job skipped by metadata, round after round.
    let s = tko::backfill::run(
        store.as_mut(),
        reader.as_mut(),
        &[root],
        &opts,
        &stop,
        &mut Silent,
    )?;
    assert_eq!((s.unchanged_by_metadata, s.done, s.loaded()), (60, 60, 0));
    Ok(())
}

/// Two writers on PostgreSQL (`tko backfill --writers 2`, the default)
/// load batches at the same time, on two connections: the warehouse ends
/// exactly as one writer leaves it (machine rows included: every machine
/// carries jobs of many batches, and each batch recomputes them), and the
/// two never deadlock (they lock jobs, then machines, and the machines
/// with `FOR NO KEY UPDATE`, which the other's foreign-key checks do not
/// wait for; with `FOR UPDATE` every pair of batches sharing a machine
/// deadlocked).
#[test]
fn pg_two_writers_load_what_one_writer_loads_without_deadlocks() -> TestResult {
    // Three machines, whose rows depend on which job is the newest.
    let t = tempfile::tempdir()?;
    let root = t.path().join("results");
    let gen = GenOptions {
        jobs: 60,
        tests_per_job: 2..=4,
        fraction_bad: 0.0,
        machines: 3,
        relabel_machines: true,
        ..GenOptions::default()
    };
    generate(&root, &gen)?;
    let reference = fresh(Backend::Postgres);
    let out = run(&reference.url, &root, &["--writers", "1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let f = fresh(Backend::Postgres);
    let mut db = Db::open(&f);
    let deadlocks = |db: &mut Db| {
        db.int("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    };
    let before = deadlocks(&mut db);
    let opts = small_chunks(3);
    let stop = std::sync::atomic::AtomicBool::new(false);
    {
        let mut stores = Vec::new();
        for _ in 0..2 {
            let mut s = tko::store::open(&f.url)?;
            s.init()?;
            s.set_batch_jobs(3);
            stores.push(s);
        }
        let mut reader = tko::store::open(&f.url)?;
        let mut writers: Vec<&mut dyn tko::store::Store> =
            stores.iter_mut().map(|s| s.as_mut()).collect();
        let s = tko::backfill::run_with(
            &mut writers,
            reader.as_mut(),
            std::slice::from_ref(&root),
            &opts,
            &stop,
            &mut Silent,
        )?;
        assert_eq!((s.found, s.done, s.inserted), (60, 60, 60), "{s:?}");
        assert_eq!(s.verdict(), tko::backfill::Verdict::Clean, "{s:?}");
    }
    assert_eq!(contents(&mut db), contents(&mut Db::open(&reference)));
    // The writers' connections are closed, so their statistics are in.
    std::thread::sleep(Duration::from_millis(1500));
    db.exec("SELECT pg_stat_clear_snapshot()");
    assert_eq!(deadlocks(&mut db), before, "the writers deadlocked");
    Ok(())
}

/// A server that refuses the second writer's connection (the role's
/// connection limit is reached) is no failure: the backfill says so once
/// and loads everything with the writers it has.
#[test]
fn pg_backfill_with_a_writer_refused_loads_with_fewer() -> TestResult {
    let t = tree(12);
    let root = t.path().join("results");
    let f = fresh(Backend::Postgres);
    let out = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["db", "init", "--db", &f.url])
        .output()?;
    assert!(out.status.success(), "{out:?}");
    let mut db = Db::open(&f);
    // Two connections: the first writer and the reader.
    let role = format!("tko_limited_{}", std::process::id());
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN CONNECTION LIMIT 2; \
         GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
    ));
    let limited = f.url.replace("user=tko", &format!("user={role}"));
    assert_ne!(limited, f.url);
    let out = run(&limited, &root, &["--writers", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("loading with 1 writer(s), not 2"),
        "no word of the refused writer: {stderr}"
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 12);
    Ok(())
}

/// A backfill that at least doubles the PostgreSQL warehouse brings the
/// planner's statistics up to date itself (`ANALYZE`): `tko serve` and the
/// read commands right after a first backfill otherwise plan against
/// empty tables until autovacuum gets to them (job pages took 1.5 s
/// instead of 7 ms in `bench_serve`). A small addition leaves them to
/// autovacuum.
#[test]
fn pg_backfill_that_doubles_the_warehouse_analyzes_it() -> TestResult {
    let f = fresh(Backend::Postgres);
    let t = tree(12);
    let results = t.path().join("results");
    let reltuples =
        |db: &mut Db| db.int("SELECT reltuples::int8 FROM pg_class WHERE relname = 'tko_tests'");
    // Ten jobs first (the other two moved aside), then the last two.
    let aside = t.path().join("aside");
    std::fs::create_dir(&aside)?;
    let mut tops: Vec<_> = std::fs::read_dir(&results)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    tops.sort();
    for p in &tops[10..] {
        std::fs::rename(p, aside.join(p.file_name().ok_or("name")?))?;
    }
    let out = run(&f.url, &results, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut db = Db::open(&f);
    let tests = db.int("SELECT count(*) FROM tko_tests");
    assert_eq!(reltuples(&mut db), tests, "statistics of the first load");
    for p in &tops[10..] {
        std::fs::rename(aside.join(p.file_name().ok_or("name")?), p)?;
    }
    let out = run(&f.url, &results, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(db.int("SELECT count(*) FROM tko_tests") > tests);
    assert_eq!(
        reltuples(&mut db),
        tests,
        "a small addition is not analyzed"
    );
    Ok(())
}

/// Collects the tags of the jobs a backfill read.
#[derive(Default)]
struct Read(Vec<String>);
impl tko::backfill::Observer for Read {
    fn job(&mut self, job: &tko::model::Job, _: tko::backfill::JobOutcome<'_>) {
        self.0.push(job.tag.clone());
    }
}

/// Every kind of change the metadata signature covers makes the next
/// backfill read the job (it is never skipped by metadata): `status.log`
/// grown, `keyval` rewritten in place with the same size (mtime only),
/// `.autoserv_execute` touched or removed, `status.log` replaced by an
/// identical copy with the old mtime (inode only). Jobs left alone are
/// skipped without being read. A signature or skip check that left out
/// size, mtime, inode or an absent file would skip one of them.
fn each_signed_change_makes_the_job_read(backend: Backend) -> TestResult {
    let t = tree(8);
    let root = t.path().join("results");
    let f = fresh(backend);
    let mut store = tko::store::open(&f.url)?;
    store.init()?;
    let mut reader = tko::store::open(&f.url)?;
    let opts = tko::backfill::Options {
        level: Some(2),
        ..tko::backfill::Options::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let backfill = |store: &mut dyn tko::store::Store,
                    reader: &mut dyn tko::store::Store|
     -> Result<(tko::backfill::Summary, Vec<String>), tko::store::Error> {
        let mut read = Read::default();
        let s = tko::backfill::run(
            store,
            reader,
            std::slice::from_ref(&root),
            &opts,
            &stop,
            &mut read,
        )?;
        read.0.sort();
        Ok((s, read.0))
    };
    let (s, _) = backfill(store.as_mut(), reader.as_mut())?;
    assert_eq!((s.found, s.loaded()), (8, 8), "{s:?}");
    let (s, read) = backfill(store.as_mut(), reader.as_mut())?;
    assert_eq!((s.unchanged_by_metadata, read.len()), (8, 0), "{read:?}");

    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let later = |p: &Path| -> std::io::Result<()> {
        let m = std::fs::metadata(p)?.modified()? + Duration::from_secs(7);
        OpenOptions::new().write(true).open(p)?.set_modified(m)
    };
    // 0: status.log grows.
    let log = dirs[0].path.join("status.log");
    let mut text = std::fs::read(&log)?;
    text.extend_from_slice(b"INFO\t----\t----\tappended\n");
    std::fs::write(&log, &text)?;
    // 1: keyval rewritten in place, same size: only its mtime moves.
    let kv = dirs[1].path.join("keyval");
    let same = std::fs::read(&kv)?;
    std::fs::write(&kv, &same)?;
    later(&kv)?;
    // 2: .autoserv_execute touched.
    later(&dirs[2].path.join(".autoserv_execute"))?;
    // 3: .autoserv_execute removed.
    std::fs::remove_file(dirs[3].path.join(".autoserv_execute"))?;
    // 4: status.log replaced by an identical copy keeping its mtime: only
    // the inode differs.
    let log = dirs[4].path.join("status.log");
    let mtime = std::fs::metadata(&log)?.modified()?;
    let copy = dirs[4].path.join("status.log.new");
    std::fs::copy(&log, &copy)?;
    OpenOptions::new()
        .write(true)
        .open(&copy)?
        .set_modified(mtime)?;
    std::fs::rename(&copy, &log)?;
    assert_eq!(std::fs::metadata(&log)?.modified()?, mtime);

    let (s, read) = backfill(store.as_mut(), reader.as_mut())?;
    let mut want: Vec<String> = dirs[..5].iter().map(|d| d.tag.clone()).collect();
    want.sort();
    assert_eq!(read, want);
    assert_eq!(s.unchanged_by_metadata, 3, "{s:?}");
    assert_eq!(s.verdict(), tko::backfill::Verdict::Clean, "{s:?}");
    // Re-signed: the run after skips everything again.
    let (s, read) = backfill(store.as_mut(), reader.as_mut())?;
    assert_eq!((s.unchanged_by_metadata, read.len()), (8, 0), "{read:?}");
    Ok(())
}

#[test]
fn sqlite_each_signed_change_makes_the_job_read() -> TestResult {
    each_signed_change_makes_the_job_read(Backend::Sqlite)
}

#[test]
fn pg_each_signed_change_makes_the_job_read() -> TestResult {
    each_signed_change_makes_the_job_read(Backend::Postgres)
}

/// Top-level directories listed by a backfill are not listed again while
/// their stamps hold (`tko_scan_listing`), and nothing that changed is
/// missed for it: a job directory added under a listed top-level
/// directory (its stamp changes), a sub-directory that was no job and
/// becomes one (the top-level directory's stamp does not change: its
/// sub-directories are probed every time), a job directory removed (no
/// walk error from a stale listing), a job's `status.log` grown. A
/// top-level directory just written is not settled: not recorded; nor is
/// anything in a dry run.
fn listed_directories_miss_no_change(backend: Backend) -> TestResult {
    let t = tree(6);
    let root = t.path().join("results");
    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let tops: Vec<&Path> = dirs.iter().filter_map(|d| d.path.parent()).collect();
    assert_eq!(dirs.len(), 6);
    let pending = tops[0].join("pending");
    std::fs::create_dir(&pending)?;
    let f = fresh(backend);
    let mut db = Db::open(&f);
    let listings = |db: &mut Db| db.int("SELECT count(*) FROM tko_scan_listing");
    let summary = |out: &Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Just generated: nothing settled, nothing recorded.
    summary(&run(&f.url, &root, &["--format", "json"]));
    assert_eq!(listings(&mut db), 0);
    std::thread::sleep(tko::discover::SETTLED + Duration::from_millis(1100));
    // A dry run records nothing either.
    summary(&run(&f.url, &root, &["--dry-run"]));
    assert_eq!(listings(&mut db), 0);
    let s = summary(&run(&f.url, &root, &["--format", "json"]));
    assert!(s.contains("\"unchanged_by_metadata\":6"), "{s}");
    assert_eq!(listings(&mut db), 6);

    // Added under a listed top-level directory.
    let added = tops[1].join("host-added");
    std::fs::create_dir(&added)?;
    for file in ["status.log", "keyval"] {
        std::fs::copy(dirs[1].path.join(file), added.join(file))?;
    }
    // A sub-directory that becomes a job directory.
    for file in ["status.log", "keyval"] {
        std::fs::copy(dirs[0].path.join(file), pending.join(file))?;
    }
    // Removed.
    std::fs::remove_dir_all(&dirs[2].path)?;
    // Grown.
    let log = dirs[3].path.join("status.log");
    let mut text = std::fs::read(&log)?;
    text.extend_from_slice(b"INFO\t----\t----\tappended\n");
    std::fs::write(&log, &text)?;

    let s = summary(&run(&f.url, &root, &["--format", "json"]));
    for want in [
        "\"found\":7",
        "\"inserted\":2",
        "\"unchanged_by_metadata\":4",
    ] {
        assert!(s.contains(want), "{want} in {s}");
    }
    let loaded = |db: &mut Db, tag: &str| {
        db.int(&format!(
            "SELECT count(*) FROM tko_jobs WHERE tag = '{}'",
            tag.replace('\'', "''")
        ))
    };
    for job in [&added, &pending] {
        let tag = tko::discover::job_tag(job, 2);
        assert_eq!(loaded(&mut db, &tag), 1, "{tag}");
    }
    // The changed directories are listed again, and recorded when settled.
    std::thread::sleep(tko::discover::SETTLED + Duration::from_millis(1100));
    let s = summary(&run(&f.url, &root, &["--format", "json"]));
    assert!(s.contains("\"unchanged_by_metadata\":7"), "{s}");
    Ok(())
}

#[test]
fn sqlite_listed_directories_miss_no_change() -> TestResult {
    listed_directories_miss_no_change(Backend::Sqlite)
}

#[test]
fn pg_listed_directories_miss_no_change() -> TestResult {
    listed_directories_miss_no_change(Backend::Postgres)
}

/// The recorded listings of the top-level directories a run found, as
/// paths, in order.
fn recorded_listings(db: &mut Db) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let sql = match db {
        Db::Pg(_) => "SELECT encode(path, 'hex') FROM tko_scan_listing ORDER BY path",
        Db::Lite(_) => "SELECT lower(hex(path)) FROM tko_scan_listing ORDER BY path",
    };
    db.texts(sql)
        .into_iter()
        .map(|r| {
            let hex = r[0].clone().expect("a path");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            PathBuf::from(std::ffi::OsString::from_vec(bytes))
        })
        .collect()
}

/// A top-level directory that is gone leaves no recorded listing behind
/// (they were kept for ever, for every directory a lab ever removed): the
/// first, one in the middle and the last, by byte order, removed between
/// runs; the next run forgets exactly their listings and keeps the others.
fn gone_directories_leave_no_listing(backend: Backend) -> TestResult {
    let t = tree(8);
    let root = t.path().join("results");
    let (dirs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let mut tops: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.path.parent().map(Path::to_path_buf))
        .collect();
    tops.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    tops.dedup();
    assert!(tops.len() >= 5, "{tops:?}");
    std::thread::sleep(tko::discover::SETTLED + Duration::from_millis(1100));
    let f = fresh(backend);
    let mut db = Db::open(&f);
    let out = run(&f.url, &root, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(recorded_listings(&mut db), tops);
    let gone = [0, tops.len() / 2, tops.len() - 1];
    for &i in &gone {
        std::fs::remove_dir_all(&tops[i])?;
    }
    let out = run(&f.url, &root, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept: Vec<PathBuf> = (0..tops.len())
        .filter(|i| !gone.contains(i))
        .map(|i| tops[i].clone())
        .collect();
    assert_eq!(recorded_listings(&mut db), kept);
    Ok(())
}

#[test]
fn sqlite_gone_directories_leave_no_listing() -> TestResult {
    gone_directories_leave_no_listing(Backend::Sqlite)
}

#[test]
fn pg_gone_directories_leave_no_listing() -> TestResult {
    gone_directories_leave_no_listing(Backend::Postgres)
}
