//! Store integration tests on real databases: a temp SQLite file and a
//! throwaway PostgreSQL (see `support::pg`). Every behaviour runs on both
//! backends unless it is PostgreSQL-specific (killed connections,
//! concurrent loaders).

mod support;

use std::sync::{Arc, Barrier};
use support::{fresh, item, job, kernel, test, with_iterations, Backend, Db, TestResult};
use tko::model::{Diagnostic, PerfValue, Severity, Status, Value};
use tko::store::{self, Action, Error, LoadItem};

fn sample_jobs() -> Vec<tko::model::Job> {
    let k1 = kernel("2.6.30", &[]);
    let k2 = kernel(
        "2.6.31",
        &["http://x/my-fix.patch", "http://x/patch-2.6.31-git3.bz2"],
    );
    let mut dbench = with_iterations(test("dbench", Some("dbench"), Status::Good, &k2), 2);
    dbench.iterations[0]
        .perf
        .insert("raw", PerfValue::Raw("not a number".into()));
    dbench.iterations[0]
        .perf
        .insert("big", PerfValue::Float(f64::INFINITY));
    vec![
        job(
            "123-alice/host1",
            "host1",
            vec![
                test("SERVER_JOB", Some("----"), Status::Good, &k1),
                test("CLIENT_JOB.0", None, Status::Good, &k1),
                test("boot.0", None, Status::Bug, &k1),
                dbench,
                test("kernbench", Some("kernbench"), Status::Fail, &k2),
            ],
        ),
        job(
            "124-bob/host2",
            "host2",
            vec![with_iterations(
                test("sleeptest", Some("sleeptest"), Status::Warn, &k1),
                1,
            )],
        ),
    ]
}

fn open_init(url: &str) -> Result<Box<dyn store::Store>, Error> {
    let mut s = store::open(url)?;
    s.init()?;
    Ok(s)
}

fn load_ok(s: &mut dyn store::Store, items: &[LoadItem<'_>]) -> Vec<store::LoadOutcome> {
    s.load_jobs(items)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("load failed: {}", error_chain(&e))))
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s = format!("{s}: {c}");
        cur = c.source();
    }
    s
}

// ---------------------------------------------------------------- views

fn load_reads_back_through_views(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let jobs = sample_jobs();
    let items: Vec<_> = jobs.iter().map(|j| item(j, "fp1")).collect();
    let out = load_ok(s.as_mut(), &items);
    assert!(out.iter().all(|o| o.action == Action::Inserted));
    assert_eq!(out[0].rows.tests, 5);

    let mut db = Db::open(&f);
    let rows = db.texts(
        "SELECT job_tag, test_name, subdir, status, kernel, CAST(kernel_idx AS TEXT), hostname, \
            platform, machine_owner, job_name, job_owner, reason, CAST(test_started_time AS TEXT), \
            CAST(job_finished_time AS TEXT), CAST(afe_job_id AS TEXT) \
         FROM tko_test_view_2 ORDER BY test_idx",
    );
    let mut expected = Vec::new();
    for j in &jobs {
        for t in &j.tests {
            expected.push((
                j.tag.clone(),
                t.testname.clone(),
                t.subdir.clone(),
                t.status,
            ));
        }
    }
    assert_eq!(rows.len(), expected.len());
    for (r, (tag, name, subdir, status)) in rows.iter().zip(&expected) {
        let s = |i: usize| r[i].clone();
        assert_eq!(s(0).as_deref(), Some(tag.as_str()));
        assert_eq!(s(1).as_deref(), Some(name.as_str()));
        assert_eq!(&s(2), subdir, "None subdir is NULL");
        assert_eq!(s(3).as_deref(), Some(status.word()));
        let job = jobs.iter().find(|j| &j.tag == tag).expect("job");
        let t = job
            .tests
            .iter()
            .find(|t| &t.testname == name)
            .expect("test");
        let kidx: i64 = s(5).expect("kernel_idx").parse()?;
        assert_eq!(s(4), Some(t.kernel.printable(kidx)));
        assert_eq!(s(6).as_deref(), Some(job.machine.as_str()));
        assert_eq!(s(7).as_deref(), Some("x86_64"));
        assert_eq!(s(8).as_deref(), Some("lab"));
        assert_eq!(s(9), job.label);
        assert_eq!(s(10).as_deref(), Some("alice"));
        assert_eq!(s(11), t.reason);
        assert_eq!(s(12).as_deref(), Some("2011-03-13 07:06:40"));
        assert_eq!(s(13).as_deref(), Some("2011-03-13 07:08:20"));
        assert_eq!(s(14), job.afe_job_id.map(|i| i.to_string()));
    }
    // The significant patch makes the printable unique; the -git one alone
    // would not.
    let printable = db.texts("SELECT printable FROM tko_kernels WHERE base = '2.6.31'");
    assert!(printable[0][0]
        .as_deref()
        .is_some_and(|p| p.starts_with("2.6.31 p")));
    assert_eq!(
        db.texts("SELECT name, url FROM tko_patches ORDER BY name"),
        vec![
            vec![
                Some("my-fix.patch".into()),
                Some("http://x/my-fix.patch".into())
            ],
            vec![
                Some("patch-2.6.31-git3.bz2".into()),
                Some("http://x/patch-2.6.31-git3.bz2".into())
            ],
        ]
    );

    let perf = db.texts(
        "SELECT test_name, CAST(iteration AS TEXT), iteration_key FROM tko_perf_view_2 \
         WHERE job_tag = '123-alice/host1' AND iteration IS NOT NULL \
         ORDER BY iteration, iteration_key",
    );
    let keys: Vec<_> = perf.iter().map(|r| r[2].clone().expect("key")).collect();
    assert_eq!(
        keys,
        [
            "big",
            "latency",
            "raw",
            "throughput",
            "latency",
            "throughput"
        ]
    );
    let values = db.floats(
        "SELECT iteration_value FROM tko_perf_view_2 WHERE job_tag = '123-alice/host1' \
         AND iteration IS NOT NULL ORDER BY iteration, iteration_key",
    );
    assert_eq!(
        values,
        [
            Some(f64::INFINITY),
            Some(2.0),
            None,
            Some(1.5),
            Some(2.0),
            Some(3.0)
        ]
    );
    // Tests without iterations still appear in the outer-joined perf view.
    assert_eq!(
        db.int("SELECT count(*) FROM tko_perf_view_2 WHERE iteration IS NULL"),
        4
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_test_view"), 6);
    assert_eq!(db.int("SELECT count(*) FROM tko_perf_view"), 8);
    assert_eq!(
        db.int("SELECT count(*) FROM tko_iteration_attributes WHERE attribute = 'mode'"),
        3
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_job_keyvals"), 4);

    // Both backends hold the same contents.
    Ok(())
}

#[test]
fn sqlite_load_reads_back_through_views() -> TestResult {
    load_reads_back_through_views(Backend::Sqlite)
}

#[test]
fn pg_load_reads_back_through_views() -> TestResult {
    load_reads_back_through_views(Backend::Postgres)
}

#[test]
fn sqlite_and_pg_hold_the_same_rows() -> TestResult {
    let jobs = sample_jobs();
    let items: Vec<_> = jobs.iter().map(|j| item(j, "fp")).collect();
    let mut contents = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let f = fresh(backend);
        let mut s = open_init(&f.url)?;
        load_ok(s.as_mut(), &items);
        contents.push(support::contents(&mut Db::open(&f)));
    }
    assert_eq!(contents[0], contents[1]);
    Ok(())
}

// ---------------------------------------------------------------- schema

fn init_migrate_status(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = store::open(&f.url)?;
    assert!(matches!(s.migrate(), Err(Error::NotInitialized)));
    assert_eq!(s.status()?.schema_version, None);
    assert_eq!(s.init()?, vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(s.init()?, Vec::<u32>::new(), "init is idempotent");
    assert_eq!(s.migrate()?, Vec::<u32>::new());
    let report = s.status()?;
    assert_eq!(report.schema_version, Some(7));
    let status_rows = report
        .tables
        .iter()
        .find(|(t, _)| *t == "tko_status")
        .expect("tko_status listed");
    assert_eq!(status_rows.1, 10, "9 TKO statuses plus BUG");
    assert!(report.to_string().contains("tko_iteration_result"));
    let mut db = Db::open(&f);
    assert_eq!(
        db.texts(
            "SELECT word FROM tko_status WHERE status_idx IN (1, 5, 9, 10) ORDER BY status_idx"
        ),
        vec![
            vec![Some("ABORT".into())],
            vec![Some("GOOD".into())],
            vec![Some("WARN".into())],
            vec![Some("BUG".into())]
        ]
    );
    assert_eq!(
        db.texts("SELECT name FROM tko_test_labels WHERE id = 1"),
        vec![vec![Some("invalidated".into())]]
    );
    // A warehouse at version 1 is upgraded in place, its rows kept.
    db.exec(support::UNDO_006[backend as usize]);
    db.exec(
        "DROP TABLE tko_scan_listing; DROP TABLE tko_scan_state; DROP TABLE tko_job_machines; \
         ALTER TABLE tko_ingest_ledger DROP COLUMN read_at; DROP TABLE tko_test_information; \
         DELETE FROM tko_schema_version WHERE version IN (2, 3, 4, 5, 6, 7)",
    );
    assert_eq!(s.status()?.schema_version, Some(1));
    assert_eq!(s.migrate()?, vec![2, 3, 4, 5, 6, 7]);
    assert_eq!(s.status()?.schema_version, Some(7));
    assert_eq!(db.int("SELECT count(*) FROM tko_scan_state"), 0);
    assert_eq!(db.int("SELECT count(*) FROM tko_status"), 10);
    Ok(())
}

#[test]
fn sqlite_init_migrate_status() -> TestResult {
    init_migrate_status(Backend::Sqlite)
}

#[test]
fn pg_init_migrate_status() -> TestResult {
    init_migrate_status(Backend::Postgres)
}

/// Information messages land in `tko_test_information` and are replaced
/// with the job's tests on a reload.
fn information_is_stored_and_replaced(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let k = kernel("2.6.30", &[]);
    let mut t = test("dbench", Some("dbench"), Status::Running, &k);
    t.information = Some(tko::model::Information {
        message: "Percent Complete: 40%".into(),
        time: Some(1_300_000_030),
    });
    let mut j = job(
        "1-a/h",
        "h",
        vec![test("SERVER_JOB", Some("----"), Status::Good, &k), t],
    );
    load_ok(s.as_mut(), &[item(&j, "fp1")]);
    let mut db = Db::open(&f);
    let q = "SELECT t.test, i.message, CAST(i.info_time AS TEXT) FROM tko_test_information i \
             JOIN tko_tests t ON t.test_idx = i.test_idx AND t.job_idx = i.job_idx";
    let rows = db.texts(q);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_deref(), Some("dbench"));
    assert_eq!(rows[0][1].as_deref(), Some("Percent Complete: 40%"));
    assert!(rows[0][2]
        .as_deref()
        .is_some_and(|t| t.starts_with("2011-03-13")));
    j.tests[1].information = None;
    load_ok(s.as_mut(), &[item(&j, "fp2")]);
    assert_eq!(db.int("SELECT count(*) FROM tko_test_information"), 0);
    Ok(())
}

#[test]
fn sqlite_information_is_stored_and_replaced() -> TestResult {
    information_is_stored_and_replaced(Backend::Sqlite)
}

#[test]
fn pg_information_is_stored_and_replaced() -> TestResult {
    information_is_stored_and_replaced(Backend::Postgres)
}

#[test]
fn unknown_url_is_an_error() {
    assert!(matches!(store::open("mysql://x"), Err(Error::Url { .. })));
}

// ---------------------------------------------------------------- reparse

fn reparse_keeps_ids_and_user_rows(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let k = kernel("2.6.30", &[]);
    let v1 = job(
        "7-carol/h",
        "h",
        vec![
            with_iterations(test("a", Some("a"), Status::Good, &k), 2),
            test("boot.0", None, Status::Good, &k),
            test("boot.0", None, Status::Good, &k),
            with_iterations(test("c", Some("c"), Status::Good, &k), 1),
        ],
    );
    let o1 = load_ok(s.as_mut(), &[item(&v1, "v1")]).remove(0);
    let mut db = Db::open(&f);
    let ids = |db: &mut Db| -> Vec<(String, Option<String>, i64)> {
        db.texts("SELECT test, subdir, CAST(test_idx AS TEXT) FROM tko_tests ORDER BY test_idx")
            .into_iter()
            .map(|r| {
                (
                    r[0].clone().expect("test"),
                    r[1].clone(),
                    r[2].clone().expect("id").parse().expect("int"),
                )
            })
            .collect()
    };
    let before = ids(&mut db);
    let (a, boot1, boot2, c) = (before[0].2, before[1].2, before[2].2, before[3].2);
    let job_idx = o1.job_idx;
    // What a TKO user does: attributes, labels, invalidation.
    let t = if backend == Backend::Postgres {
        "true"
    } else {
        "1"
    };
    db.exec(&format!(
        "INSERT INTO tko_test_attributes (job_idx, test_idx, attribute, value, user_created) \
         VALUES ({job_idx}, {a}, 'note', 'keep me', {t}), ({job_idx}, {c}, 'note', 'gone', {t}); \
         INSERT INTO tko_test_labels_tests (job_idx, testlabel_id, test_id) \
         VALUES ({job_idx}, 1, {a}), ({job_idx}, 1, {c}); \
         UPDATE tko_tests SET invalid = {t} WHERE test_idx = {a};"
    ));

    let mut v2 = job(
        "7-carol/h",
        "h",
        vec![
            with_iterations(test("a", Some("a"), Status::Fail, &k), 1),
            test("boot.0", None, Status::Good, &k),
            test("boot.0", None, Status::Good, &k),
            test("boot.0", None, Status::Good, &k),
            test("d", Some("d"), Status::Good, &k),
        ],
    );
    v2.keyval.clear();
    v2.keyval.insert("new", Value::Float(0.5));
    let o2 = load_ok(s.as_mut(), &[item(&v2, "v2")]).remove(0);
    assert_eq!(o2.action, Action::Replaced);
    assert_eq!(o2.job_idx, job_idx, "job_idx stays");
    assert_eq!((o2.tests_kept, o2.tests_deleted), (3, 1));

    let after = ids(&mut db);
    let find =
        |name: &str| -> Vec<i64> { after.iter().filter(|r| r.0 == name).map(|r| r.2).collect() };
    assert_eq!(find("a"), vec![a]);
    let boots = find("boot.0");
    assert_eq!(boots.len(), 3);
    assert_eq!(
        &boots[..2],
        &[boot1, boot2],
        "NULL subdirs matched in order"
    );
    assert!(boots[2] > c, "a new test gets a new id");
    assert!(find("c").is_empty());
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 1);
    assert_eq!(
        db.texts(&format!(
            "SELECT CAST(test_idx AS TEXT), attribute, value FROM tko_test_attributes \
             WHERE user_created = {t}"
        )),
        vec![vec![
            Some(a.to_string()),
            Some("note".into()),
            Some("keep me".into())
        ]]
    );
    assert_eq!(
        db.int(&format!(
            "SELECT count(*) FROM tko_test_labels_tests WHERE test_id = {a}"
        )),
        1
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_test_labels_tests"), 1);
    assert_eq!(
        db.int(&format!(
            "SELECT count(*) FROM tko_tests WHERE test_idx = {a} AND invalid = {t}"
        )),
        1,
        "invalid flag survives"
    );
    assert_eq!(
        db.texts("SELECT status FROM tko_test_view_2 WHERE test_name = 'a'"),
        vec![vec![Some("FAIL".into())]]
    );
    // Parser rows were replaced, not appended.
    assert_eq!(
        db.int(&format!(
            "SELECT count(*) FROM tko_test_attributes WHERE test_idx = {a} AND user_created = {f}",
            f = if backend == Backend::Postgres {
                "false"
            } else {
                "0"
            }
        )),
        2
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_iteration_result"), 2);
    assert_eq!(
        db.texts("SELECT key, value FROM tko_job_keyvals"),
        vec![vec![Some("new".into()), Some("0.5".into())]]
    );
    Ok(())
}

#[test]
fn sqlite_reparse_keeps_ids_and_user_rows() -> TestResult {
    reparse_keeps_ids_and_user_rows(Backend::Sqlite)
}

#[test]
fn pg_reparse_keeps_ids_and_user_rows() -> TestResult {
    reparse_keeps_ids_and_user_rows(Backend::Postgres)
}

fn unchanged_fingerprint_is_skipped(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let jobs = sample_jobs();
    let first = load_ok(s.as_mut(), &[item(&jobs[0], "fp")]).remove(0);
    let again = load_ok(s.as_mut(), &[item(&jobs[0], "fp")]).remove(0);
    assert_eq!(again.action, Action::Skipped);
    assert_eq!(again.job_idx, first.job_idx);
    let mut forced = item(&jobs[0], "fp");
    forced.force = true;
    assert_eq!(
        load_ok(s.as_mut(), &[forced]).remove(0).action,
        Action::Replaced
    );
    assert_eq!(
        load_ok(s.as_mut(), &[item(&jobs[0], "fp2")])
            .remove(0)
            .action,
        Action::Replaced
    );
    let mut db = Db::open(&f);
    assert_eq!(
        db.texts("SELECT fingerprint, outcome, CAST(tests AS TEXT) FROM tko_ingest_ledger"),
        vec![vec![
            Some("fp2".into()),
            Some("loaded".into()),
            Some("5".into())
        ]]
    );
    assert_eq!(db.int("SELECT count(*) FROM tko_tests"), 5);
    Ok(())
}

#[test]
fn sqlite_unchanged_fingerprint_is_skipped() -> TestResult {
    unchanged_fingerprint_is_skipped(Backend::Sqlite)
}

#[test]
fn pg_unchanged_fingerprint_is_skipped() -> TestResult {
    unchanged_fingerprint_is_skipped(Backend::Postgres)
}

// ---------------------------------------------------------------- hostile input

const HOSTILE: &str = "it's \"quoted\" \\back\\slash\\ \ttab\nnew\r\nline ünïcødé 日本 \\N '; DROP TABLE tko_jobs; --";

fn hostile_strings_round_trip(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let k = kernel(HOSTILE, &[HOSTILE]);
    let mut t = with_iterations(test(HOSTILE, Some(HOSTILE), Status::Good, &k), 1);
    t.reason = Some(HOSTILE.into());
    t.attributes.insert(HOSTILE, Value::Str(HOSTILE.into()));
    t.iterations[0].attr.insert(HOSTILE, HOSTILE.into());
    t.iterations[0].perf.insert(HOSTILE, PerfValue::Float(1.0));
    let mut t_nul = test("nul", Some("nul"), Status::Good, &k);
    t_nul.reason = Some("a\0b".into());
    let mut j = job(&format!("9-{HOSTILE}/x"), HOSTILE, vec![t, t_nul]);
    j.keyval.insert(HOSTILE, Value::Str(HOSTILE.into()));
    j.label = Some(HOSTILE.into());
    j.diagnostics.push(Diagnostic {
        severity: Severity::Warning,
        file: HOSTILE.into(),
        line: Some(3),
        message: HOSTILE.into(),
    });
    let out = load_ok(s.as_mut(), &[item(&j, HOSTILE)]).remove(0);
    assert_eq!(
        out.rows.diagnostics, 2,
        "parser diagnostic + NUL replacement"
    );

    let mut db = Db::open(&f);
    assert_eq!(
        db.int("SELECT count(*) FROM tko_jobs"),
        1,
        "tko_jobs survived"
    );
    let h = Some(HOSTILE.to_string());
    assert_eq!(
        db.texts(
            "SELECT job_tag, test_name, subdir, reason, hostname, job_name, kernel_base \
             FROM tko_test_view_2 WHERE test_name <> 'nul'"
        ),
        vec![vec![
            Some(format!("9-{HOSTILE}/x")),
            h.clone(),
            h.clone(),
            h.clone(),
            h.clone(),
            h.clone(),
            h.clone()
        ]]
    );
    assert_eq!(
        db.texts("SELECT reason FROM tko_tests WHERE test = 'nul'"),
        vec![vec![Some("a\u{FFFD}b".into())]]
    );
    for (sql, n) in [
        (
            "SELECT value FROM tko_test_attributes WHERE attribute = ",
            1,
        ),
        (
            "SELECT value FROM tko_iteration_attributes WHERE attribute = ",
            1,
        ),
        ("SELECT value FROM tko_job_keyvals WHERE key = ", 1),
        ("SELECT url FROM tko_patches WHERE url = ", 1),
        ("SELECT message FROM tko_diagnostics WHERE file = ", 1),
        (
            "SELECT fingerprint FROM tko_ingest_ledger WHERE fingerprint = ",
            1,
        ),
    ] {
        // The test's own SQL must quote too: double the single quotes.
        let lit = format!("'{}'", HOSTILE.replace('\'', "''"));
        let rows = db.texts(&format!("{sql}{lit}"));
        assert_eq!(rows.len(), n, "{sql}");
        assert_eq!(rows[0][0], h, "{sql}");
    }
    let nul_diag = db.texts("SELECT message FROM tko_diagnostics WHERE message LIKE '%NUL%'");
    assert_eq!(nul_diag.len(), 1);
    Ok(())
}

#[test]
fn sqlite_hostile_strings_round_trip() -> TestResult {
    hostile_strings_round_trip(Backend::Sqlite)
}

#[test]
fn pg_hostile_strings_round_trip() -> TestResult {
    hostile_strings_round_trip(Backend::Postgres)
}

// ---------------------------------------------------------------- failures

fn bad_job_does_not_sink_the_batch(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    // A real database error for one job only: a trigger refusing a test name.
    match backend {
        Backend::Postgres => db.exec(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.test = 'explode' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON tko_tests FOR EACH ROW EXECUTE FUNCTION refuse();",
        ),
        Backend::Sqlite => db.exec(
            "CREATE TRIGGER refuse BEFORE INSERT ON tko_tests WHEN NEW.test = 'explode' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        ),
    }
    let k = kernel("2.6.30", &[]);
    let jobs: Vec<_> = (0..5)
        .map(|i| {
            let name = if i == 2 { "explode" } else { "fine" };
            job(
                &format!("{i}-x/h"),
                "h",
                vec![test(name, Some(name), Status::Good, &k)],
            )
        })
        .collect();
    let items: Vec<_> = jobs.iter().map(|j| item(j, "fp")).collect();
    let out = s.load_jobs(&items);
    for (i, r) in out.iter().enumerate() {
        match r {
            Ok(o) => assert!(i != 2 && o.action == Action::Inserted),
            Err(Error::Load { tag, table, .. }) => {
                assert_eq!(i, 2);
                assert_eq!(tag, "2-x/h");
                assert_eq!(*table, "tko_tests");
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(db.int("SELECT count(*) FROM tko_tests"), 4);
    assert_eq!(
        db.int("SELECT count(*) FROM tko_jobs"),
        4,
        "no half-written job"
    );
    let ledger = db.texts("SELECT outcome, error FROM tko_ingest_ledger WHERE tag = '2-x/h'");
    assert_eq!(ledger[0][0].as_deref(), Some("failed"));
    assert!(ledger[0][1]
        .as_deref()
        .is_some_and(|e| e.contains("refused")));
    Ok(())
}

#[test]
fn sqlite_bad_job_does_not_sink_the_batch() -> TestResult {
    bad_job_does_not_sink_the_batch(Backend::Sqlite)
}

#[test]
fn pg_bad_job_does_not_sink_the_batch() -> TestResult {
    bad_job_does_not_sink_the_batch(Backend::Postgres)
}

fn state(c: &mut impl postgres::GenericClient) -> Result<Vec<(String, String)>, postgres::Error> {
    Ok(c.query(
        "SELECT test_name, status FROM tko_test_view_2 ORDER BY test_name",
        &[],
    )?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

#[test]
fn pg_killed_connection_keeps_previous_version() -> TestResult {
    let f = fresh(Backend::Postgres);
    let mut s = open_init(&f.url)?;
    let k = kernel("2.6.30", &[]);
    let v1 = job(
        "5-dan/h",
        "h",
        vec![with_iterations(test("t", Some("t"), Status::Good, &k), 2)],
    );
    let v2 = job(
        "5-dan/h",
        "h",
        vec![
            with_iterations(test("t", Some("t"), Status::Fail, &k), 1),
            test("u", Some("u"), Status::Good, &k),
        ],
    );
    let job_idx = load_ok(s.as_mut(), &[item(&v1, "v1")]).remove(0).job_idx;

    // Hold a lock the loader needs mid-job (after it rewrote the job row).
    let mut holder = postgres::Client::connect(&f.url, postgres::NoTls)?;
    let mut tx = holder.transaction()?;
    tx.batch_execute("LOCK TABLE tko_iteration_result IN ACCESS EXCLUSIVE MODE")?;
    let v2_for_thread = v2.clone();
    let url = f.url.clone();
    let loader = std::thread::spawn(move || {
        let mut s = store::open(&url).expect("open");
        let r = s.load_jobs(&[item(&v2_for_thread, "v2")]).remove(0);
        (s, r)
    });
    // pg_stat_activity is snapshotted per transaction: watch from outside.
    let mut watcher = postgres::Client::connect(&f.url, postgres::NoTls)?;
    let mut victim = None;
    for _ in 0..1000 {
        let rows = watcher.query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() \
             AND query LIKE 'DELETE FROM tko_iteration_result%'",
            &[],
        )?;
        if let Some(r) = rows.first() {
            victim = Some(r.get::<_, i32>(0));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let victim = victim.expect("the loader blocked on the lock");
    let killed: bool = tx
        .query_one("SELECT pg_terminate_backend($1)", &[&victim])?
        .get(0);
    assert!(killed);
    let (mut s2, r) = loader.join().expect("loader thread");
    assert!(r.is_err(), "the killed job reports an error");
    // The previous version is intact (read while still holding the lock).
    assert_eq!(state(&mut tx)?, vec![("t".to_string(), "GOOD".to_string())]);
    tx.commit()?;
    drop(s);
    let mut reader = postgres::Client::connect(&f.url, postgres::NoTls)?;
    assert_eq!(
        reader
            .query_one("SELECT count(*) FROM tko_iteration_result", &[])?
            .get::<_, i64>(0),
        4
    );
    // A rerun (the same store reconnects) completes it.
    let o = s2.load_jobs(&[item(&v2, "v2")]).remove(0)?;
    assert_eq!((o.action, o.job_idx), (Action::Replaced, job_idx));
    assert_eq!(
        state(&mut reader)?,
        vec![
            ("t".to_string(), "FAIL".to_string()),
            ("u".to_string(), "GOOD".to_string())
        ]
    );
    Ok(())
}

// ---------------------------------------------------------------- concurrency

fn many_jobs() -> Vec<tko::model::Job> {
    let kernels = [
        kernel("2.6.30", &[]),
        kernel("2.6.31", &["http://x/a.patch"]),
        kernel("2.6.32", &["http://x/b.patch", "http://x/c.patch"]),
    ];
    (0..24)
        .map(|i| {
            let tests = (0..4)
                .map(|t| {
                    let k = &kernels[(i + t) % 3];
                    with_iterations(
                        test(&format!("t{t}"), Some(&format!("t{t}")), Status::Good, k),
                        2,
                    )
                })
                .collect();
            let mut j = job(
                &format!("{i}-load/m{}", i % 5),
                &format!("m{}", i % 5),
                tests,
            );
            // Each job sees its machine differently; newest is not last.
            let age = (i * 7) % 24;
            j.machine_group = format!("g-{age}");
            j.machine_owner = (i % 3 == 0).then(|| format!("own-{age}"));
            j.finished_time = Some(1_300_000_000 + age as i64 * 10);
            j
        })
        .collect()
}

#[test]
fn pg_concurrent_loaders_match_serial_load() -> TestResult {
    let jobs = Arc::new(many_jobs());
    let serial = fresh(Backend::Postgres);
    {
        let mut s = open_init(&serial.url)?;
        let items: Vec<_> = jobs.iter().map(|j| item(j, "fp")).collect();
        load_ok(s.as_mut(), &items);
    }
    let conc = fresh(Backend::Postgres);
    open_init(&conc.url)?;
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (jobs, barrier, url) = (jobs.clone(), barrier.clone(), conc.url.clone());
            std::thread::spawn(move || -> Vec<String> {
                let mut s = store::open(&url).expect("open");
                s.set_batch_jobs(3 + t);
                // Overlapping sets, different orders.
                let mut mine: Vec<_> = jobs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i + t) % 4 != 0)
                    .map(|(_, j)| item(j, "fp"))
                    .collect();
                if t % 2 == 1 {
                    mine.reverse();
                }
                for it in &mut mine {
                    it.force = true; // every loader really writes
                }
                barrier.wait();
                s.load_jobs(&mine)
                    .into_iter()
                    .filter_map(|r| r.err().map(|e| error_chain(&e)))
                    .collect()
            })
        })
        .collect();
    for h in handles {
        let errors = h.join().expect("loader thread");
        assert!(errors.is_empty(), "{errors:?}");
    }
    let a = support::contents(&mut Db::open(&serial));
    let b = support::contents(&mut Db::open(&conc));
    assert_eq!(a, b);
    assert_eq!(
        Db::open(&conc).texts(MACHINES),
        Db::open(&serial).texts(MACHINES)
    );
    let mut db = Db::open(&conc);
    assert_eq!(db.int("SELECT count(*) FROM tko_machines"), 5);
    assert_eq!(db.int("SELECT count(*) FROM tko_kernels"), 3);
    assert_eq!(db.int("SELECT count(*) FROM tko_patches"), 3);
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 24);
    Ok(())
}

// ------------------------------------------------- corpus round trip

/// Quotes a string as an SQL literal for these read-back queries.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Every whole-job corpus run and the bundled fixtures, parsed and loaded
/// case by case; after each load the views give back exactly the parsed
/// tests, statuses, reasons, kernels, attributes and iteration values.
fn corpus_round_trip(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("tests/corpus/autotest");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus.join("manifest.json"))
            .map_err(|e| format!("{}: {e}", corpus.join("manifest.json").display()))?,
    )?;
    let mut inputs = vec![(root.join("fixtures/example-results"), 2)];
    for case in manifest["cases"].as_array().expect("cases") {
        for run in case["runs"].as_array().expect("runs") {
            let args = run["args"].as_array().expect("args");
            if args.iter().any(|a| a == "--unit" || a == "--incremental") {
                continue;
            }
            let level = args
                .iter()
                .position(|a| a == "--level")
                .and_then(|i| args[i + 1].as_str()?.parse().ok())
                .unwrap_or(1);
            let dir = corpus.join(case["name"].as_str().expect("name"));
            inputs.push((dir.join(run["input"].as_str().expect("input")), level));
        }
    }
    let mut jobs_checked = 0;
    for (input, level) in inputs {
        let (dirs, _) = tko::discover::find_jobs(&[input], level);
        let parsed: Vec<_> = tko::ingest::parse_all(&dirs)
            .into_iter()
            .map(|p| p.expect("corpus files are readable"))
            .filter(|p| p.status_file.is_some())
            .collect();
        let items: Vec<LoadItem<'_>> = parsed
            .iter()
            .map(|p| LoadItem {
                job: &p.job,
                source: p.path.clone(),
                fingerprint: p.fingerprint.clone(),
                // Corpus cases reuse tags (`as-v1`): each replaces the last.
                force: true,
                read_at: None,
            })
            .collect();
        load_ok(s.as_mut(), &items);
        for p in &parsed {
            let job = &p.job;
            let tag = lit(&job.tag);
            let mut want: Vec<Vec<Option<String>>> = job
                .tests
                .iter()
                .map(|t| {
                    vec![
                        Some(t.testname.clone()),
                        t.subdir.clone(),
                        Some(t.status.word().to_string()),
                        t.reason.clone(),
                        Some(t.kernel.kernel_hash.clone()),
                        Some(job.machine.clone()),
                    ]
                })
                .collect();
            want.sort();
            let mut got = db.texts(&format!(
                "SELECT test_name, subdir, status, reason, kernel_hash, hostname \
                 FROM tko_test_view_2 WHERE job_tag = {tag}"
            ));
            got.sort();
            assert_eq!(got, want, "tests of {}", job.tag);

            let mut want: Vec<Vec<Option<String>>> = job
                .tests
                .iter()
                .flat_map(|t| {
                    t.attributes.iter().map(move |(k, v)| {
                        vec![Some(t.testname.clone()), Some(k.to_owned()), v.to_db_text()]
                    })
                })
                .collect();
            want.sort();
            let mut got = db.texts(&format!(
                "SELECT t.test, a.attribute, a.value FROM tko_test_attributes a \
                 JOIN tko_tests t ON t.test_idx = a.test_idx \
                 JOIN tko_jobs j ON j.job_idx = t.job_idx WHERE j.tag = {tag}"
            ));
            got.sort();
            assert_eq!(got, want, "attributes of {}", job.tag);

            let mut want: Vec<(String, String, u32, String, Option<f64>)> = job
                .tests
                .iter()
                .flat_map(|t| {
                    t.iterations.iter().flat_map(move |it| {
                        it.perf.iter().map(move |(k, v)| {
                            let sd = t.subdir.clone().unwrap_or_default();
                            (t.testname.clone(), sd, it.index, k.to_owned(), v.as_f64())
                        })
                    })
                })
                .collect();
            want.sort_by(|a, b| (&a.0, &a.1, a.2, &a.3).cmp(&(&b.0, &b.1, b.2, &b.3)));
            let order = "ORDER BY test_name, COALESCE(subdir, ''), iteration, iteration_key";
            let filter =
                format!("FROM tko_perf_view_2 WHERE job_tag = {tag} AND iteration_key IS NOT NULL");
            let keys = db.texts(&format!(
                "SELECT test_name, COALESCE(subdir, ''), CAST(iteration AS TEXT), iteration_key {filter} {order}"
            ));
            let values = db.floats(&format!("SELECT iteration_value {filter} {order}"));
            assert_eq!(keys.len(), want.len(), "perf rows of {}", job.tag);
            for ((k, v), w) in keys.iter().zip(&values).zip(&want) {
                let key = (k[0].clone(), k[1].clone(), k[2].clone(), k[3].clone());
                let wkey = (
                    Some(w.0.clone()),
                    Some(w.1.clone()),
                    Some(w.2.to_string()),
                    Some(w.3.clone()),
                );
                assert_eq!(key, wkey, "perf key of {}", job.tag);
                let same = match (v, w.4) {
                    (Some(a), Some(b)) => a == &b || (a.is_nan() && b.is_nan()),
                    (None, Some(b)) => b.is_nan() && backend == Backend::Sqlite,
                    (None, None) => true,
                    (Some(_), None) => false,
                };
                assert!(same, "perf value {k:?} of {}: {v:?} vs {:?}", job.tag, w.4);
            }
            jobs_checked += 1;
        }
    }
    assert!(jobs_checked >= 60, "only {jobs_checked} jobs checked");
    Ok(())
}

#[test]
fn sqlite_corpus_round_trip() -> TestResult {
    corpus_round_trip(Backend::Sqlite)
}

#[test]
fn pg_corpus_round_trip() -> TestResult {
    corpus_round_trip(Backend::Postgres)
}

// ------------------------------------------------------- machine rows

const MACHINES: &str = "SELECT hostname, machine_group, owner FROM tko_machines ORDER BY hostname";

/// Jobs on two machines, each job seeing its machine with another group
/// and (some) another owner; finish times out of tag order (`10-` sorts
/// before `9-` by bytes but finished later).
fn relabelled_jobs() -> Vec<tko::model::Job> {
    let k = kernel("2.6.30", &[]);
    let spec: [(&str, &str, &str, Option<&str>, i64); 6] = [
        ("8-a/h1", "h1", "g-8", Some("own-8"), 800),
        ("9-a/h1", "h1", "g-9", None, 900),
        ("10-a/h1", "h1", "g-10", None, 1000),
        ("11-a/h1", "h1", "g-11", None, 300),
        ("5-b/h2", "h2", "g-5", Some("own-5"), 2000),
        ("6-b/h2", "h2", "g-6", Some("own-6"), 2000),
    ];
    spec.iter()
        .map(|&(tag, host, group, owner, finished)| {
            let mut j = job(tag, host, vec![test("t", Some("t"), Status::Good, &k)]);
            j.machine_group = group.into();
            j.machine_owner = owner.map(Into::into);
            j.finished_time = Some(1_300_000_000 + finished);
            j
        })
        .collect()
}

/// The machine rows a load of `relabelled_jobs` must give: the group of the
/// newest job (finished time, then tag), the owner of the newest that names
/// one.
fn newest_job_machine_rows() -> Vec<Vec<Option<String>>> {
    let row = |h: &str, g: &str, o: &str| vec![Some(h.into()), Some(g.into()), Some(o.into())];
    vec![row("h1", "g-10", "own-8"), row("h2", "g-6", "own-6")]
}

fn machine_rows_do_not_depend_on_load_order(backend: Backend) -> TestResult {
    let jobs = relabelled_jobs();
    let mut seen = Vec::new();
    for (order, batch) in [(0, 100), (1, 1), (2, 2)] {
        let f = fresh(backend);
        let mut s = open_init(&f.url)?;
        s.set_batch_jobs(batch);
        let mut items: Vec<_> = jobs.iter().map(|j| item(j, "fp")).collect();
        match order {
            0 => {}
            1 => items.reverse(),
            _ => items.rotate_left(2),
        }
        // One call, or one call per job (separate transactions).
        if order == 2 {
            for it in &items {
                load_ok(s.as_mut(), std::slice::from_ref(it));
            }
        } else {
            load_ok(s.as_mut(), &items);
        }
        seen.push(Db::open(&f).texts(MACHINES));
    }
    for rows in &seen {
        assert_eq!(rows, &newest_job_machine_rows());
    }
    Ok(())
}

#[test]
fn sqlite_machine_rows_do_not_depend_on_load_order() -> TestResult {
    machine_rows_do_not_depend_on_load_order(Backend::Sqlite)
}

#[test]
fn pg_machine_rows_do_not_depend_on_load_order() -> TestResult {
    machine_rows_do_not_depend_on_load_order(Backend::Postgres)
}

/// A job that fails changes no machine row; a reload that moves a job to
/// another machine recomputes the one it left.
fn machine_rows_follow_only_committed_jobs(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let jobs = relabelled_jobs();
    let items: Vec<_> = jobs.iter().map(|j| item(j, "fp")).collect();
    load_ok(s.as_mut(), &items);
    let before = db.texts(MACHINES);
    match backend {
        Backend::Postgres => db.exec(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.test = 'explode' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON tko_tests FOR EACH ROW EXECUTE FUNCTION refuse();",
        ),
        Backend::Sqlite => db.exec(
            "CREATE TRIGGER refuse BEFORE INSERT ON tko_tests WHEN NEW.test = 'explode' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        ),
    }
    // The newest job of all, on h1, with a new group and owner: it fails.
    let k = kernel("2.6.30", &[]);
    let mut bad = job(
        "12-a/h1",
        "h1",
        vec![test("explode", Some("explode"), Status::Good, &k)],
    );
    bad.machine_group = "g-bad".into();
    bad.machine_owner = Some("own-bad".into());
    bad.finished_time = Some(1_300_009_999);
    let r = s.load_jobs(&[item(&bad, "fp")]).remove(0);
    assert!(r.is_err(), "the job fails");
    assert_eq!(
        db.texts(MACHINES),
        before,
        "the failed job changed no machine"
    );
    assert_eq!(before, newest_job_machine_rows());

    // 10-a/h1 (h1's newest) moves to h2 and becomes h2's newest: h1 falls
    // back to its next newest job (9-a), h2 takes 10-a's values.
    let mut moved = jobs[2].clone();
    moved.machine = "h2".into();
    moved.finished_time = Some(1_300_005_000);
    load_ok(s.as_mut(), &[item(&moved, "fp2")]);
    let row = |h: &str, g: &str, o: &str| vec![Some(h.into()), Some(g.into()), Some(o.into())];
    assert_eq!(
        db.texts(MACHINES),
        vec![row("h1", "g-9", "own-8"), row("h2", "g-10", "own-6")]
    );
    Ok(())
}

#[test]
fn sqlite_machine_rows_follow_only_committed_jobs() -> TestResult {
    machine_rows_follow_only_committed_jobs(Backend::Sqlite)
}

#[test]
fn pg_machine_rows_follow_only_committed_jobs() -> TestResult {
    machine_rows_follow_only_committed_jobs(Backend::Postgres)
}

/// Migration 003 fills `tko_job_machines` for jobs loaded before it with
/// the same `newest` keys the loader writes, and keeps the machine rows.
fn migration_003_keys_match_the_loader(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let mut jobs = relabelled_jobs();
    jobs[0].finished_time = None;
    jobs[1].queued_time = Some(-86_400 * 365 * 30); // before the epoch
    let items: Vec<_> = jobs.iter().map(|j| item(j, "fp")).collect();
    load_ok(s.as_mut(), &items);
    let keys = "SELECT CAST(job_idx AS TEXT), CAST(machine_idx AS TEXT), newest \
                FROM tko_job_machines ORDER BY job_idx";
    let loaded = db.texts(keys);
    assert_eq!(loaded.len(), jobs.len());
    let machines = db.texts(MACHINES);
    db.exec(support::UNDO_006[backend as usize]);
    db.exec(
        "DROP TABLE tko_scan_listing; DROP TABLE tko_job_machines; \
         ALTER TABLE tko_ingest_ledger DROP COLUMN read_at; DROP TABLE tko_test_information; \
         DELETE FROM tko_schema_version WHERE version IN (3, 4, 5, 6, 7)",
    );
    assert_eq!(s.migrate()?, vec![3, 4, 5, 6, 7]);
    assert_eq!(db.texts(keys), loaded);
    assert_eq!(db.texts(MACHINES), machines);
    Ok(())
}

#[test]
fn sqlite_migration_003_keys_match_the_loader() -> TestResult {
    migration_003_keys_match_the_loader(Backend::Sqlite)
}

#[test]
fn pg_migration_003_keys_match_the_loader() -> TestResult {
    migration_003_keys_match_the_loader(Backend::Postgres)
}

// ------------------------------------------------------- source paths

fn at<'a>(job: &'a tko::model::Job, source: &str, fingerprint: &str) -> LoadItem<'a> {
    LoadItem {
        job,
        source: source.into(),
        fingerprint: fingerprint.into(),
        force: false,
        read_at: None,
    }
}

fn ledger_row(db: &mut Db, tag: &str) -> Vec<Vec<Option<String>>> {
    db.texts(&format!(
        "SELECT source_path, fingerprint, outcome, error, CAST(job_idx AS TEXT) \
         FROM tko_ingest_ledger WHERE tag = {}",
        lit(tag)
    ))
}

fn other_source_path_is_refused_without_force(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let jobs = sample_jobs();
    let v1 = &jobs[0];
    let mut v2 = v1.clone();
    v2.tests.truncate(1);
    load_ok(s.as_mut(), &[at(v1, "/lab/a/123-alice/host1", "fp1")]);
    let before = support::contents(&mut db);
    let ledger_before = ledger_row(&mut db, &v1.tag);

    let r = s.load_jobs(&[at(&v2, "/lab/b/123-alice/host1", "fp2")]);
    match &r[0] {
        Err(e @ Error::SourceConflict { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("/lab/a/123-alice/host1") && text.contains("/lab/b/123-alice/host1"),
                "{text}"
            );
        }
        other => panic!("expected a source conflict, got {other:?}"),
    }
    assert_eq!(
        support::contents(&mut db),
        before,
        "previous version intact"
    );
    assert_eq!(
        ledger_row(&mut db, &v1.tag),
        ledger_before,
        "ledger unchanged"
    );

    // The same source still reloads; --force replaces from another one.
    let mut forced = at(&v2, "/lab/b/123-alice/host1", "fp2");
    forced.force = true;
    let o = load_ok(s.as_mut(), &[forced]).remove(0);
    assert_eq!(o.action, Action::Replaced);
    assert_eq!(
        db.int(&format!(
            "SELECT count(*) FROM tko_tests t JOIN tko_jobs j ON j.job_idx = t.job_idx \
             WHERE j.tag = {}",
            lit(&v1.tag)
        )),
        1
    );
    assert_eq!(
        ledger_row(&mut db, &v1.tag)[0][0].as_deref(),
        Some("/lab/b/123-alice/host1")
    );
    Ok(())
}

#[test]
fn sqlite_other_source_path_is_refused_without_force() -> TestResult {
    other_source_path_is_refused_without_force(Backend::Sqlite)
}

#[test]
fn pg_other_source_path_is_refused_without_force() -> TestResult {
    other_source_path_is_refused_without_force(Backend::Postgres)
}

fn same_tag_twice_in_one_load_is_an_error(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let jobs = sample_jobs();
    let mut twin = jobs[0].clone();
    twin.tests.truncate(2);
    // In one batch, and in one call with other jobs around them.
    for batch in [100, 1] {
        s.set_batch_jobs(batch);
        let items = [
            at(&jobs[1], "/lab/124-bob/host2", "b"),
            at(&jobs[0], "/lab/x/123-alice/host1", "x"),
            at(&twin, "/lab/y/123-alice/host1", "y"),
        ];
        let r = s.load_jobs(&items);
        assert!(r[0].is_ok(), "{:?}", r[0]);
        assert!(r[1].is_ok(), "{:?}", r[1]);
        match &r[2] {
            Err(e @ Error::DuplicateTag { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("/lab/x/123-alice/host1")
                        && text.contains("/lab/y/123-alice/host1"),
                    "{text}"
                );
            }
            other => panic!("expected a duplicate-tag error, got {other:?}"),
        }
    }
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), 2);
    assert_eq!(
        db.int("SELECT count(*) FROM tko_tests"),
        jobs[0].tests.len() as i64 + jobs[1].tests.len() as i64,
        "the first of the two is the one stored"
    );
    assert_eq!(
        ledger_row(&mut db, &jobs[0].tag)[0][0].as_deref(),
        Some("/lab/x/123-alice/host1")
    );
    Ok(())
}

#[test]
fn sqlite_same_tag_twice_in_one_load_is_an_error() -> TestResult {
    same_tag_twice_in_one_load_is_an_error(Backend::Sqlite)
}

#[test]
fn pg_same_tag_twice_in_one_load_is_an_error() -> TestResult {
    same_tag_twice_in_one_load_is_an_error(Backend::Postgres)
}

// ------------------------------------------------------- failed reads

fn recorded_failure_keeps_job_and_is_retried(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let jobs = sample_jobs();
    let source = "/lab/123-alice/host1";
    let first = load_ok(s.as_mut(), &[at(&jobs[0], source, "fp")]).remove(0);
    let before = support::contents(&mut db);

    s.record_failures(&[
        store::Failure {
            tag: jobs[0].tag.clone(),
            source: source.into(),
            error: "status.log: Too many open files (os error 24)".into(),
        },
        store::Failure {
            tag: "999-new/host9".into(),
            source: "/lab/999-new/host9".into(),
            error: "keyval: Permission denied (os error 13)".into(),
        },
    ])?;
    assert_eq!(
        support::contents(&mut db),
        before,
        "no row of the job touched"
    );
    let row = ledger_row(&mut db, &jobs[0].tag);
    assert_eq!(row[0][0].as_deref(), Some(source));
    assert_eq!(row[0][2].as_deref(), Some("failed"));
    assert!(
        row[0][3]
            .as_deref()
            .is_some_and(|e| e.contains("Too many open files")),
        "{row:?}"
    );
    assert_eq!(row[0][4], Some(first.job_idx.to_string()), "job_idx kept");
    let new = ledger_row(&mut db, "999-new/host9");
    assert_eq!(new[0][2].as_deref(), Some("failed"));
    assert_eq!(new[0][4], None);
    // Backfill does not take a failed job as unchanged.
    let state = s.ledger_state(&[&jobs[0].tag])?;
    assert!(!state[&jobs[0].tag].loaded);

    // The next run loads it again (same content: not skipped).
    let again = load_ok(s.as_mut(), &[at(&jobs[0], source, "fp")]).remove(0);
    assert_eq!(
        (again.action, again.job_idx),
        (Action::Replaced, first.job_idx)
    );
    assert_eq!(
        ledger_row(&mut db, &jobs[0].tag)[0][2].as_deref(),
        Some("loaded")
    );
    assert_eq!(support::contents(&mut db), before);

    // A failure from another directory with the same tag does not make
    // that directory the job's source.
    s.record_failures(&[store::Failure {
        tag: jobs[0].tag.clone(),
        source: "/elsewhere/123-alice/host1".into(),
        error: "unreadable".into(),
    }])?;
    let row = ledger_row(&mut db, &jobs[0].tag);
    assert_eq!(row[0][0].as_deref(), Some(source));
    assert!(row[0][3]
        .as_deref()
        .is_some_and(|e| e.contains("/elsewhere/")));
    let r = s.load_jobs(&[at(&jobs[0], "/elsewhere/123-alice/host1", "fp")]);
    assert!(
        matches!(r[0], Err(Error::SourceConflict { .. })),
        "{:?}",
        r[0]
    );
    Ok(())
}

#[test]
fn sqlite_recorded_failure_keeps_job_and_is_retried() -> TestResult {
    recorded_failure_keeps_job_and_is_retried(Backend::Sqlite)
}

#[test]
fn pg_recorded_failure_keeps_job_and_is_retried() -> TestResult {
    recorded_failure_keeps_job_and_is_retried(Backend::Postgres)
}

/// Two loaders race to load the same tags from two different results
/// directories: for each tag exactly one wins, the other is refused with
/// both paths named (never a silent replacement), whatever the timing.
fn racing_sources_one_wins_per_tag(backend: Backend) -> TestResult {
    let f = fresh(backend);
    open_init(&f.url)?;
    let jobs = Arc::new(many_jobs());
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ["/lab/a", "/lab/b"]
        .into_iter()
        .enumerate()
        .map(|(t, root)| {
            let (jobs, barrier, url) = (jobs.clone(), barrier.clone(), f.url.clone());
            std::thread::spawn(move || -> Vec<Result<Action, String>> {
                let mut s = store::open(&url).expect("open");
                s.set_batch_jobs(2 + t);
                let mut items: Vec<_> = jobs
                    .iter()
                    .map(|j| at(j, &format!("{root}/{}", j.tag), "fp"))
                    .collect();
                if t == 1 {
                    items.reverse();
                }
                barrier.wait();
                let mut out = s.load_jobs(&items);
                if t == 1 {
                    out.reverse();
                }
                out.into_iter()
                    .map(|r| match r {
                        Ok(o) => Ok(o.action),
                        Err(e @ Error::SourceConflict { .. }) => Err(e.to_string()),
                        Err(e) => panic!("unexpected error: {}", error_chain(&e)),
                    })
                    .collect()
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("loader thread"))
        .collect();
    let mut db = Db::open(&f);
    for (i, j) in jobs.iter().enumerate() {
        let (a, b) = (&results[0][i], &results[1][i]);
        let winner = match (a, b) {
            (Ok(Action::Inserted), Err(e)) | (Err(e), Ok(Action::Inserted)) => {
                assert!(e.contains("/lab/a/") && e.contains("/lab/b/"), "{e}");
                if a.is_ok() {
                    "/lab/a"
                } else {
                    "/lab/b"
                }
            }
            other => panic!(
                "{}: expected one load and one refusal, got {other:?}",
                j.tag
            ),
        };
        assert_eq!(
            ledger_row(&mut db, &j.tag)[0][0],
            Some(format!("{winner}/{}", j.tag))
        );
    }
    assert_eq!(db.int("SELECT count(*) FROM tko_jobs"), jobs.len() as i64);
    Ok(())
}

#[test]
fn sqlite_racing_sources_one_wins_per_tag() -> TestResult {
    racing_sources_one_wins_per_tag(Backend::Sqlite)
}

#[test]
fn pg_racing_sources_one_wins_per_tag() -> TestResult {
    racing_sources_one_wins_per_tag(Backend::Postgres)
}

/// Locks are held only while a job is read, so two loaders of one job may
/// commit in either order: the later *read* wins. A load whose read began
/// before the stored version's read is skipped (nothing written), a later
/// one replaces it, and `force` always writes.
fn the_later_read_wins_whatever_the_commit_order(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let jobs = sample_jobs();
    let newer = &jobs[0];
    let mut older = newer.clone();
    older.tests.truncate(1);
    let source = "/lab/a/123-alice/host1";
    let read = |job, fp, t: i64| LoadItem {
        read_at: Some(t),
        ..at(job, source, fp)
    };
    load_ok(s.as_mut(), &[read(newer, "fp-new", 2_000)]);
    let want = support::contents(&mut db);

    // The older read commits last: skipped, the newer version stays.
    let o = load_ok(s.as_mut(), &[read(&older, "fp-old", 1_000)]).remove(0);
    assert_eq!(o.action, Action::Skipped);
    assert_eq!(support::contents(&mut db), want);
    assert_eq!(
        db.texts(&format!(
            "SELECT fingerprint, CAST(read_at AS TEXT) FROM tko_ingest_ledger WHERE tag = {}",
            lit(&newer.tag)
        )),
        vec![vec![Some("fp-new".to_string()), Some("2000".to_string())]]
    );

    // A later read replaces it; force writes whatever the times.
    let o = load_ok(s.as_mut(), &[read(&older, "fp-old", 3_000)]).remove(0);
    assert_eq!(o.action, Action::Replaced);
    let mut forced = read(newer, "fp-new", 1);
    forced.force = true;
    assert_eq!(
        load_ok(s.as_mut(), &[forced]).remove(0).action,
        Action::Replaced
    );
    assert_eq!(support::contents(&mut db), want);
    Ok(())
}

#[test]
fn sqlite_the_later_read_wins_whatever_the_commit_order() -> TestResult {
    the_later_read_wins_whatever_the_commit_order(Backend::Sqlite)
}

#[test]
fn pg_the_later_read_wins_whatever_the_commit_order() -> TestResult {
    the_later_read_wins_whatever_the_commit_order(Backend::Postgres)
}

/// The backfill's skip check (`Store::ledger_unproven`) leaves out exactly
/// the jobs whose ledger row proves them unchanged: loaded by this tko
/// version, signed with the content that is loaded, same signature. Each
/// other case comes back, with its ledger state; a check that dropped any
/// one condition would leave one of them out.
fn ledger_unproven_leaves_out_only_what_is_proven(backend: Backend) -> TestResult {
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let mut db = Db::open(&f);
    let tags = [
        "1-a/h", "2-b/h", "3-c/h", "4-d/h", "5-e/h", "6-f/h", "7-g/h",
    ];
    let jobs: Vec<_> = tags.iter().map(|t| job(t, "m", vec![])).collect();
    let items: Vec<LoadItem<'_>> = jobs
        .iter()
        .map(|j| at(j, &format!("/r/{}", j.tag), "fp"))
        .collect();
    // 7-g/h is never loaded.
    load_ok(s.as_mut(), &items[..6]);
    let signed = |tag: &str, fingerprint: &str| store::Signature {
        tag: tag.into(),
        signature: format!("sig {tag}"),
        fingerprint: fingerprint.into(),
    };
    s.record_signatures(&[
        signed("1-a/h", "fp"),
        signed("2-b/h", "fp"),
        signed("3-c/h", "fp"),
        // Signed with content that is no longer the loaded one.
        signed("4-d/h", "older fp"),
        signed("5-e/h", "fp"),
        signed("6-f/h", "fp"),
    ])?;
    // 5-e/h: its last attempt failed; 6-f/h: loaded by another version.
    s.record_failures(&[store::Failure {
        tag: "5-e/h".into(),
        source: "/r/5-e/h".into(),
        error: "unreadable".into(),
    }])?;
    db.exec("UPDATE tko_ingest_ledger SET parser_version = '0.0.0-old' WHERE tag = '6-f/h'");
    let sigs: Vec<String> = tags.iter().map(|t| format!("sig {t}")).collect();
    let mut asked: Vec<(&str, Option<&str>)> = tags
        .iter()
        .zip(&sigs)
        .map(|(t, s)| (*t, Some(s.as_str())))
        .collect();
    asked[1].1 = Some("another signature");
    asked[2].1 = None; // --force / --verify: prove nothing
    let mut unproven = s.ledger_unproven(&asked)?;
    unproven.sort_by_key(|u| u.0);
    let positions: Vec<usize> = unproven.iter().map(|u| u.0).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6], "{unproven:?}");
    let state = |i: usize| unproven.iter().find(|u| u.0 == i).and_then(|u| u.1.clone());
    let b = state(1).expect("2-b/h has a ledger row");
    assert!(b.loaded && !b.deleted);
    assert_eq!(b.signature.as_deref(), Some("sig 2-b/h"));
    assert_eq!(b.fingerprint, "fp");
    assert!(state(2).is_some_and(|c| c.loaded));
    assert!(state(3).is_some_and(|d| d.loaded && d.signature.is_none()));
    assert!(state(4).is_some_and(|e| !e.loaded));
    assert!(state(5).is_some_and(|g| !g.loaded));
    assert!(state(6).is_none(), "7-g/h has no ledger row");
    // The same states `ledger_state` gives.
    let all = s.ledger_state(&tags)?;
    for (i, st) in &unproven {
        assert_eq!(st.as_ref(), all.get(tags[*i]), "{}", tags[*i]);
    }
    // Nothing asked, nothing answered.
    assert!(s.ledger_unproven(&[])?.is_empty());
    Ok(())
}

#[test]
fn sqlite_ledger_unproven_leaves_out_only_what_is_proven() -> TestResult {
    ledger_unproven_leaves_out_only_what_is_proven(Backend::Sqlite)
}

#[test]
fn pg_ledger_unproven_leaves_out_only_what_is_proven() -> TestResult {
    ledger_unproven_leaves_out_only_what_is_proven(Backend::Postgres)
}

// ---------------------------------------------------------------- listings

/// A round's recorded listings are read a range of each root's rows at a
/// time: the round's own directories' listings come back, and the
/// listings of directories in its span that are not among them (gone) are
/// named, but never a listing outside the span (before `after`, after the
/// last directory of a round that does not end the root) nor one of a
/// directory below another root under this one; forgetting the gone ones
/// removes exactly those rows.
fn listings_are_read_and_forgotten_by_span(backend: Backend) -> TestResult {
    use std::path::{Path, PathBuf};
    use tko::discover::{Listing, TopSpan};
    let f = fresh(backend);
    let mut s = open_init(&f.url)?;
    let listing = |n: u64| Listing {
        stamp: [n, 2, 3, 4, 5, 6],
        subdirs: vec!["h".into()],
    };
    let p = |s: &str| PathBuf::from(s);
    // Root /r: a, b (gone), c, d, e (gone), f, g (gone); /r/c is a root
    // too (its x is gone), and /r0 and /q are other roots.
    let all = [
        "/q/a", "/r/a", "/r/b", "/r/c", "/r/c/x", "/r/d", "/r/e", "/r/f", "/r/g", "/r0/a",
    ];
    let rows: Vec<(PathBuf, Listing)> = all
        .iter()
        .enumerate()
        .map(|(i, a)| (p(a), listing(i as u64)))
        .collect();
    s.record_top_listings(&rows, &[])?;
    let (a, c, d, f_) = (p("/r/a"), p("/r/c"), p("/r/d"), p("/r/f"));
    // Round 1: a and c, not the root's end.
    let round1 = [TopSpan {
        root: Path::new("/r"),
        after: None,
        tops: vec![&a, &c],
        to_end: false,
    }];
    let got = s.listings_of(&round1)?;
    let mut keys: Vec<_> = got.listings.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, [a.clone(), c.clone()]);
    assert_eq!(got.listings[&c], listing(3));
    assert_eq!(got.gone, [p("/r/b")]);
    // Round 2: d and f, after c, to the root's end.
    let round2 = [TopSpan {
        root: Path::new("/r"),
        after: Some(&c),
        tops: vec![&d, &f_],
        to_end: true,
    }];
    let got = s.listings_of(&round2)?;
    assert_eq!(got.listings.len(), 2);
    let mut gone = got.gone.clone();
    gone.sort();
    assert_eq!(gone, [p("/r/e"), p("/r/g")]);
    s.record_top_listings(&[], &gone)?;
    // What stays: every other row, and a second look finds none gone.
    let left = s.listings_of(&round2)?;
    assert!(left.gone.is_empty(), "{:?}", left.gone);
    assert_eq!(left.listings.len(), 2);
    let x = p("/r/c/x");
    let nested = [TopSpan {
        root: &c,
        after: None,
        tops: vec![&x],
        to_end: true,
    }];
    assert_eq!(s.listings_of(&nested)?.listings.len(), 1);
    let mut db = Db::open(&f);
    assert_eq!(db.int("SELECT count(*) FROM tko_scan_listing"), 8);
    Ok(())
}

#[test]
fn sqlite_listings_are_read_and_forgotten_by_span() -> TestResult {
    listings_are_read_and_forgotten_by_span(Backend::Sqlite)
}

#[test]
fn pg_listings_are_read_and_forgotten_by_span() -> TestResult {
    listings_are_read_and_forgotten_by_span(Backend::Postgres)
}

/// Recording nothing (a chunk with no job loaded, a round with no listing)
/// does not take SQLite's write lock: it returns at once while another
/// connection holds it (it used to open an empty IMMEDIATE transaction,
/// and so waited for the lock, up to the busy timeout).
#[test]
fn sqlite_recording_nothing_takes_no_write_lock() -> TestResult {
    let f = fresh(Backend::Sqlite);
    let mut s = open_init(&f.url)?;
    let Db::Lite(holder) = Db::open(&f) else {
        unreachable!("a SQLite store")
    };
    holder.execute_batch("BEGIN IMMEDIATE")?;
    let t0 = std::time::Instant::now();
    s.record_signatures(&[])?;
    s.record_top_listings(&[], &[])?;
    let took = t0.elapsed();
    holder.execute_batch("ROLLBACK")?;
    assert!(
        took < std::time::Duration::from_secs(2),
        "recording nothing waited {took:?} for the write lock"
    );
    Ok(())
}
