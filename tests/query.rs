//! The read commands (`export`, `stats`, `summary`, `diagnostics`,
//! `db status`) as a user runs them: real `tko` processes on a real SQLite
//! file and on the throwaway PostgreSQL (`support::pg`), over the bundled
//! example tree or small job trees written here. Each behaviour is checked
//! on both stores, and where both answer, the answers are compared.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{fresh, Backend, Db, Fresh, TestResult};

const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

fn tko(args: &[&str], db: &str, cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .arg("--db")
        .arg(db)
        .current_dir(cwd)
        .env_remove("TKO_DB")
        .output()
        .expect("run tko")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/example-results")
}

/// A fresh warehouse of `backend` with `root` loaded (`--level 2`).
fn loaded(backend: Backend, root: &Path) -> Fresh {
    let f = fresh(backend);
    let root_arg = root.to_str().expect("utf-8 path");
    let out = tko(&["load", "--quiet", "--level", "2", root_arg], &f.url, root);
    // `load` exits 1 on the example's deliberately broken jobs.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "load: {}",
        stderr(&out)
    );
    f
}

/// One test of a hand-written job: name, status word, perf keyvals of
/// one iteration.
struct T<'a> {
    name: &'a str,
    status: &'a str,
    perf: Vec<(String, String)>,
}

fn t<'a>(name: &'a str, status: &'a str) -> T<'a> {
    T {
        name,
        status,
        perf: Vec::new(),
    }
}

/// Writes job `root/<id>-u/<host>` (label `l<id>`) with the given tests.
fn write_job(root: &Path, id: u32, host: &str, tests: &[T<'_>]) {
    write_labeled_job(root, id, host, &format!("l{id}"), tests);
}

/// Writes job `root/<id>-u/<host>` with the given label and tests; a perf
/// entry with an empty key starts the next iteration.
fn write_labeled_job(root: &Path, id: u32, host: &str, label: &str, tests: &[T<'_>]) {
    let dir = root.join(format!("{id}-u")).join(host);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("keyval"),
        format!(
            "hostname={host}\njob_started=1300000000\nlabel={label}\nstatus_version=1\nuser=u\n"
        ),
    )
    .expect("keyval");
    let mut log =
        String::from("START\t----\t----\ttimestamp=1300000001\tlocaltime=Mar 13 07:06:41\t\n");
    for (i, test) in tests.iter().enumerate() {
        let ts = 1_300_000_002 + u64::from(id) * 1000 + i as u64;
        log.push_str(&format!(
            "\tSTART\t{n}\t{n}\ttimestamp={ts}\tlocaltime=Mar 13 07:06:42\t\n\
             \t\t{s}\t{n}\t{n}\ttimestamp={ts}\tlocaltime=Mar 13 07:06:42\tdone\n\
             \tEND {s}\t{n}\t{n}\ttimestamp={ts}\tlocaltime=Mar 13 07:06:42\t\n",
            n = test.name,
            s = test.status
        ));
        if !test.perf.is_empty() {
            let res = dir.join(test.name).join("results");
            std::fs::create_dir_all(&res).expect("mkdir results");
            let kv: String = test
                .perf
                .iter()
                .map(|(k, v)| {
                    if k.is_empty() {
                        "\n".to_owned()
                    } else {
                        format!("{k}{{perf}}={v}\n")
                    }
                })
                .collect();
            std::fs::write(res.join("keyval"), kv).expect("perf keyval");
        }
    }
    log.push_str("END GOOD\t----\t----\ttimestamp=1300000100\tlocaltime=Mar 13 07:08:20\t\n");
    std::fs::write(dir.join("status.log"), log).expect("status.log");
}

// ------------------------------------------------------------ dates

/// Impossible dates are refused before any query, naming the value, and
/// the same way on both stores (SQLite used to return rows, PostgreSQL to
/// fail after the CSV header).
#[test]
fn impossible_dates_are_refused_before_any_query() -> TestResult {
    for backend in BOTH {
        let f = loaded(backend, &example_root());
        let cwd = tempfile::tempdir()?;
        for (flag, value) in [
            ("--since", "2011-02-30"),
            ("--until", "2011-02-29"),
            ("--since", "0000-01-01"),
            ("--until", "2011-04-31 10:00"),
            ("--since", "2011-03-13 24:00"),
        ] {
            for cmd in [&["export", "tests"][..], &["stats"][..]] {
                let mut args = cmd.to_vec();
                args.extend([flag, value]);
                let out = tko(&args, &f.url, cwd.path());
                assert_eq!(out.status.code(), Some(2), "{backend:?} {args:?}");
                assert_eq!(stdout(&out), "", "{backend:?} {args:?}: no partial output");
                let err = stderr(&out);
                assert!(
                    err.contains(flag) && err.contains(&format!("{value:?}")),
                    "{backend:?} {args:?}: {err}"
                );
            }
        }
        // A real leap day is fine.
        let out = tko(
            &["export", "tests", "--since", "2012-02-29"],
            &f.url,
            cwd.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    Ok(())
}

#[test]
fn help_says_which_time_zone() -> TestResult {
    let cwd = tempfile::tempdir()?;
    for cmd in ["export", "stats", "diagnostics"] {
        let out = tko(&[cmd, "--help"], "sqlite:x.db", cwd.path());
        let text = stdout(&out);
        for line in ["--since", "--until"] {
            let l = text
                .lines()
                .skip_while(|l| !l.contains(line))
                .take(3)
                .collect::<String>();
            assert!(l.contains("UTC"), "{cmd} {line}: {l}");
        }
    }
    Ok(())
}

// ------------------------------------------------------------ status words

#[test]
fn unknown_status_lists_the_valid_words() -> TestResult {
    let f = loaded(Backend::Sqlite, &example_root());
    let cwd = tempfile::tempdir()?;
    let out = tko(
        &["export", "tests", "--status", "GOOD,PASS"],
        &f.url,
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("\"PASS\""), "{err}");
    for w in [
        "GOOD", "FAIL", "ERROR", "ABORT", "WARN", "TEST_NA", "NOSTATUS", "ALERT", "RUNNING", "BUG",
    ] {
        assert!(err.contains(w), "{w} missing: {err}");
    }
    assert_eq!(stdout(&out), "");
    Ok(())
}

// ------------------------------------------------------------ no partial output

/// An export whose statement fails writes no header to stdout, and with
/// `--out FILE` leaves no file (and an existing file untouched).
#[test]
fn a_failed_export_writes_nothing() -> TestResult {
    for backend in BOTH {
        let f = loaded(backend, &example_root());
        Db::open(&f).exec(match backend {
            Backend::Postgres => "DROP TABLE tko_iteration_result CASCADE",
            Backend::Sqlite => "DROP TABLE tko_iteration_result",
        });
        let cwd = tempfile::tempdir()?;
        for format in ["csv", "json"] {
            let out = tko(&["export", "perf", "--format", format], &f.url, cwd.path());
            assert_eq!(out.status.code(), Some(2), "{backend:?}");
            assert_eq!(stdout(&out), "", "{backend:?} {format}: header written");
            let out = tko(
                &["export", "perf", "--format", format, "--out", "perf.out"],
                &f.url,
                cwd.path(),
            );
            assert_eq!(out.status.code(), Some(2), "{backend:?}");
            let left: Vec<_> = std::fs::read_dir(cwd.path())?.collect();
            assert!(left.is_empty(), "{backend:?}: left behind {left:?}");
        }
        std::fs::write(cwd.path().join("keep.csv"), "old\n")?;
        let out = tko(&["export", "perf", "--out", "keep.csv"], &f.url, cwd.path());
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            std::fs::read_to_string(cwd.path().join("keep.csv"))?,
            "old\n"
        );
        assert_eq!(std::fs::read_dir(cwd.path())?.count(), 1);
        // A good export to --out replaces the file whole.
        let out = tko(&["export", "jobs", "--out", "keep.csv"], &f.url, cwd.path());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = std::fs::read_to_string(cwd.path().join("keep.csv"))?;
        assert!(text.starts_with("job_tag,afe_job_id,"), "{text}");
        assert_eq!(std::fs::read_dir(cwd.path())?.count(), 1);
    }
    Ok(())
}

/// Ctrl-C during `export --out FILE` leaves no file: the export waits on
/// a locked table, the temporary file exists, SIGINT removes it.
#[test]
fn an_interrupted_export_leaves_no_file() -> TestResult {
    let f = loaded(Backend::Postgres, &example_root());
    let mut lock = postgres::Client::connect(&f.url, postgres::NoTls)?;
    let mut tx = lock.transaction()?;
    tx.batch_execute("LOCK TABLE tko_tests IN ACCESS EXCLUSIVE MODE")?;
    let cwd = tempfile::tempdir()?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["export", "tests", "--out", "tests.csv", "--db", &f.url])
        .current_dir(cwd.path())
        .env_remove("TKO_DB")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_dir(cwd.path())?.count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The export is blocked on the lock; give it a moment to be inside the query.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = i32::try_from(child.id())?;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.wait()?;
    assert_eq!(status.code(), Some(130));
    let left: Vec<_> = std::fs::read_dir(cwd.path())?.collect();
    assert!(left.is_empty(), "left behind {left:?}");
    tx.rollback()?;
    Ok(())
}

// ------------------------------------------------------------ wide perf

fn header(csv: &str) -> Vec<String> {
    csv.lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Perf keys equal to fixed column names get a `perf:` prefix, so JSON
/// keys and CSV headers are unique.
#[test]
fn wide_perf_column_names_are_unique() -> TestResult {
    let root = tempfile::tempdir()?;
    let perf: Vec<(String, String)> = ["job_tag", "iteration", "perf:x", "x", "status"]
        .iter()
        .enumerate()
        .map(|(i, k)| ((*k).to_owned(), format!("{}", i + 1)))
        .collect();
    write_job(
        root.path(),
        1,
        "h1",
        &[T {
            name: "bench",
            status: "GOOD",
            perf,
        }],
    );
    let mut outs = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let out = tko(&["export", "perf", "--wide"], &f.url, root.path());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let csv = stdout(&out);
        let h = header(&csv);
        let mut uniq = h.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), h.len(), "{backend:?}: {h:?}");
        assert_eq!(
            &h[9..],
            [
                "perf:iteration",
                "perf:job_tag",
                "perf:perf:x",
                "perf:status",
                "x"
            ],
            "{backend:?}"
        );
        let out = tko(
            &["export", "perf", "--wide", "--format", "json"],
            &f.url,
            root.path(),
        );
        let row: serde_json::Value = serde_json::from_str(stdout(&out).trim())?;
        assert_eq!(row["job_tag"], "1-u/h1");
        assert_eq!(row["perf:job_tag"], 1);
        assert_eq!(row["iteration"], 1);
        assert_eq!(row["perf:iteration"], 2);
        outs.push(csv);
    }
    assert_eq!(outs[0], outs[1]);
    Ok(())
}

/// More perf keys than PostgreSQL's 1,664 target-list entries: the wide
/// export works on both stores, with identical output.
#[test]
fn wide_perf_past_the_postgres_target_list_limit() -> TestResult {
    let root = tempfile::tempdir()?;
    let keys = 1_700;
    let perf: Vec<(String, String)> = (0..keys)
        .map(|i| (format!("k{i:04}"), format!("{i}.5")))
        .collect();
    write_job(
        root.path(),
        1,
        "h1",
        &[T {
            name: "bench",
            status: "GOOD",
            perf,
        }],
    );
    let mut outs = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let out = tko(&["export", "perf", "--wide"], &f.url, root.path());
        assert_eq!(out.status.code(), Some(0), "{backend:?}: {}", stderr(&out));
        let csv = stdout(&out);
        assert_eq!(header(&csv).len(), 9 + keys, "{backend:?}");
        assert_eq!(csv.lines().count(), 2, "{backend:?}");
        assert!(csv.trim_end().ends_with(",1698.5,1699.5"), "{backend:?}");
        outs.push(csv);
    }
    assert_eq!(outs[0], outs[1]);
    Ok(())
}

/// A very long glob gets the same clear refusal on both stores (SQLite
/// refuses patterns over 50,000 bytes; PostgreSQL did not).
#[test]
fn very_long_globs_are_refused_alike() -> TestResult {
    let glob = "a".repeat(60_000);
    let mut errs = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, &example_root());
        let cwd = tempfile::tempdir()?;
        let out = tko(&["export", "tests", "--test", &glob], &f.url, cwd.path());
        assert_eq!(out.status.code(), Some(2), "{backend:?}");
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert!(err.contains("--test") && err.contains("4096"), "{err}");
        errs.push(err.replace(&f.url, "URL"));
        // At the limit, both answer (no rows).
        let ok = "b".repeat(4096);
        let out = tko(&["export", "tests", "--test", &ok], &f.url, cwd.path());
        assert_eq!(out.status.code(), Some(0), "{backend:?}: {}", stderr(&out));
    }
    assert_eq!(errs[0], errs[1]);
    Ok(())
}

// ------------------------------------------------------------ stats

/// Hosts `h01`..`h12` each run their own test once (GOOD); `t` runs GOOD
/// on `ha`, FAIL on `hb`, and both GOOD and FAIL on `hc`, all with an
/// empty machine group.
fn stats_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (1..=12).map(|i| format!("only_h{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        write_job(
            root.path(),
            100 + i as u32,
            &format!("h{:02}", i + 1),
            &[t(name, "GOOD")],
        );
    }
    write_job(root.path(), 1, "ha", &[t("t", "GOOD")]);
    write_job(root.path(), 2, "hb", &[t("t", "FAIL")]);
    write_job(root.path(), 3, "hc", &[t("t", "GOOD")]);
    write_job(root.path(), 4, "hc", &[t("t", "FAIL")]);
    root
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).expect("json")
}

/// `--top N` cuts each list (default 10) and says how many were left out.
#[test]
fn stats_top_cuts_lists_and_says_how_many_more() -> TestResult {
    let root = stats_tree();
    let mut all = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let cwd = root.path();
        let out = tko(&["stats"], &f.url, cwd);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let machines: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "by machine")
            .skip(2)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(machines.len(), 11, "{backend:?}: {machines:?}");
        assert_eq!(machines[10], "... and 5 more (--top 0 lists all)");
        assert!(text.contains("... and 6 more"), "labels: {text}");
        let j = json(&tko(
            &["stats", "--top", "3", "--format", "json"],
            &f.url,
            cwd,
        ));
        assert_eq!(j["by_machine"].as_array().map(Vec::len), Some(3));
        assert_eq!(j["more"]["by_machine"], 12);
        assert_eq!(j["more"]["most_executed"], 12);
        let j = json(&tko(
            &["stats", "--top", "0", "--format", "json"],
            &f.url,
            cwd,
        ));
        assert_eq!(j["by_machine"].as_array().map(Vec::len), Some(15));
        assert_eq!(j["most_executed"].as_array().map(Vec::len), Some(15));
        assert!(j.get("more").is_none(), "{j}");
        all.push(j);
    }
    assert_eq!(all[0], all[1]);
    Ok(())
}

/// With an empty machine group, runs on different machines are not
/// compared: `t` is flaky on `hc` only.
#[test]
fn flaky_tests_never_lump_hosts_without_a_group() -> TestResult {
    let root = stats_tree();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let j = json(&tko(&["stats", "--format", "json"], &f.url, root.path()));
        let flaky = j["flaky"].as_array().ok_or("flaky list")?;
        assert_eq!(flaky.len(), 1, "{backend:?}: {flaky:?}");
        assert_eq!(flaky[0]["test"], "t");
        assert_eq!(flaky[0]["machine"], "hc");
        assert_eq!(flaky[0]["machine_group"], "");
        assert_eq!(
            (flaky[0]["passed"].as_u64(), flaky[0]["failed"].as_u64()),
            (Some(1), Some(1))
        );
    }
    Ok(())
}

// ------------------------------------------------------------ JSON for scripts

#[test]
fn summary_and_db_status_as_json() -> TestResult {
    let mut all = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, &example_root());
        let cwd = tempfile::tempdir()?;
        // One object per test (JSON Lines).
        let out = tko(
            &["summary", "400-gina/host5", "--format", "json"],
            &f.url,
            cwd.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l["job"] == "400-gina/host5"));
        let sum = |k: &str| lines.iter().filter_map(|l| l[k].as_u64()).sum::<u64>();
        assert_eq!((sum("passes"), sum("fails")), (1, 3));
        assert_eq!(lines.iter().filter(|l| l["running"] == true).count(), 1);
        assert_eq!(lines[2]["test"], "sleeptest");
        assert_eq!(lines[2]["last_status"], "GOOD");
        assert_eq!(lines[2]["information"], "completed successfully");
        assert_eq!(lines[2]["elapsed_s"], 2);
        assert_eq!(lines[2]["subdir"], "done");
        assert_eq!(lines[2]["running"], false);
        assert_eq!(lines[2]["status_time"], "2011-03-13 07:06:44");
        let keys: Vec<&str> = lines[2]
            .as_object()
            .ok_or("object")?
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = [
            "job",
            "test",
            "subdir",
            "passes",
            "fails",
            "elapsed_s",
            "starts",
            "running",
            "last_status",
            "information",
            "status_time",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        // A running test: elapsed from its start to the job's end.
        assert_eq!(lines[1]["test"], "CLIENT_JOB.0");
        assert_eq!(lines[1]["running"], true);
        assert_eq!(lines[1]["elapsed_s"], 50);
        all.push(serde_json::Value::Array(lines));
        let j = json(&tko(
            &["db", "status", "--format", "json"],
            &f.url,
            cwd.path(),
        ));
        assert_eq!(j["schema_version"], j["latest_version"]);
        let tables = j["tables"].as_array().ok_or("tables")?;
        let jobs = tables
            .iter()
            .find(|t| t["name"] == "tko_jobs")
            .ok_or("tko_jobs")?;
        assert_eq!(jobs["rows"], 8, "{backend:?}");
    }
    assert_eq!(all[0], all[1]);
    // A job directory read directly gives the same object.
    let cwd = tempfile::tempdir()?;
    let dir = example_root().join("400-gina/host5");
    let out = tko(
        &[
            "summary",
            "--level",
            "2",
            "--format",
            "json",
            dir.to_str().ok_or("path")?,
        ],
        "sqlite:unused.db",
        cwd.path(),
    );
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(serde_json::Value::Array(lines), all[0]);
    Ok(())
}

// ------------------------------------------------------------ diagnostics

#[test]
fn diagnostics_lists_what_the_parser_recorded() -> TestResult {
    let mut csvs = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, &example_root());
        let cwd = tempfile::tempdir()?;
        let out = tko(&["diagnostics"], &f.url, cwd.path());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("905-vic/host16: error: status.log:3: unknown status \"END PASS\""),
            "{text}"
        );
        assert!(
            text.contains("903-tina/host9: warning: perf/results/keyval:8: line 'weird{PERF}=1'"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        let out = tko(
            &["diagnostics", "--job", "905-*", "--format", "csv"],
            &f.url,
            cwd.path(),
        );
        let csv = stdout(&out);
        assert_eq!(
            csv,
            "job_tag,file,line,severity,message\n\
             905-vic/host16,status.log,3,error,\"unknown status \"\"END PASS\"\" \
             (Autotest's parser loses the job here); line ignored\"\n"
        );
        csvs.push(csv);
        let out = tko(
            &["diagnostics", "--format", "json", "--machine", "host14"],
            &f.url,
            cwd.path(),
        );
        let rows: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0]["line"], 8);
        assert_eq!(rows[0]["severity"], "warning");
        assert_eq!(rows[0]["file"], "perf/results/keyval");
        // Test filters keep jobs with a matching test.
        let out = tko(&["diagnostics", "--test", "t?"], &f.url, cwd.path());
        assert_eq!(stdout(&out).lines().count(), 1, "{backend:?}");
        let out = tko(
            &["diagnostics", "--test", "no such test"],
            &f.url,
            cwd.path(),
        );
        assert_eq!(stdout(&out), "", "{backend:?}");
    }
    assert_eq!(csvs[0], csvs[1]);
    Ok(())
}

// ------------------------------------------------------------ history

#[test]
fn history_lists_runs_newest_first_with_switches() -> TestResult {
    let root = stats_tree();
    let mut all = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let cwd = root.path();
        let j = json(&tko(&["history", "t", "--format", "json"], &f.url, cwd));
        let jobs: Vec<&str> = j["runs"]
            .as_array()
            .ok_or("runs")?
            .iter()
            .filter_map(|r| r["job"].as_str())
            .collect();
        assert_eq!(
            jobs,
            ["4-u/hc", "3-u/hc", "2-u/hb", "1-u/ha"],
            "{backend:?}"
        );
        assert_eq!(j["runs"][0]["status"], "FAIL");
        assert_eq!(j["runs"][0]["machine"], "hc");
        assert_eq!(j["runs"][0]["time"], "2011-03-13 08:13:22");
        assert_eq!(
            (j["passed"].as_u64(), j["failed"].as_u64()),
            (Some(2), Some(2))
        );
        assert_eq!(j["switches"], 3);
        let j = json(&tko(
            &["history", "t", "--machine", "hc", "--format", "json"],
            &f.url,
            cwd,
        ));
        assert_eq!(j["runs"].as_array().map(Vec::len), Some(2));
        assert_eq!(j["switches"], 1);
        let j = json(&tko(
            &["history", "t", "--last", "3", "--format", "json"],
            &f.url,
            cwd,
        ));
        assert_eq!(j["runs"].as_array().map(Vec::len), Some(3));
        assert_eq!(j["switches"], 2);
        // A glob character in TEST is literal.
        let j = json(&tko(&["history", "?", "--format", "json"], &f.url, cwd));
        assert_eq!(j["runs"].as_array().map(Vec::len), Some(0));
        let out = tko(&["history", "t"], &f.url, cwd);
        let text = stdout(&out);
        assert!(text.starts_with("TIME "), "{text}");
        assert!(
            text.ends_with("t: 4 runs, 2 passed, 2 failed, 3 pass/fail switches\n"),
            "{text}"
        );
        all.push(text);
    }
    assert_eq!(all[0], all[1]);
    Ok(())
}

// ------------------------------------------------------------ compare

/// Perf entries: `key` with each value in its own iteration.
fn iterations(key: &str, values: &[f64]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in values {
        if !out.is_empty() {
            out.push((String::new(), String::new()));
        }
        out.push((key.to_owned(), v.to_string()));
    }
    out
}

fn perf_test<'a>(name: &'a str, perf: Vec<(String, String)>) -> T<'a> {
    T {
        name,
        status: "GOOD",
        perf,
    }
}

/// BASE (label `base`): a GOOD, b FAIL, c FAIL, d GOOD, e GOOD twice with
/// `tput` around 100. NEW (label `new`): a FAIL, b GOOD, c ERROR, f GOOD, e
/// GOOD with `tput` around 120 and `lat` unchanged.
fn compare_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let mut e1 = iterations("tput", &[100.0, 101.0, 99.0, 100.0]);
    e1.push((String::new(), String::new()));
    e1.extend(iterations("lat", &[5.0, 5.1, 4.9]));
    write_labeled_job(
        root.path(),
        10,
        "h1",
        "base",
        &[
            t("a", "GOOD"),
            t("b", "FAIL"),
            t("c", "FAIL"),
            t("d", "GOOD"),
            perf_test("e", e1),
        ],
    );
    write_labeled_job(
        root.path(),
        11,
        "h1",
        "base",
        &[perf_test("e", iterations("tput", &[100.0, 100.5]))],
    );
    let mut e2 = iterations("tput", &[120.0, 121.0, 119.0, 120.0]);
    e2.push((String::new(), String::new()));
    e2.extend(iterations("lat", &[5.0, 5.05, 4.95]));
    write_labeled_job(
        root.path(),
        20,
        "h1",
        "new",
        &[
            t("a", "FAIL"),
            t("b", "GOOD"),
            t("c", "ERROR"),
            t("f", "GOOD"),
            perf_test("e", e2),
        ],
    );
    root
}

#[test]
fn compare_classes_tests_and_flags_perf_shifts() -> TestResult {
    let root = compare_tree();
    let mut all = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let cwd = root.path();
        let args = [
            "compare",
            "--base-label",
            "base",
            "--new-label",
            "new",
            "--test",
            "?",
        ];
        let mut json_args = args.to_vec();
        json_args.extend(["--format", "json"]);
        let out = tko(&json_args, &f.url, cwd);
        assert_eq!(out.status.code(), Some(1), "{backend:?}: {}", stderr(&out));
        let j: serde_json::Value = serde_json::from_str(&stdout(&out))?;
        assert_eq!(j["base"]["label"], "base");
        assert_eq!(j["base"]["jobs"], serde_json::json!(["10-u/h1", "11-u/h1"]));
        assert_eq!(j["new"]["jobs"], serde_json::json!(["20-u/h1"]));
        let classes: Vec<(String, String, u64, u64)> = j["tests"]
            .as_array()
            .ok_or("tests")?
            .iter()
            .map(|t| {
                (
                    t["test"].as_str().unwrap_or_default().to_owned(),
                    t["class"].as_str().unwrap_or_default().to_owned(),
                    t["base_runs"].as_u64().unwrap_or(99),
                    t["new_runs"].as_u64().unwrap_or(99),
                )
            })
            .collect();
        let want = [
            ("a", "regression", 1, 1),
            ("b", "fix", 1, 1),
            ("c", "still_failing", 1, 1),
            ("d", "missing", 1, 0),
            ("e", "unchanged", 2, 1),
            ("f", "new", 0, 1),
        ];
        let want: Vec<(String, String, u64, u64)> = want
            .iter()
            .map(|(a, b, c, d)| ((*a).to_owned(), (*b).to_owned(), *c, *d))
            .collect();
        assert_eq!(classes, want, "{backend:?}");
        assert_eq!(j["tests"][0]["base_status"], "GOOD");
        assert_eq!(j["tests"][0]["new_status"], "FAIL");
        assert_eq!(j["tests"][2]["new_status"], "ERROR");
        let perf = j["perf"].as_array().ok_or("perf")?;
        assert_eq!(perf.len(), 2, "{perf:?}");
        let (lat, tput) = (&perf[0], &perf[1]);
        assert_eq!(
            (lat["key"].as_str(), tput["key"].as_str()),
            (Some("lat"), Some("tput"))
        );
        // tput: base 100, 101, 99, 100, 100, 100.5; new 120, 121, 119, 120.
        assert_eq!(tput["base_n"], 6);
        assert_eq!(tput["new_n"], 4);
        let f64_of = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        assert!((f64_of(&tput["base_mean"]) - 100.083_333_333_333_33).abs() < 1e-9);
        assert!((f64_of(&tput["new_mean"]) - 120.0).abs() < 1e-12);
        assert!((f64_of(&tput["new_stddev"]) - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((f64_of(&tput["change_pct"]) - 19.900_083_263_946_71).abs() < 1e-6);
        assert_eq!(tput["direction"], "up");
        assert!(f64_of(&tput["p_value"]) < 1e-6, "{tput}");
        assert_eq!(tput["flagged"], true);
        assert_eq!(lat["change_pct"].as_f64(), Some(0.0));
        assert_eq!(lat["direction"], "same");
        assert!((f64_of(&lat["p_value"]) - 1.0).abs() < 1e-12, "{lat}");
        assert_eq!(lat["flagged"], false);
        all.push(j);
        let out = tko(&args, &f.url, cwd);
        assert_eq!(out.status.code(), Some(1));
        let text = stdout(&out);
        assert!(
            text.contains(
                "tests: 1 regression, 1 fix, 1 still failing, 1 new, 1 missing, 1 unchanged"
            ),
            "{text}"
        );
        assert!(text.contains("perf: 2 keys, 1 flagged"), "{text}");
        let mut csv_args = args.to_vec();
        csv_args.extend(["--format", "csv"]);
        let out = tko(&csv_args, &f.url, cwd);
        assert_eq!(out.status.code(), Some(1));
        let csv = stdout(&out);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 9, "{csv}");
        assert!(
            lines[0].starts_with("record,test,subdir,machine,class,"),
            "{csv}"
        );
        assert_eq!(lines[1], "test,a,a,,regression,GOOD,FAIL,1,1,,,,,,,,,,,");
        assert!(lines[8].starts_with("perf,e,e,,,,,,,tput,"), "{csv}");
        assert!(
            lines[8].ends_with(",up,") || lines[8].contains(",up,"),
            "{csv}"
        );
        assert!(lines[8].ends_with(",true"), "{csv}");
        all.push(serde_json::Value::String(csv));
        // The same set on both sides: nothing regressed, exit 0.
        let out = tko(
            &["compare", "--base-label", "new", "--new-label", "new"],
            &f.url,
            cwd,
        );
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        // A job tag selects one job; a missing side is an error.
        let out = tko(
            &["compare", "10-u/h1", "20-u/h1", "--test", "a"],
            &f.url,
            cwd,
        );
        assert_eq!(out.status.code(), Some(1));
        let out = tko(&["compare", "--base-label", "base"], &f.url, cwd);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("select new"), "{}", stderr(&out));
    }
    assert_eq!(all[..2], all[2..]);
    Ok(())
}

/// `--threshold` and `--alpha` decide what is flagged (and so the exit
/// status), `--machine` narrows both sets, bad values are errors (exit 2).
#[test]
fn compare_threshold_alpha_and_machine_narrowing() -> TestResult {
    let root = compare_tree();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let cwd = root.path();
        let run = |extra: &[&str]| {
            let mut a = vec![
                "compare",
                "--base-label",
                "base",
                "--new-label",
                "new",
                "--test",
                "e",
                "--format",
                "json",
            ];
            a.extend_from_slice(extra);
            tko(&a, &f.url, cwd)
        };
        let flagged = |o: &Output| -> Result<Vec<bool>, Box<dyn std::error::Error>> {
            let j: serde_json::Value = serde_json::from_str(&stdout(o))?;
            Ok(j["perf"]
                .as_array()
                .ok_or("perf")?
                .iter()
                .map(|p| p["flagged"] == true)
                .collect())
        };
        // tput moved +19.9 % with p < 1e-6: flagged by default.
        let out = run(&[]);
        assert_eq!(out.status.code(), Some(1), "{backend:?}: {}", stderr(&out));
        assert_eq!(flagged(&out)?, vec![false, true]);
        // As printed (serde_json's float parser may be off by one ulp).
        let text = stdout(&out);
        let p = text
            .split("\"p_value\": ")
            .nth(2)
            .and_then(|r| r.split([',', '\n']).next())
            .ok_or("p_value")?
            .to_owned();
        // A threshold above the change: nothing flagged, exit 0.
        let out = run(&["--threshold", "20"]);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert_eq!(flagged(&out)?, vec![false, false]);
        let out = run(&["--threshold", "19.8"]);
        assert_eq!(out.status.code(), Some(1));
        // p must be below alpha: alpha = p does not flag, just above does.
        let out = run(&["--alpha", &p]);
        assert_eq!(out.status.code(), Some(0), "alpha {p}: {}", stdout(&out));
        let above = format!("{:e}", p.parse::<f64>()? * 1.5);
        let out = run(&["--alpha", &above]);
        assert_eq!(out.status.code(), Some(1), "alpha {above}");
        // --machine narrows both sides: no job on h2.
        let out = run(&["--machine", "h2"]);
        assert_eq!(out.status.code(), Some(0));
        let j: serde_json::Value = serde_json::from_str(&stdout(&out))?;
        assert_eq!(j["base"]["machine"], "h2");
        assert_eq!(j["base"]["jobs"], serde_json::json!([]));
        assert_eq!(j["tests"], serde_json::json!([]));
        let out = run(&["--machine", "h?"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(flagged(&out)?, vec![false, true]);
        for bad in [
            ["--threshold", "-1"],
            ["--alpha", "0"],
            ["--alpha", "1"],
            ["--threshold", "NaN"],
        ] {
            let out = run(&bad);
            assert_eq!(out.status.code(), Some(2), "{bad:?}");
        }
    }
    Ok(())
}

/// Flakiness over history: `t` on `hx` runs GOOD FAIL GOOD FAIL GOOD GOOD
/// (4 switches), on `hy` GOOD GOOD GOOD FAIL FAIL FAIL (1 switch).
#[test]
fn stats_flaky_counts_switches_over_the_last_runs() -> TestResult {
    let root = tempfile::tempdir()?;
    for (i, s) in ["GOOD", "FAIL", "GOOD", "FAIL", "GOOD", "GOOD"]
        .iter()
        .enumerate()
    {
        write_job(root.path(), 1 + i as u32, "hx", &[t("t", s)]);
    }
    for (i, s) in ["GOOD", "GOOD", "GOOD", "FAIL", "FAIL", "FAIL"]
        .iter()
        .enumerate()
    {
        write_job(root.path(), 11 + i as u32, "hy", &[t("t", s)]);
    }
    let mut all = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, root.path());
        let cwd = root.path();
        let args = ["stats", "--flaky", "--test", "t", "--format", "json"];
        let j = json(&tko(&args, &f.url, cwd));
        assert_eq!(
            (j["last"].as_u64(), j["min_switches"].as_u64()),
            (Some(20), Some(3))
        );
        let flaky = j["flaky"].as_array().ok_or("flaky")?;
        assert_eq!(flaky.len(), 1, "{backend:?}: {j}");
        assert_eq!(flaky[0]["machine"], "hx");
        assert_eq!(flaky[0]["switches"], 4);
        assert_eq!(flaky[0]["runs"], 6);
        let mut a = args.to_vec();
        a.extend(["--last", "3", "--switches", "1"]);
        let j = json(&tko(&a, &f.url, cwd));
        let flaky = j["flaky"].as_array().ok_or("flaky")?;
        assert_eq!(flaky.len(), 1, "{backend:?}: {j}");
        assert_eq!(
            (flaky[0]["machine"].as_str(), flaky[0]["switches"].as_u64()),
            (Some("hx"), Some(1))
        );
        let mut a = args[..4].to_vec();
        a.extend(["--switches", "1"]);
        let text = stdout(&tko(&a, &f.url, cwd));
        assert!(
            text.contains("at least 1 pass/fail switches over their last 20 runs"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(
            rows[0].starts_with("t ") && rows[0].contains(" hx "),
            "{text}"
        );
        assert!(rows[0].trim_end().ends_with(" 4"), "{text}");
        all.push(j);
        // --last without --flaky is a usage error.
        let out = tko(&["stats", "--last", "3"], &f.url, cwd);
        assert_eq!(out.status.code(), Some(2));
    }
    assert_eq!(all[0], all[1]);
    Ok(())
}

/// `tko summary --running`: one summary per job with a RUNNING test.
#[test]
fn summary_of_running_jobs() -> TestResult {
    let mut all = Vec::new();
    for backend in BOTH {
        let f = loaded(backend, &example_root());
        let cwd = tempfile::tempdir()?;
        let out = tko(
            &["summary", "--running", "--format", "json"],
            &f.url,
            cwd.path(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let mut tags: Vec<&str> = lines.iter().filter_map(|l| l["job"].as_str()).collect();
        tags.dedup();
        assert_eq!(tags, ["400-gina/host5", "905-vic/host16"], "{backend:?}");
        let gina: Vec<_> = lines
            .iter()
            .filter(|l| l["job"] == "400-gina/host5")
            .collect();
        assert_eq!(gina.len(), 5);
        assert_eq!(gina.iter().filter(|l| l["running"] == true).count(), 1);
        let out = tko(&["summary", "--running"], &f.url, cwd.path());
        let text = stdout(&out);
        assert!(
            text.starts_with("400-gina/host5: 5 tests, 5 runs, 1 passed, 3 failed, 1 running\n"),
            "{text}"
        );
        // 905-vic has no finished time: its running test's elapsed time
        // runs to now, which may tick between the two backends.
        let stable: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("CLIENT_JOB.0"))
            .collect();
        all.push(stable.join("\n"));
        // A job and --running together are a usage error.
        let out = tko(
            &["summary", "--running", "400-gina/host5"],
            &f.url,
            cwd.path(),
        );
        assert_eq!(out.status.code(), Some(2));
    }
    assert_eq!(all[0], all[1]);
    Ok(())
}
