//! Hostile input: arbitrary bytes into every parser (property tests), and
//! whole job directories with broken files. Each must give diagnostics with
//! file and line, never a panic or a hang, and leave other jobs unaffected.

use proptest::prelude::*;
use std::fs;
use std::path::Path;
use tko::model::{Severity, Status};
use tko::parse::{self, v0, v1};

fn run_v1(bytes: &[u8]) -> v1::Output {
    let text = String::from_utf8_lossy(bytes);
    let mut m = v1::V1::new(v1::JobContext::default());
    m.process(text.split_inclusive('\n').zip(1..).map(|(l, n)| (n, l)));
    m.end()
}

/// Bytes that look like status logs: tabs, keywords and newlines are common.
fn log_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\t".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"START\t".to_vec()),
        Just(b"END GOOD\t".to_vec()),
        Just(b"END ABORT\t".to_vec()),
        Just(b"FAIL\t".to_vec()),
        Just(b"INFO\t".to_vec()),
        Just(b"----\t".to_vec()),
        Just(b"t1\t".to_vec()),
        Just(b"reboot\t".to_vec()),
        Just(b"timestamp=5\t".to_vec()),
        Just(b"kernel=2.6\tpatch0=a b c\t".to_vec()),
        Just(b"\r\0".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn keyval_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let k = parse::keyval::keyval(&bytes);
        for p in &k.problems {
            prop_assert!(p.line.is_some());
        }
    }

    #[test]
    fn iterations_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for version in [0, 1] {
            let it = parse::iteration::iterations(&bytes, version);
            for (i, iteration) in it.iterations.iter().enumerate() {
                prop_assert_eq!(iteration.index as usize, i + 1);
            }
        }
    }

    #[test]
    fn status_machines_never_panic_and_always_end_with_server_job(bytes in log_like()) {
        let out = run_v1(&bytes);
        prop_assert!(out.tests.iter().any(|t| t.testname == "SERVER_JOB" && t.status != Status::Running));
        let mut problems = Vec::new();
        let ks = v0::KernelSource::new(&v0::KernelFiles::default(), &mut problems);
        let _ = v0::parse(&bytes, &ks);
    }

    #[test]
    fn status_line_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        for version in [0, 1] {
            let _ = parse::line::status_line(&text, version);
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    fs::write(path, bytes).expect("write");
}

const GOOD_LOG: &[u8] = b"START\t----\t----\ttimestamp=10\t\n\
\tSTART\tt1\tt1\ttimestamp=11\t\n\
\tEND GOOD\tt1\tt1\ttimestamp=12\t\n\
END GOOD\t----\t----\ttimestamp=13\t\n";

#[test]
fn broken_files_give_diagnostics_and_other_jobs_still_parse(
) -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let r = root.path();
    // A clean job.
    write(&r.join("1-a/h1/keyval"), b"status_version=1\n");
    write(&r.join("1-a/h1/status.log"), GOOD_LOG);
    // Non-UTF-8, CRLF, NUL, a comment line in the keyval, a bad timestamp.
    write(
        &r.join("2-b/h2/keyval"),
        b"status_version=1\n# comment\nuser=b\xff\xfe\n",
    );
    let mut log = GOOD_LOG.to_vec();
    log.extend_from_slice(
        b"START\t----\t----\ttimestamp=1.5\t\r\n\tFAIL\tt\xfft\tt\x00\ttimestamp=20\tbad\n",
    );
    write(&r.join("2-b/h2/status.log"), &log);
    // A megabyte-long line and an unbalanced log.
    let mut long = b"START\t----\t----\ttimestamp=1\t\n\tSTART\tt\tt\t\n\t\tWARN\tt\tt\t".to_vec();
    long.extend(std::iter::repeat_n(b'x', 2 << 20));
    long.push(b'\n');
    write(&r.join("3-c/h3/keyval"), b"status_version=1\n");
    write(&r.join("3-c/h3/status.log"), &long);
    // A keyval that cannot be read (a symlink loop).
    fs::create_dir_all(r.join("4-d/h4"))?;
    std::os::unix::fs::symlink("keyval", r.join("4-d/h4/keyval"))?;
    write(&r.join("4-d/h4/status.log"), GOOD_LOG);
    // A symlink loop in the results root.
    std::os::unix::fs::symlink(r, r.join("loop"))?;

    let (dirs, errors) = tko::discover::find_jobs(&[r.to_path_buf()], 2);
    assert!(errors.is_empty(), "{errors:?}");
    let jobs: Vec<_> = tko::ingest::parse_jobs(&dirs)
        .into_iter()
        .collect::<Result<_, _>>()?;
    let tags: Vec<&str> = jobs.iter().map(|j| j.tag.as_str()).collect();
    assert_eq!(tags, ["1-a/h1", "2-b/h2", "3-c/h3", "4-d/h4"]);

    assert!(jobs[0].diagnostics.is_empty(), "{:?}", jobs[0].diagnostics);
    assert_eq!(jobs[0].tests.len(), 3);

    let d = &jobs[1].diagnostics;
    let has = |file: &str, line: Option<u32>, needle: &str| {
        d.iter()
            .any(|x| x.file == file && x.line == line && x.message.contains(needle))
    };
    assert!(has("keyval", Some(2), "invalid keyval line"), "{d:?}");
    assert!(has("keyval", Some(3), "UTF-8"), "{d:?}");
    assert!(has("status.log", Some(5), "not an integer"), "{d:?}");
    let failed = jobs[1]
        .tests
        .iter()
        .find(|t| t.status == Status::Fail)
        .expect("FAIL test kept");
    assert_eq!(failed.testname, "t\u{0}");
    // Not UTF-8: read as Latin-1, losslessly.
    let subdir = failed.subdir.as_deref().expect("subdir");
    assert_eq!(tko::text::stored(subdir), "t\u{ff}t");
    assert_eq!(&*tko::text::bytes(subdir), b"t\xfft");

    // The unbalanced job is closed by implicit aborts, the long reason kept.
    let t = jobs[2]
        .tests
        .iter()
        .find(|t| t.testname == "t")
        .expect("test t");
    assert_eq!(t.status, Status::Abort);
    assert_eq!(t.reason.as_deref().map(str::len), Some(2 << 20));

    // A keyval that is a symlink loop is absent to Autotest's
    // os.path.exists: the job reads as status version 0, with a warning.
    assert!(jobs[3]
        .diagnostics
        .iter()
        .any(|x| x.severity == Severity::Warning
            && x.file == "keyval"
            && x.message.contains("cannot read")));
    assert_eq!(jobs[3].status_version, 0);
    assert_eq!(jobs[3].tests.len(), 1);
    Ok(())
}

#[test]
fn deep_nesting_closed_by_an_unindented_line() {
    // 3,000 nested groups (4.5 MB of tabs), then an unindented line: each
    // level is closed by a synthesised END ABORT, without re-parsing.
    let depth = 3_000;
    let mut log = String::new();
    for i in 0..depth {
        log.push_str(&format!(
            "{}START\tg{i}\tg{i}\ttimestamp=1\t\n",
            "\t".repeat(i)
        ));
    }
    log.push_str("GOOD\t----\t----\ttimestamp=2\tdone\n");
    let out = run_v1(log.as_bytes());
    assert_eq!(out.tests[0].testname, "SERVER_JOB");
    assert_eq!(out.tests[0].status, Status::Abort);
    let g0 = out
        .tests
        .iter()
        .find(|t| t.testname == "g0")
        .expect("outer group closed");
    assert_eq!(g0.status, Status::Abort);
}

/// A `tko` child process that cannot read files whose mode denies it: as
/// root (who reads everything) it runs as `nobody` through `setpriv`, and
/// the tree is handed to `nobody` first.
fn tko_unprivileged(tree: &Path) -> std::process::Command {
    use std::process::Command;
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let chown = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(tree)
            .status()
            .expect("run chown");
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_tko"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_tko"))
    }
}

fn tests_of(db: &Path, tag: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open sqlite");
    conn.query_row(
        "SELECT count(*) FROM tko_tests t JOIN tko_jobs j ON j.job_idx = t.job_idx WHERE j.tag = ?1",
        [tag],
        |r| r.get(0),
    )
    .expect("count tests")
}

/// Issue 8 item 4: a job whose status log or keyval exists but cannot be
/// read is never parsed as empty or partial. `tko parse` names the file and
/// exits 1; `tko load` fails the job and keeps the loaded version intact.
#[test]
fn unreadable_files_fail_the_job_and_keep_the_loaded_one() -> Result<(), Box<dyn std::error::Error>>
{
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir()?;
    let tree = tmp.path().join("tree");
    let r = tree.join("results");
    write(&r.join("1-a/h1/keyval"), b"status_version=1\n");
    write(&r.join("1-a/h1/status.log"), GOOD_LOG);
    write(&r.join("2-b/h2/keyval"), b"status_version=1\n");
    write(&r.join("2-b/h2/status.log"), GOOD_LOG);
    write(&r.join("3-c/h3/keyval"), b"status_version=1\n");
    write(&r.join("3-c/h3/status.log"), GOOD_LOG);
    write(&r.join("3-c/h3/t1/keyval"), b"version=1\n");
    let db = tree.join("tko.db");
    let url = format!("sqlite:{}", db.display());

    let load = tko_unprivileged(&tree)
        .args(["load", "--quiet", "--level", "2", "--db", &url])
        .arg(&r)
        .output()?;
    assert!(load.status.success(), "{load:?}");
    for tag in ["1-a/h1", "2-b/h2", "3-c/h3"] {
        assert_eq!(tests_of(&db, tag), 3, "{tag}");
    }

    let deny = |p: &Path| fs::set_permissions(p, fs::Permissions::from_mode(0o000));
    deny(&r.join("2-b/h2/status.log"))?;
    deny(&r.join("3-c/h3/t1/keyval"))?;

    let parse = tko_unprivileged(&tree)
        .args(["parse", "--json", "--level", "2"])
        .arg(&r)
        .output()?;
    let stdout = String::from_utf8(parse.stdout)?;
    let stderr = String::from_utf8(parse.stderr)?;
    assert_eq!(parse.status.code(), Some(1), "{stderr}");
    let tags: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["tag"].to_string())
        .collect();
    assert_eq!(tags, ["\"1-a/h1\""], "{stdout}");
    for file in ["2-b/h2/status.log", "3-c/h3/t1/keyval"] {
        let want = format!("tko: {}: cannot read: ", r.join(file).display());
        assert!(stderr.contains(&want), "{want} not in {stderr}");
    }

    let reload = tko_unprivileged(&tree)
        .args(["load", "--quiet", "--force", "--level", "2", "--db", &url])
        .arg(&r)
        .output()?;
    assert_eq!(reload.status.code(), Some(1), "{reload:?}");
    for tag in ["1-a/h1", "2-b/h2", "3-c/h3"] {
        assert_eq!(tests_of(&db, tag), 3, "{tag} lost tests");
    }
    Ok(())
}

fn parse_one(dir: &Path) -> tko::model::Job {
    let (dirs, errors) = tko::discover::find_jobs(&[dir.to_path_buf()], 1);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    tko::ingest::parse_jobs(&dirs)
        .pop()
        .expect("one job")
        .expect("readable")
}

/// Issue 10 item 3: subdirs that stay inside the job directory after
/// normalising (`.`, `debug/../ltp.fs`) are read; `../x` is not.
#[test]
fn test_subdirs_inside_the_job_dir_are_read() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let j = tmp.path().join("5-e");
    write(&j.join("keyval"), b"status_version=1\njob_kv=7\n");
    write(
        &j.join("status.log"),
        b"START\t----\t----\ttimestamp=10\t\n\
\tSTART\tdebug/../ltp.fs\tltp\ttimestamp=11\t\n\
\tEND GOOD\tdebug/../ltp.fs\tltp\ttimestamp=12\t\n\
\tSTART\t.\tdot\ttimestamp=13\t\n\
\tEND GOOD\t.\tdot\ttimestamp=14\t\n\
\tSTART\t../x\tout\ttimestamp=15\t\n\
\tEND GOOD\t../x\tout\ttimestamp=16\t\n\
END GOOD\t----\t----\ttimestamp=17\t\n",
    );
    write(&j.join("ltp.fs/keyval"), b"version=3\n");
    write(&j.join("ltp.fs/results/keyval"), b"thr{perf}=1.5\n\n");
    fs::create_dir_all(j.join("debug"))?;
    write(&tmp.path().join("x/keyval"), b"secret=1\n");
    let job = parse_one(&j);
    let test = |name: &str| {
        job.tests
            .iter()
            .find(|t| t.testname == name)
            .unwrap_or_else(|| panic!("{name} in {:?}", job.tests))
    };
    let ltp = test("ltp");
    assert_eq!(ltp.attributes["version"], tko::model::Value::Int(3));
    assert_eq!(ltp.iterations.len(), 1);
    assert_eq!(ltp.subdir.as_deref(), Some("debug/../ltp.fs"));
    // `.` is the job directory itself: its keyval, as Autotest reads it.
    assert_eq!(test("dot").attributes["job_kv"], tko::model::Value::Int(7));
    assert!(test("out").attributes.is_empty());
    let warned: Vec<_> = job
        .diagnostics
        .iter()
        .filter(|d| d.message.contains("leaves the job directory"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", job.diagnostics);
    assert!(warned[0].message.contains("../x"));
    Ok(())
}

/// Issue 10 item 4: where Autotest loses the job (a `status.log` that is a
/// directory, an integer too large for it), the job is kept with an error
/// diagnostic naming the file and line.
#[test]
fn jobs_autotest_loses_are_kept_with_file_and_line() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    // status.log is a directory: kept as an empty status log.
    let a = tmp.path().join("6-f");
    write(&a.join("keyval"), b"status_version=1\nuser=f\n");
    fs::create_dir_all(a.join("status.log"))?;
    let job = parse_one(&a);
    assert_eq!(job.user.as_deref(), Some("f"));
    assert_eq!(job.tests.len(), 1, "SERVER_JOB only: {:?}", job.tests);
    assert!(job.diagnostics.iter().any(|d| d.severity == Severity::Error
        && d.file == "status.log"
        && d.message.contains("directory")));

    // Integers Autotest overflows on.
    let b = tmp.path().join("7-g");
    write(
        &b.join("keyval"),
        b"status_version=1\nlabel=x\njob_started=99999999999999999999999\njob_queued=123456789012345678901234567890123456789012\n",
    );
    write(&b.join(".autoserv_execute"), b"1234\n4294967296\n0\n");
    write(&b.join("status.log"), GOOD_LOG);
    let job = parse_one(&b);
    assert_eq!(job.tests.len(), 3);
    assert_eq!(job.tests[0].status, Status::Abort);
    let at = |file: &str, line: u32| {
        job.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && d.file == file && d.line == Some(line))
    };
    assert!(at(".autoserv_execute", 2), "{:?}", job.diagnostics);
    assert!(at("keyval", 3), "{:?}", job.diagnostics);
    assert!(at("keyval", 4), "{:?}", job.diagnostics);
    Ok(())
}

/// Issue 10 item 5: bytes that are not UTF-8 are kept, read as Latin-1, in
/// every text field; `tko parse --json` marks them with `$latin1`, the
/// warehouse stores the Latin-1 text, and valid UTF-8 stays as it is.
#[test]
fn non_utf8_text_is_lossless_latin1() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let r = tmp.path().join("results");
    let j = r.join("8-h/host");
    write(
        &j.join("keyval"),
        b"status_version=1\nlabel=caf\xe9\nuser=\xc3\xa9t\xc3\xa9\n",
    );
    write(
        &j.join("status.log"),
        b"INFO\t----\t----\tkernel=2.6-\xe9\t\n\
START\t----\t----\ttimestamp=10\t\n\
\tSTART\tt\xe9st\tt\xe9st\ttimestamp=11\t\n\
\t\tWARN\tt\xe9st\tt\xe9st\ttimestamp=12\tslow \xff\n\
\tEND WARN\tt\xe9st\tt\xe9st\ttimestamp=13\t\n\
END GOOD\t----\t----\ttimestamp=14\t\n",
    );
    let test_dir = {
        use std::os::unix::ffi::OsStrExt;
        j.join(std::ffi::OsStr::from_bytes(b"t\xe9st"))
    };
    write(&test_dir.join("keyval"), b"v=x\xe9\n");
    write(
        &test_dir.join("results/keyval"),
        b"a\xe9{attr}=b\xe9\nthr{perf}=1\n\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["parse", "--json", "--level", "2"])
        .arg(&r)
        .output()?;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let job: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let l = |s: &str| serde_json::json!({ "$latin1": s });
    assert_eq!(job["label"], l("café"));
    assert_eq!(job["user"], "été", "valid UTF-8 stays as is");
    let t = &job["tests"][2];
    assert_eq!(t["testname"], l("tést"));
    assert_eq!(t["subdir"], l("tést"));
    assert_eq!(t["reason"], l("slow ÿ"));
    assert_eq!(t["attributes"]["v"], l("xé"));
    assert_eq!(t["iterations"][0]["perf"]["thr"], 1.0);
    assert_eq!(t["iterations"][0]["attr"]["$latin1:aé"], l("bé"));
    assert_eq!(t["kernel"]["base"], l("2.6-é"));
    let md5 = format!("{:x}", md5::compute(b"2.6-\xe9"));
    assert_eq!(t["kernel"]["kernel_hash"], md5.as_str());
    let diags = job["diagnostics"].as_array().expect("diagnostics");
    assert!(
        diags.iter().all(|d| d["severity"] == "warning"),
        "{diags:?}"
    );
    assert!(diags.iter().any(|d| d["file"] == "status.log"
        && d["line"] == 1
        && d["message"].as_str().is_some_and(|m| m.contains("Latin-1"))));

    assert!(
        diags.iter().any(|d| d["file"] == "tést/keyval"),
        "file names are shown as Latin-1 too: {diags:?}"
    );
    let db = tmp.path().join("tko.db");
    let url = format!("sqlite:{}", db.display());
    let load = std::process::Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["load", "--quiet", "--level", "2", "--db", &url])
        .arg(&r)
        .output()?;
    assert!(load.status.success(), "{load:?}");
    let conn = rusqlite::Connection::open(&db)?;
    let (test, subdir, reason): (String, String, String) = conn.query_row(
        "SELECT test, subdir, reason FROM tko_tests WHERE status = (SELECT status_idx FROM tko_status WHERE word = 'WARN')",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    assert_eq!(
        (test.as_str(), subdir.as_str(), reason.as_str()),
        ("tést", "tést", "slow ÿ")
    );
    let label: String = conn.query_row("SELECT label FROM tko_jobs", [], |r| r.get(0))?;
    assert_eq!(label, "café");
    let attr: String =
        conn.query_row("SELECT attribute FROM tko_iteration_attributes", [], |r| {
            r.get(0)
        })?;
    assert_eq!(attr, "aé");
    let value: String = conn.query_row(
        "SELECT value FROM tko_test_attributes WHERE attribute = 'v'",
        [],
        |r| r.get(0),
    )?;
    assert_eq!(value, "xé");
    Ok(())
}

/// Issue 8 item 4 with too many open files: `tko parse` in a child whose
/// `RLIMIT_NOFILE` leaves one descriptor free (`prlimit --nofile=4`) fails
/// jobs it cannot read (exit 1) but never prints one parsed from part of
/// its files: every job it prints is exactly the unrestricted parse's.
#[test]
fn too_many_open_files_never_gives_a_partial_job() -> Result<(), Box<dyn std::error::Error>> {
    use std::collections::BTreeMap;
    use std::process::Command;
    let tmp = tempfile::tempdir()?;
    let opts = tko::gen::GenOptions {
        jobs: 30,
        seed: 2,
        fraction_bad: 0.0,
        ..tko::gen::GenOptions::default()
    };
    tko::gen::generate(tmp.path(), &opts)?;
    let parse = |limit: Option<&str>| -> std::io::Result<std::process::Output> {
        let mut c = match limit {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_tko"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_tko")),
        };
        c.args(["parse", "--json", "--threads", "2", "--level", "2"])
            .arg(tmp.path())
            .output()
    };
    let by_tag = |stdout: &[u8]| -> BTreeMap<String, String> {
        String::from_utf8_lossy(stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                (v["tag"].to_string(), l.to_string())
            })
            .collect()
    };
    let full = parse(None)?;
    assert!(full.status.success());
    let full = by_tag(&full.stdout);
    assert_eq!(full.len(), 30);
    for _ in 0..3 {
        let out = parse(Some("4"))?;
        let got = by_tag(&out.stdout);
        for (tag, line) in &got {
            assert_eq!(
                Some(line),
                full.get(tag),
                "{tag} printed from part of its files"
            );
        }
        if got.len() < full.len() {
            assert_eq!(out.status.code(), Some(1));
        }
    }
    Ok(())
}
