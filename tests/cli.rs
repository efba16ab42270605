//! The `tko` binary on a copy of the bundled example tree: `parse` (summary
//! and JSON Lines), `load` (twice: the second run skips), `db status`, exit
//! codes and `--help`.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn example() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/example-results");
    copy_tree(&src, &dir.path().join("results"))?;
    Ok(dir)
}

fn tko(args: &[&str], cwd: &Path) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TKO_DB")
        .output()
}

const TAGS: [&str; 8] = [
    "123-alice/host1",
    "300-frank/host3",
    "400-gina/host5",
    "800-nina/group0",
    "800-nina/group0/hostA",
    "800-nina/group0/hostB",
    "903-tina/host9",
    "905-vic/host16",
];

#[test]
fn parse_json_lines_one_object_per_job_in_tag_order() -> TestResult {
    let t = example()?;
    let out = tko(&["parse", "--json", "--level", "2", "results"], t.path())?;
    // 905-vic has an unknown status word: an error diagnostic, exit 1.
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout)?;
    let jobs: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let tags: Vec<&str> = jobs.iter().filter_map(|j| j["tag"].as_str()).collect();
    assert_eq!(tags, TAGS);
    let keys: Vec<&str> = jobs[0]
        .as_object()
        .ok_or("object")?
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "tag",
        "afe_job_id",
        "status_version",
        "label",
        "user",
        "machine",
        "machine_group",
        "machine_owner",
        "queued_time",
        "started_time",
        "finished_time",
        "aborted_by",
        "aborted_on",
        "keyval",
        "tests",
        "diagnostics",
    ];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(jobs[0]["afe_job_id"], 123);
    let bad = &jobs[7]["diagnostics"][0];
    assert_eq!(bad["file"], "status.log");
    assert_eq!(bad["line"], 3);
    assert_eq!(bad["severity"], "error");
    Ok(())
}

#[test]
fn parse_summary_names_file_and_line() -> TestResult {
    let t = example()?;
    let out = tko(&["parse", "--level", "2", "results/905-vic"], t.path())?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("905-vic/host16: 4 test(s)"), "{text}");
    assert!(
        text.contains("error: status.log:3: unknown status \"END PASS\""),
        "{text}"
    );
    Ok(())
}

#[test]
fn load_twice_then_status() -> TestResult {
    let t = example()?;
    let out = tko(&["load", "--level", "2", "results"], t.path())?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("8 job(s) found in"), "{text}");
    assert!(text.contains(": 8 new loaded, 0 reloaded"), "{text}");
    assert!(text.contains("32 tests, "), "{text}");
    assert!(
        text.contains("1 job(s) loaded in this run with error diagnostics"),
        "{text}"
    );
    assert!(
        t.path().join("tko.db").is_file(),
        "the embedded default is ./tko.db"
    );

    // Nothing loaded in this run carries an error: exit 0, and the errors
    // reported by the first run are not printed again.
    let out = tko(&["load", "--level", "2", "results"], t.path())?;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stderr)?, "");
    let text = String::from_utf8(out.stdout)?;
    assert!(
        text.contains("0 new loaded, 0 reloaded, 8 unchanged"),
        "{text}"
    );

    let out = tko(&["db", "status"], t.path())?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    let latest = tko::store::schema::latest(tko::store::schema::SQLITE);
    assert!(text.contains(&format!("schema version {latest}")), "{text}");
    let jobs_line = text
        .lines()
        .find(|l| l.starts_with("tko_jobs "))
        .ok_or("tko_jobs row")?;
    assert!(jobs_line.trim_end().ends_with(" 8"), "{jobs_line}");
    Ok(())
}

#[test]
fn bad_arguments_are_fatal_and_help_documents_exit_codes() -> TestResult {
    let t = tempfile::tempdir()?;
    let out = tko(&["parse", "/nonexistent/tko/path"], t.path())?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)?.contains("/nonexistent/tko/path"));
    let out = tko(&["parse"], t.path())?;
    assert_eq!(out.status.code(), Some(2));
    let out = tko(&["--help"], t.path())?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("Exit status: 0"), "{text}");
    for cmd in [
        "parse", "load", "backfill", "db", "export", "summary", "stats",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
    Ok(())
}

#[test]
fn completions_and_man_page_come_from_the_flags() -> TestResult {
    let t = tempfile::tempdir()?;
    for (shell, marker) in [
        ("bash", "_tko()"),
        ("zsh", "#compdef tko"),
        ("fish", "complete -c tko"),
    ] {
        let out = tko(&["completions", shell], t.path())?;
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout)?;
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("backfill") && text.contains("lock-timeout"),
            "{shell}"
        );
    }
    let out = tko(&["man"], t.path())?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains(".TH tko 1"), "{text}");
    assert!(text.contains("backfill"), "{text}");
    Ok(())
}

/// What a terminal shows of `text`: without its CSI escape sequences
/// (cursor moves, line clears).
fn visible(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Issue 9 item 16: on a terminal, Ctrl-C messages are printed above the
/// progress bar, never into it, and a second Ctrl-C clears the bar before
/// it leaves (exit 130), so the shell prompt starts on a clean line.
#[test]
fn double_ctrl_c_leaves_a_clean_terminal() -> TestResult {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let t = tempfile::tempdir()?;
    let root = t.path().join("results");
    let opts = tko::gen::GenOptions {
        jobs: 20,
        tests_per_job: 2..=3,
        fraction_bad: 0.0,
        ..tko::gen::GenOptions::default()
    };
    tko::gen::generate(&root, &opts)?;
    let (jobs, _) = tko::discover::find_jobs(std::slice::from_ref(&root), 2);
    let db_path = t.path().join("w.db");
    let db = format!("sqlite:{}", db_path.display());
    // One job is locked by "another parser", so the run waits for it with
    // its bar on screen once the other 19 are loaded.
    let lock = std::fs::File::create(jobs[7].path.join(".parse.lock"))?;
    lock.try_lock()?;
    let cmd = format!(
        "exec {} backfill --lock-timeout 120 --level 2 --db {db} {}",
        env!("CARGO_BIN_EXE_tko"),
        root.display()
    );
    // `script` gives tko a terminal; its output is what the user sees.
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let screen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let screen = Arc::clone(&screen);
        let mut stdout = child.stdout.take().ok_or("stdout")?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown =
        |what: &str| String::from_utf8_lossy(&screen.lock().expect("screen")).contains(what);
    let start = Instant::now();
    while !shown("19 loaded") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the 19 free jobs did not load"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Now another writer holds the warehouse and the lock is freed: the
    // run reads the last job and waits to write it, bar on screen.
    let blocker = rusqlite::Connection::open(&db_path)?;
    blocker.execute_batch("BEGIN IMMEDIATE")?;
    drop(lock);
    std::thread::sleep(Duration::from_millis(1500));
    let tko_pid = {
        let out = Command::new("pgrep")
            .args(["-P", &child.id().to_string()])
            .output()?;
        String::from_utf8(out.stdout)?
            .split_whitespace()
            .next()
            .ok_or("tko's pid")?
            .to_string()
    };
    for _ in 0..2 {
        Command::new("kill").args(["-INT", &tko_pid]).status()?;
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = child.wait()?;
    reader.join().map_err(|_| "reader")?;
    blocker.execute_batch("ROLLBACK")?;
    assert!(!status.success());
    let screen = String::from_utf8_lossy(&screen.lock().expect("screen")).into_owned();
    assert!(screen.contains("dirs"), "no progress bar drawn: {screen:?}");
    for message in ["tko: stopping after the current batch", "tko: interrupted"] {
        let at = screen
            .find(message)
            .unwrap_or_else(|| panic!("{message:?} missing: {screen:?}"));
        let before = visible(&screen[..at]);
        assert!(
            before.ends_with('\n') || before.ends_with('\r'),
            "{message:?} printed into the bar: {:?}",
            &before[before.len().saturating_sub(80)..]
        );
    }
    assert!(screen.ends_with('\n'), "no final newline: {screen:?}");
    Ok(())
}

/// A job read directly summarises exactly as the same job loaded: Latin-1
/// text (a reason with the byte 0xE9) reads as the warehouse stores it.
#[test]
fn summary_of_a_directory_equals_summary_of_the_loaded_job() -> TestResult {
    let t = tempfile::tempdir()?;
    let job = t.path().join("results/7-eve/host7");
    std::fs::create_dir_all(&job)?;
    std::fs::write(job.join("keyval"), "status_version=1\nhostname=host7\n")?;
    let mut log = b"START\t----\t----\ttimestamp=1300000000\tlocalized=x\n".to_vec();
    log.extend_from_slice(b"\tSTART\tdbench\tdbench\ttimestamp=1300000001\n");
    log.extend_from_slice(b"\t\tFAIL\tdbench\tdbench\ttimestamp=1300000002\tcaf\xe9 is down\n");
    log.extend_from_slice(b"\t\tINFO\t----\t----\ttimestamp=1300000002\tcaf\xe9 at 40%\n");
    log.extend_from_slice(b"\tEND FAIL\tdbench\tdbench\ttimestamp=1300000003\n");
    log.extend_from_slice(b"END GOOD\t----\t----\ttimestamp=1300000004\n");
    std::fs::write(job.join("status.log"), log)?;
    let dir = job.to_string_lossy().into_owned();
    let direct = tko(
        &["summary", "--format", "json", "--level", "2", &dir],
        t.path(),
    )?;
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    let out = tko(&["load", "--quiet", "--level", "2", &dir], t.path())?;
    assert!(
        out.status.code() != Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = tko(&["summary", "--format", "json", "7-eve/host7"], t.path())?;
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let direct = String::from_utf8(direct.stdout)?;
    // The information message (stored in tko_test_information) wins over
    // the reason.
    assert!(
        direct.contains(r#""information":"café at 40%""#),
        "{direct}"
    );
    assert_eq!(direct, String::from_utf8(stored.stdout)?);
    Ok(())
}
