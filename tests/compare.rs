//! `tko compare` on both stores. Its statistics are exact: each set's
//! mean and variance come from exact sums of the values and their squares
//! (`tko::query::Moments`), so they do not depend on row order, and a set
//! like −1e16, 1, 1e16 averages 1/3 (the old sorted-value sum said 0).
//! Its per-kernel cache (`tko_perf_cache`, migration 006) always answers
//! as the detail rows do: after loads, reloads, deletes, prunes, a killed
//! reload and the migration itself, and it is really read (a tampered
//! row shows), while a role that may not write it still gets the answer.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use support::{fresh, Backend, Db, Fresh, TestResult};
use tko::gen::{generate, GenOptions};
use tko::query::{ExactSum, Moments};

const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn tree(jobs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        jobs,
        tests_per_job: 2..=4,
        iterations_per_test: 1..=3,
        perf_keys_per_iteration: 2..=3,
        fraction_bad: 0.0,
        machines: 6,
        kernels: 2,
        subdir_status_copies: false,
        ..GenOptions::default()
    };
    generate(&dir.path().join("results"), &opts).expect("generate");
    dir
}

fn tko(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .env_remove("TKO_DB")
        .stdin(Stdio::null())
        .output()
        .expect("run tko")
}

fn ok(out: &Output) -> String {
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tko backfill --verify` (test keyvals are edited in place here).
fn backfill(url: &str, root: &Path) -> Output {
    let root = root.to_str().expect("utf-8 path");
    tko(&[
        "backfill", "--quiet", "--verify", "--level", "2", "--db", url, root,
    ])
}

/// `tko backfill --quiet --level 2 EXTRA.. --db URL ROOT` in the
/// background, output discarded.
fn spawn_backfill(url: &str, root: &Path, extra: &[&str]) -> std::io::Result<Child> {
    let root = root.to_str().expect("utf-8 path");
    Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["backfill", "--quiet", "--level", "2"])
        .args(extra)
        .args(["--db", url, root])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Multiplies every perf value of the first `n` jobs' first test by 3.
fn change_perf(root: &Path, n: usize) -> usize {
    let mut jobs: Vec<_> = std::fs::read_dir(root)
        .expect("root")
        .map(|e| e.expect("entry").path())
        .collect();
    jobs.sort();
    let mut changed = 0;
    for job in jobs {
        let Some(kv) = glob_keyval(&job) else {
            continue;
        };
        let text = std::fs::read_to_string(&kv).expect("keyval");
        let out: String = text
            .lines()
            .map(|l| match l.split_once("{perf}=") {
                Some((k, v)) => {
                    let v: f64 = v.parse().expect("perf value");
                    format!("{k}{{perf}}={}\n", v * 3.0 + 0.125)
                }
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&kv, out).expect("write keyval");
        changed += 1;
        if changed == n {
            break;
        }
    }
    changed
}

/// A `results/keyval` with perf lines under `job` (`<id>-<owner>/<host>`).
fn glob_keyval(job: &Path) -> Option<std::path::PathBuf> {
    for host in std::fs::read_dir(job).ok()? {
        let host = host.ok()?.path();
        let mut tests: Vec<_> = std::fs::read_dir(&host).ok()?.flatten().collect();
        tests.sort_by_key(std::fs::DirEntry::path);
        for t in tests {
            let kv = t.path().join("results").join("keyval");
            if std::fs::read_to_string(&kv).is_ok_and(|s| s.contains("{perf}=")) {
                return Some(kv);
            }
        }
    }
    None
}

type Key = (String, Option<String>, Option<String>, String);

/// Moments per (base, test, subdir, key) from the detail rows, for the
/// bases that are cached.
fn from_detail(db: &mut Db) -> BTreeMap<Key, Moments> {
    let from = " FROM tko_tests t JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx \
        JOIN tko_iteration_result r ON r.test_idx = t.test_idx \
        WHERE r.attribute IS NOT NULL AND r.value IS NOT NULL \
        AND k.base IN (SELECT base FROM tko_perf_cache_kernels) \
        ORDER BY t.test_idx, r.iteration, r.attribute";
    let keys = db.texts(&format!(
        "SELECT k.base, t.test, t.subdir, r.attribute{from}"
    ));
    let values = db.floats(&format!("SELECT r.value{from}"));
    assert_eq!(keys.len(), values.len());
    let mut out: BTreeMap<Key, Moments> = BTreeMap::new();
    for (k, v) in keys.into_iter().zip(values) {
        let v = v.expect("a value");
        if !v.is_finite() {
            continue;
        }
        let key = (
            k[0].clone().expect("base"),
            k[1].clone(),
            k[2].clone(),
            k[3].clone().expect("key"),
        );
        out.entry(key).or_default().add(v + 0.0);
    }
    out
}

/// The rows of `tko_perf_cache`.
fn cache(db: &mut Db) -> BTreeMap<Key, Moments> {
    let mut out = BTreeMap::new();
    for r in
        db.texts("SELECT base, test, subdir, attribute, '' || n, sum, sumsq FROM tko_perf_cache")
    {
        let key = (
            r[0].clone().expect("base"),
            r[1].clone(),
            r[2].clone(),
            r[3].clone().expect("key"),
        );
        let m = Moments {
            n: r[4].as_deref().and_then(|n| n.parse().ok()).expect("n"),
            sum: ExactSum::parse(r[5].as_deref().unwrap_or("?")).expect("sum"),
            sumsq: ExactSum::parse(r[6].as_deref().unwrap_or("?")).expect("sumsq"),
        };
        assert!(out.insert(key.clone(), m).is_none(), "{key:?} twice");
    }
    out
}

/// Every cache row equals the detail rows' moments of its base, exactly,
/// and no cached base misses a row.
fn assert_exact(db: &mut Db, what: &str) {
    let (want, have) = (from_detail(db), cache(db));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        have.keys().collect::<Vec<_>>(),
        "{what}: cache rows"
    );
    for (k, w) in &want {
        let mut diff = have[k].clone();
        diff.merge(w, -1);
        assert!(diff.is_empty(), "{what}: {k:?}: {:?} vs {w:?}", have[k]);
    }
}

/// The cached kernel bases.
fn cached(db: &mut Db) -> Vec<String> {
    db.texts("SELECT base FROM tko_perf_cache_kernels ORDER BY base")
        .into_iter()
        .map(|r| r[0].clone().expect("base"))
        .collect()
}

/// `tko compare` of the two kernels as JSON.
fn compare(url: &str, extra: &[&str]) -> serde_json::Value {
    let mut a = vec![
        "compare",
        "--base-kernel",
        "2.6.32",
        "--new-kernel",
        "2.6.33",
        "--format",
        "json",
        "--db",
        url,
    ];
    a.extend_from_slice(extra);
    serde_json::from_str(&ok(&tko(&a))).expect("json")
}

/// `tko compare` of the two kernels through the cache, and (`--machine
/// '*'` narrows nothing but the cache cannot answer it) from the detail
/// rows; their perf parts must be identical. Leaves both bases cached.
fn assert_compare_agrees(db: &mut Db, url: &str, what: &str) -> serde_json::Value {
    let (s, d) = (compare(url, &[]), compare(url, &["--machine", "*"]));
    assert_eq!(s["perf"], d["perf"], "{what}: cache and detail disagree");
    assert_eq!(s["tests"], d["tests"], "{what}");
    assert!(!s["perf"].as_array().expect("perf").is_empty(), "{what}");
    assert_eq!(cached(db), ["2.6.32", "2.6.33"], "{what}: bases cached");
    assert_exact(db, what);
    s
}

fn cache_stays_exact(backend: Backend) -> TestResult {
    let t = tree(40);
    let root = t.path().join("results");
    let f: Fresh = fresh(backend);
    ok(&backfill(&f.url, &root));
    let mut db = Db::open(&f);
    assert!(cached(&mut db).is_empty(), "a load builds no cache");
    let before = assert_compare_agrees(&mut db, &f.url, "load");

    // The cache is what compare reads: a tampered row shows.
    db.exec("UPDATE tko_perf_cache SET n = n + 1000");
    assert_ne!(
        compare(&f.url, &[])["perf"],
        before["perf"],
        "cache not read"
    );

    // Reload: perf values of 5 jobs change; the load forgets their bases'
    // cache in its transaction, the next compare rebuilds it.
    assert_eq!(change_perf(&root, 5), 5);
    ok(&backfill(&f.url, &root));
    let after = assert_compare_agrees(&mut db, &f.url, "reload");
    assert_ne!(before["perf"], after["perf"], "the reload changed nothing");

    // Delete one job, then prune every job of one label.
    let tag = db.texts("SELECT tag FROM tko_jobs ORDER BY tag LIMIT 1")[0][0]
        .clone()
        .expect("tag");
    ok(&tko(&["delete", &tag, "--db", &f.url]));
    assert!(cached(&mut db).len() < 2, "delete kept the cache");
    assert_compare_agrees(&mut db, &f.url, "delete");
    let label = db.texts("SELECT label FROM tko_jobs ORDER BY tag LIMIT 1")[0][0]
        .clone()
        .expect("label");
    let jobs = db.int("SELECT count(*) FROM tko_jobs");
    ok(&tko(&[
        "prune",
        "--before",
        "2100-01-01",
        "--label",
        &label,
        "--db",
        &f.url,
    ]));
    assert!(db.int("SELECT count(*) FROM tko_jobs") < jobs);
    assert!(cached(&mut db).len() < 2, "prune kept the cache");
    assert_compare_agrees(&mut db, &f.url, "prune");

    // A warehouse at schema 5 (no cache) answers from the detail rows;
    // migration 006 adds the cache, which the next compare builds.
    db.exec(support::UNDO_006[backend as usize]);
    db.exec("DROP TABLE tko_scan_listing; DELETE FROM tko_schema_version WHERE version >= 6");
    let unmigrated = compare(&f.url, &[]);
    ok(&tko(&["db", "migrate", "--db", &f.url]));
    let migrated = assert_compare_agrees(&mut db, &f.url, "migration");
    assert_eq!(unmigrated, migrated);
    Ok(())
}

#[test]
fn sqlite_cache_stays_exact_through_load_reload_delete_prune_migrate() -> TestResult {
    cache_stays_exact(Backend::Sqlite)
}

#[test]
fn pg_cache_stays_exact_through_load_reload_delete_prune_migrate() -> TestResult {
    cache_stays_exact(Backend::Postgres)
}

fn killed_reload_leaves_the_cache_exact(backend: Backend) -> TestResult {
    let t = tree(600);
    let root = t.path().join("results");
    let f = fresh(backend);
    // A first load and a compare (the cache), then a reload of every job
    // killed part way: each batch is one transaction, which forgets the
    // cache of what it wrote or nothing.
    ok(&backfill(&f.url, &root));
    let mut db = Db::open(&f);
    assert_compare_agrees(&mut db, &f.url, "load");
    let jobs = std::fs::read_dir(&root)?.count();
    assert_eq!(change_perf(&root, jobs), jobs);
    let mut child = spawn_backfill(&f.url, &root, &["--verify", "--batch", "5"])?;
    let start = std::time::Instant::now();
    while cached(&mut db).len() == 2 {
        assert!(start.elapsed().as_secs() < 120, "no batch committed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    // Whatever committed, the cache of every base still cached is exact.
    assert_exact(&mut db, "killed reload");
    assert_compare_agrees(&mut db, &f.url, "killed reload");
    Ok(())
}

#[test]
fn sqlite_killed_reload_leaves_the_cache_exact() -> TestResult {
    killed_reload_leaves_the_cache_exact(Backend::Sqlite)
}

#[test]
fn pg_killed_reload_leaves_the_cache_exact() -> TestResult {
    killed_reload_leaves_the_cache_exact(Backend::Postgres)
}

/// Compares that build the cache while a backfill commits batch after
/// batch never leave a stale cache: the build holds the lock loads need.
fn compare_during_a_backfill(backend: Backend) -> TestResult {
    let t = tree(400);
    let root = t.path().join("results");
    let f = fresh(backend);
    let mut db = Db::open(&f);
    ok(&tko(&["db", "init", "--db", &f.url]));
    let mut child = spawn_backfill(&f.url, &root, &["--batch", "3"])?;
    let mut builds = 0;
    while child.try_wait()?.is_none() {
        compare(&f.url, &[]);
        builds += 1;
    }
    assert!(child.wait()?.success());
    assert!(builds >= 2, "the backfill ended before a second compare");
    // The last compare may have run before the last batch: whatever is
    // cached now must be exact.
    assert_exact(&mut db, "after the backfill");
    assert_compare_agrees(&mut db, &f.url, "after the backfill");
    Ok(())
}

#[test]
fn sqlite_compare_during_a_backfill_caches_nothing_stale() -> TestResult {
    compare_during_a_backfill(Backend::Sqlite)
}

#[test]
fn pg_compare_during_a_backfill_caches_nothing_stale() -> TestResult {
    compare_during_a_backfill(Backend::Postgres)
}

/// A PostgreSQL role that may only read gets the same answer from the
/// detail rows and leaves no cache behind.
#[test]
fn pg_read_only_role_compares_without_caching() -> TestResult {
    let t = tree(20);
    let root = t.path().join("results");
    let f = fresh(Backend::Postgres);
    ok(&backfill(&f.url, &root));
    let mut db = Db::open(&f);
    let role = format!("tko_reader_{}", std::process::id());
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
    ));
    let reader = f.url.replace("user=tko", &format!("user={role}"));
    assert_ne!(reader, f.url);
    let read = compare(&reader, &[]);
    assert!(cached(&mut db).is_empty(), "a read-only role built a cache");
    let built = assert_compare_agrees(&mut db, &f.url, "writer");
    assert_eq!(read, built);
    // Once built, the reader reads it.
    assert_eq!(compare(&reader, &[]), built);
    // The role stays: the throwaway cluster goes with the test run.
    Ok(())
}

/// The mean is the correctly rounded exact sum over n: −1e16, 1, 1e16
/// average 1/3 (the old sum of sorted values lost the 1 and said 0), on
/// both stores, for jobs selected by tag and by label.
#[test]
fn compare_means_are_exact() -> TestResult {
    let root = tempfile::tempdir()?;
    let jobs = support_jobs(root.path());
    for backend in BOTH {
        let f = fresh(backend);
        ok(&tko(&[
            "load",
            "--quiet",
            "--level",
            "2",
            "--db",
            &f.url,
            root.path().to_str().ok_or("path")?,
        ]));
        for sel in [
            &["10-u/h1", "20-u/h1"][..],
            &["--base-label", "a", "--new-label", "b"],
        ] {
            let mut a = vec!["compare", "--format", "json", "--db", &f.url];
            a.extend_from_slice(sel);
            let j: serde_json::Value = serde_json::from_str(&ok(&tko(&a)))?;
            let p = &j["perf"][0];
            assert_eq!(
                p["base_mean"].as_f64(),
                Some(1.0 / 3.0),
                "{backend:?} {sel:?}: {p}"
            );
            assert_eq!(p["base_n"], 3);
        }
    }
    drop(jobs);
    Ok(())
}

/// Jobs 10 (label `a`) and 20 (label `b`) on h1, each one test `t` with
/// perf key `x`: −1e16, 1, 1e16 and 1, 2, 3.
fn support_jobs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for (id, label, values) in [
        (10, "a", ["-1e16", "1", "1e16"]),
        (20, "b", ["1", "2", "3"]),
    ] {
        let dir = root.join(format!("{id}-u")).join("h1");
        std::fs::create_dir_all(dir.join("t").join("results")).expect("mkdir");
        std::fs::write(
            dir.join("keyval"),
            format!(
                "hostname=h1\njob_started=1300000000\nlabel={label}\nstatus_version=1\nuser=u\n"
            ),
        )
        .expect("keyval");
        let ts = 1_300_000_002 + id;
        std::fs::write(
            dir.join("status.log"),
            format!(
                "START\t----\t----\ttimestamp=1300000001\tlocaltime=Mar 13 07:06:41\t\n\
                 \tSTART\tt\tt\ttimestamp={ts}\tlocaltime=Mar 13 07:06:42\t\n\
                 \t\tGOOD\tt\tt\ttimestamp={ts}\tlocaltime=Mar 13 07:06:42\tdone\n\
                 \tEND GOOD\tt\tt\ttimestamp={ts}\tlocaltime=Mar 13 07:06:42\t\n\
                 END GOOD\t----\t----\ttimestamp=1300000100\tlocaltime=Mar 13 07:08:20\t\n"
            ),
        )
        .expect("status.log");
        let kv: Vec<String> = values.iter().map(|v| format!("x{{perf}}={v}\n")).collect();
        std::fs::write(dir.join("t").join("results").join("keyval"), kv.join("\n"))
            .expect("perf keyval");
        out.push(dir);
    }
    out
}
