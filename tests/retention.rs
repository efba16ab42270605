//! `tko delete` and `tko prune` end to end, with the real binary on both
//! stores: exactly the chosen jobs' rows go (users' labels and attributes on
//! their tests too) and the rest equals a warehouse that never held them
//! (machine rows included); a dry run writes nothing; a SIGKILL mid-prune
//! leaves every job whole or gone and a rerun completes; a later backfill
//! or load does not bring a deleted job back unless --force.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::{contents, fresh, Backend, Db, Fresh, TestResult};
use tko::gen::{generate, GenOptions};

/// A generated results tree (machines relabelled over time, so machine
/// rows depend on which job is the newest on each machine).
fn tree(jobs: usize, machines: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        jobs,
        tests_per_job: 2..=4,
        iterations_per_test: 1..=2,
        perf_keys_per_iteration: 2..=3,
        fraction_bad: 0.0,
        machines,
        relabel_machines: true,
        subdir_status_copies: false,
        ..GenOptions::default()
    };
    generate(&dir.path().join("results"), &opts).expect("generate");
    dir
}

fn tko(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tko")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn backfill(url: &str, root: &Path, extra: &[&str]) -> Output {
    let root = root.to_str().expect("utf-8 path");
    let mut args = vec!["backfill", "--quiet", "--level", "2", "--db", url];
    args.extend_from_slice(extra);
    args.push(root);
    tko(&args)
}

fn loaded(backend: Backend, root: &Path) -> Fresh {
    let f = fresh(backend);
    ok(&backfill(&f.url, root, &[]));
    f
}

/// Copies the job directories `tags` of `root` into a new root.
fn subset(root: &Path, tags: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for tag in tags {
        let to = dir.path().join("results").join(tag);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        let st = Command::new("cp")
            .arg("-a")
            .arg(root.join(tag))
            .arg(&to)
            .status()
            .expect("cp");
        assert!(st.success());
    }
    dir
}

fn tags(db: &mut Db, sql: &str) -> Vec<String> {
    db.texts(sql)
        .into_iter()
        .map(|r| r[0].clone().expect("tag"))
        .collect()
}

fn all_tags(db: &mut Db) -> Vec<String> {
    tags(db, "SELECT tag FROM tko_jobs ORDER BY tag")
}

/// The job-tree contents without the counts of rows deletion keeps
/// (machines, kernels, patches: shared with other jobs, never deleted).
fn tree_contents(db: &mut Db) -> Vec<Vec<Option<String>>> {
    contents(db)
        .into_iter()
        .filter(|r| {
            !matches!(
                r.first().and_then(|c| c.as_deref()),
                Some("tko_machines" | "tko_kernels" | "tko_patches")
            )
        })
        .collect()
}

/// Rows of every table that name a job no longer in `tko_jobs`.
fn orphans(db: &mut Db) -> i64 {
    let mut n = 0;
    for (table, col) in [
        ("tko_tests", "job_idx"),
        ("tko_test_attributes", "job_idx"),
        ("tko_iteration_attributes", "job_idx"),
        ("tko_iteration_result", "job_idx"),
        ("tko_job_keyvals", "job_id"),
        ("tko_diagnostics", "job_idx"),
        ("tko_test_labels_tests", "job_idx"),
        ("tko_job_machines", "job_idx"),
    ] {
        n += db.int(&format!(
            "SELECT count(*) FROM {table} WHERE {col} NOT IN (SELECT job_idx FROM tko_jobs)"
        ));
    }
    n += db.int(
        "SELECT count(*) FROM tko_test_attributes WHERE test_idx NOT IN \
         (SELECT test_idx FROM tko_tests)",
    );
    n += db.int(
        "SELECT count(*) FROM tko_test_labels_tests WHERE test_id NOT IN \
         (SELECT test_idx FROM tko_tests)",
    );
    n
}

/// Everything a run could write, for "wrote nothing" checks.
fn everything(db: &mut Db) -> Vec<Vec<Option<String>>> {
    let mut out = contents(db);
    for sql in [
        "SELECT tag, CAST(job_idx AS TEXT), source_path, fingerprint, outcome, \
            CAST(loaded_at AS TEXT), CAST(tests AS TEXT) FROM tko_ingest_ledger ORDER BY tag",
        "SELECT tag, signature, fingerprint FROM tko_scan_state ORDER BY tag",
        "SELECT CAST(job_idx AS TEXT), CAST(machine_idx AS TEXT), newest, machine_group, owner \
         FROM tko_job_machines ORDER BY job_idx",
        "SELECT hostname, machine_group, owner FROM tko_machines ORDER BY hostname",
        "SELECT CAST(test_id AS TEXT), CAST(testlabel_id AS TEXT) FROM tko_test_labels_tests \
         ORDER BY 1, 2",
        "SELECT CAST(test_idx AS TEXT), attribute, value FROM tko_test_attributes \
         WHERE user_created = (1 = 1) ORDER BY 1, 2",
    ] {
        out.extend(db.texts(sql));
    }
    out
}

/// Adds a user label link and a user attribute to the first test of each
/// job in `tags` (as the Autotest frontend does).
fn label_tests(db: &mut Db, tags: &[&str]) {
    db.exec("INSERT INTO tko_test_labels (name, description) VALUES ('triaged', 'by hand')");
    for tag in tags {
        let test = format!(
            "(SELECT min(test_idx) FROM tko_tests WHERE job_idx = \
             (SELECT job_idx FROM tko_jobs WHERE tag = '{tag}'))"
        );
        db.exec(&format!(
            "INSERT INTO tko_test_labels_tests (job_idx, testlabel_id, test_id) \
             SELECT job_idx, (SELECT id FROM tko_test_labels WHERE name = 'triaged'), test_idx \
             FROM tko_tests WHERE test_idx = {test}; \
             INSERT INTO tko_test_attributes (job_idx, test_idx, attribute, value, user_created) \
             SELECT job_idx, test_idx, 'note', 'flaky disk', (1 = 1) FROM tko_tests \
             WHERE test_idx = {test};"
        ));
    }
}

fn ledger_outcome(db: &mut Db, tag: &str) -> Vec<Vec<Option<String>>> {
    db.texts(&format!(
        "SELECT outcome, CAST(job_idx AS TEXT) FROM tko_ingest_ledger WHERE tag = '{tag}'"
    ))
}

fn delete_removes_exactly_the_chosen_jobs(backend: Backend) -> TestResult {
    let t = tree(24, 4);
    let root = t.path().join("results");
    let f = loaded(backend, &root);
    let mut db = Db::open(&f);
    let every = all_tags(&mut db);
    let doomed: Vec<String> = every.iter().step_by(3).cloned().collect();
    let kept: Vec<String> = every
        .iter()
        .filter(|t| !doomed.contains(t))
        .cloned()
        .collect();
    label_tests(&mut db, &[doomed[0].as_str(), kept[0].as_str()]);
    let machines = db.int("SELECT count(*) FROM tko_machines");
    let kernels = db.int("SELECT count(*) FROM tko_kernels");
    let tests_doomed = db.int(&format!(
        "SELECT count(*) FROM tko_tests t JOIN tko_jobs j ON j.job_idx = t.job_idx \
         WHERE j.tag IN ({})",
        doomed
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut args = vec!["delete", "--batch", "3", "--db", f.url.as_str()];
    args.extend(doomed.iter().map(String::as_str));
    let out = ok(&tko(&args));
    for tag in &doomed {
        assert!(out.contains(&format!("deleted {tag} (job_idx ")), "{out}");
    }
    assert!(
        out.contains(&format!(
            "deleted {} job(s) from {}: {tests_doomed} tests",
            doomed.len(),
            f.url
        )),
        "{out}"
    );
    assert!(out.contains(", 1 user label links"), "{out}");

    // The rest equals a warehouse loaded with the kept jobs only (machine
    // rows from the newest remaining job included), plus the kept job's
    // user label and attribute.
    let s = subset(&root, &kept);
    let reference = loaded(backend, &s.path().join("results"));
    let mut want_db = Db::open(&reference);
    label_tests(&mut want_db, &[kept[0].as_str()]);
    assert_eq!(tree_contents(&mut db), tree_contents(&mut want_db));
    assert_eq!(all_tags(&mut db), kept);
    assert_eq!(orphans(&mut db), 0);
    assert_eq!(db.int("SELECT count(*) FROM tko_test_labels_tests"), 1);
    assert_eq!(
        db.int("SELECT count(*) FROM tko_test_attributes WHERE user_created = (1 = 1)"),
        1
    );
    // Shared rows stay.
    assert_eq!(db.int("SELECT count(*) FROM tko_machines"), machines);
    assert_eq!(db.int("SELECT count(*) FROM tko_kernels"), kernels);
    // Our own tables: ledger says deleted, scan state and job machines go.
    for tag in &doomed {
        assert_eq!(
            ledger_outcome(&mut db, tag),
            vec![vec![Some("deleted".to_string()), None]]
        );
    }
    assert_eq!(
        db.int("SELECT count(*) FROM tko_scan_state"),
        kept.len() as i64
    );
    assert_eq!(
        db.int("SELECT count(*) FROM tko_job_machines"),
        kept.len() as i64
    );

    // A tag not in the warehouse: reported, exit 1, nothing else touched.
    let before = everything(&mut db);
    let out = tko(&["delete", "--db", &f.url, "no-such/job", &doomed[0]]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no job \"no-such/job\""), "{err}");
    assert!(err.contains(&format!("no job {:?}", doomed[0])), "{err}");
    assert_eq!(everything(&mut db), before);
    Ok(())
}

#[test]
fn sqlite_delete_removes_exactly_the_chosen_jobs() -> TestResult {
    delete_removes_exactly_the_chosen_jobs(Backend::Sqlite)
}

#[test]
fn pg_delete_removes_exactly_the_chosen_jobs() -> TestResult {
    delete_removes_exactly_the_chosen_jobs(Backend::Postgres)
}

/// The finished time (as stored text) of the `n`th oldest job.
fn nth_finished(db: &mut Db, n: usize) -> String {
    let times: Vec<String> = tags(
        db,
        "SELECT CAST(finished_time AS TEXT) FROM tko_jobs ORDER BY finished_time",
    );
    times[n].clone()
}

fn prune_by_date_and_label(backend: Backend) -> TestResult {
    let t = tree(30, 5);
    let root = t.path().join("results");
    let f = loaded(backend, &root);
    let mut db = Db::open(&f);
    let cut = nth_finished(&mut db, 12);
    let cut = &cut[..19]; // YYYY-MM-DD HH:MM:SS
    let label = tags(&mut db, "SELECT label FROM tko_jobs ORDER BY finished_time")[0].clone();
    let glob = format!("?{}", &label[1..]);
    let doomed = tags(
        &mut db,
        &format!(
            "SELECT tag FROM tko_jobs WHERE finished_time < '{cut}' AND label = '{label}' \
             ORDER BY tag"
        ),
    );
    assert!(!doomed.is_empty());
    let others_before_cut = db.int(&format!(
        "SELECT count(*) FROM tko_jobs WHERE finished_time < '{cut}' AND label <> '{label}'"
    ));
    assert!(others_before_cut > 0, "the label must narrow the prune");

    // Dry run: lists exactly these jobs, writes nothing.
    let before = everything(&mut db);
    let dry = ok(&tko(&[
        "prune",
        "--before",
        cut,
        "--label",
        &glob,
        "--dry-run",
        "--db",
        &f.url,
    ]));
    assert_eq!(everything(&mut db), before);
    let listed: Vec<&str> = dry
        .lines()
        .filter_map(|l| l.strip_prefix("would delete "))
        .filter_map(|l| l.split(" (job_idx").next())
        .collect();
    assert_eq!(listed, doomed);
    assert!(
        dry.contains(&format!("dry run: would delete {} job(s)", doomed.len())),
        "{dry}"
    );

    let out = ok(&tko(&[
        "prune", "--before", cut, "--label", &glob, "--db", &f.url,
    ]));
    // The real run removes what the dry run said, with the same counts.
    assert_eq!(
        out.replace("deleted", "would delete"),
        dry.replace("dry run: ", "")
    );
    let every: Vec<String> = before_tags(&root);
    let kept: Vec<String> = every.into_iter().filter(|t| !doomed.contains(t)).collect();
    let s = subset(&root, &kept);
    let reference = loaded(backend, &s.path().join("results"));
    assert_eq!(
        tree_contents(&mut db),
        tree_contents(&mut Db::open(&reference))
    );
    assert_eq!(orphans(&mut db), 0);

    // Nothing left to prune: exit 0, nothing written.
    let before = everything(&mut db);
    let again = ok(&tko(&[
        "prune", "--before", cut, "--label", &glob, "--db", &f.url,
    ]));
    assert!(again.contains("deleted 0 job(s)"), "{again}");
    assert_eq!(everything(&mut db), before);

    // Bad dates are errors (exit 2), with the flag named.
    let bad = tko(&["prune", "--before", "2011-02-30", "--db", &f.url]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--before"));
    Ok(())
}

/// Every job tag of a generated root (level 2).
fn before_tags(root: &Path) -> Vec<String> {
    let (dirs, _) = tko::discover::find_jobs(&[root.to_path_buf()], 2);
    let mut t: Vec<String> = dirs.into_iter().map(|d| d.tag).collect();
    t.sort();
    t
}

#[test]
fn sqlite_prune_by_date_and_label() -> TestResult {
    prune_by_date_and_label(Backend::Sqlite)
}

#[test]
fn pg_prune_by_date_and_label() -> TestResult {
    prune_by_date_and_label(Backend::Postgres)
}

fn later_backfill_does_not_reload(backend: Backend) -> TestResult {
    let t = tree(20, 3);
    let root = t.path().join("results");
    let f = loaded(backend, &root);
    let mut db = Db::open(&f);
    let want_full = tree_contents(&mut db);
    let cut = nth_finished(&mut db, 8);
    ok(&tko(&["prune", "--before", &cut[..19], "--db", &f.url]));
    let pruned = tree_contents(&mut db);
    assert_ne!(pruned, want_full);
    let gone = 20 - all_tags(&mut db).len();
    assert!(gone >= 5, "{gone}");

    // Backfill: nothing comes back, the summary says why.
    let out = backfill(&f.url, &root, &["--format", "json"]);
    let text = ok(&out);
    let v: serde_json::Value = serde_json::from_str(text.trim())?;
    assert_eq!(v["deleted_earlier"], gone);
    assert_eq!(v["inserted"], 0);
    assert_eq!(tree_contents(&mut db), pruned);
    let out = tko(&[
        "backfill",
        "--level",
        "2",
        "--db",
        &f.url,
        root.to_str().expect("utf-8"),
    ]);
    let text = ok(&out);
    assert!(
        text.contains(&format!(
            "{gone} job(s) deleted earlier (tko delete/prune), skipped"
        )),
        "{text}"
    );
    assert_eq!(tree_contents(&mut db), pruned);
    // Dry run agrees: nothing would be loaded.
    let dry = ok(&backfill(&f.url, &root, &["--dry-run"]));
    assert!(!dry.contains("would load"), "{dry}");
    // `tko load` of one deleted job skips it too.
    let victim = tags(
        &mut db,
        "SELECT tag FROM tko_ingest_ledger WHERE outcome = 'deleted' ORDER BY tag",
    )[0]
    .clone();
    let job_dir = root.join(&victim);
    ok(&tko(&[
        "load",
        "--quiet",
        "--level",
        "2",
        "--db",
        &f.url,
        job_dir.to_str().expect("utf-8"),
    ]));
    assert_eq!(tree_contents(&mut db), pruned);

    // --force brings them back: the warehouse equals the full load again.
    ok(&backfill(&f.url, &root, &["--force"]));
    assert_eq!(tree_contents(&mut db), want_full);
    assert_eq!(
        db.int("SELECT count(*) FROM tko_ingest_ledger WHERE outcome = 'loaded'"),
        20
    );
    Ok(())
}

#[test]
fn sqlite_later_backfill_does_not_reload_pruned_jobs() -> TestResult {
    later_backfill_does_not_reload(Backend::Sqlite)
}

#[test]
fn pg_later_backfill_does_not_reload_pruned_jobs() -> TestResult {
    later_backfill_does_not_reload(Backend::Postgres)
}

/// Per job tag: (job_idx, rows per job-tree table), as loaded.
fn per_job(db: &mut Db) -> BTreeMap<String, (i64, Vec<i64>)> {
    let mut out = BTreeMap::new();
    for r in db.texts("SELECT tag, CAST(job_idx AS TEXT) FROM tko_jobs") {
        let tag = r[0].clone().expect("tag");
        let idx: i64 = r[1].as_deref().expect("idx").parse().expect("int");
        out.insert(tag, (idx, job_rows(db, idx)));
    }
    out
}

fn job_rows(db: &mut Db, idx: i64) -> Vec<i64> {
    [
        ("tko_tests", "job_idx"),
        ("tko_test_attributes", "job_idx"),
        ("tko_iteration_attributes", "job_idx"),
        ("tko_iteration_result", "job_idx"),
        ("tko_job_keyvals", "job_id"),
        ("tko_diagnostics", "job_idx"),
        ("tko_job_machines", "job_idx"),
        ("tko_jobs", "job_idx"),
    ]
    .iter()
    .map(|(t, c)| db.int(&format!("SELECT count(*) FROM {t} WHERE {c} = {idx}")))
    .collect()
}

fn sigkill_mid_prune_leaves_jobs_whole_or_gone(backend: Backend) -> TestResult {
    let t = tree(240, 20);
    let root = t.path().join("results");
    let f = loaded(backend, &root);
    let mut db = Db::open(&f);
    let want = per_job(&mut db);
    assert_eq!(want.len(), 240);

    let mut child = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args([
            "prune",
            "--before",
            "2100-01-01",
            "--batch",
            "1",
            "--db",
            &f.url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for _ in 0..5 {
        let l = lines.next().expect("a deleted job")?;
        assert!(l.starts_with("deleted "), "{l}");
    }
    child.kill()?; // SIGKILL
    child.wait()?;

    let now = per_job(&mut db);
    assert!(now.len() <= 235, "{} jobs left", now.len());
    assert!(!now.is_empty(), "the kill came too late: every job deleted");
    for (tag, (idx, rows)) in &want {
        match now.get(tag) {
            Some(have) => assert_eq!(have, &(*idx, rows.clone()), "{tag} not whole"),
            None => {
                assert_eq!(job_rows(&mut db, *idx), vec![0; 8], "{tag} not gone");
                assert_eq!(
                    ledger_outcome(&mut db, tag),
                    vec![vec![Some("deleted".to_string()), None]],
                    "{tag}"
                );
            }
        }
    }
    assert_eq!(orphans(&mut db), 0);

    // A rerun completes.
    let out = ok(&tko(&["prune", "--before", "2100-01-01", "--db", &f.url]));
    assert!(
        out.contains(&format!("deleted {} job(s)", now.len())),
        "{out}"
    );
    for t in [
        "tko_jobs",
        "tko_tests",
        "tko_test_attributes",
        "tko_iteration_attributes",
        "tko_iteration_result",
        "tko_job_keyvals",
        "tko_job_machines",
        "tko_scan_state",
    ] {
        assert_eq!(db.int(&format!("SELECT count(*) FROM {t}")), 0, "{t}");
    }
    assert_eq!(
        db.int("SELECT count(*) FROM tko_ingest_ledger WHERE outcome = 'deleted'"),
        240
    );
    Ok(())
}

#[test]
fn sqlite_sigkill_mid_prune_leaves_jobs_whole_or_gone() -> TestResult {
    sigkill_mid_prune_leaves_jobs_whole_or_gone(Backend::Sqlite)
}

#[test]
fn pg_sigkill_mid_prune_leaves_jobs_whole_or_gone() -> TestResult {
    sigkill_mid_prune_leaves_jobs_whole_or_gone(Backend::Postgres)
}
