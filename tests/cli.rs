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
    assert!(
        text.contains("8 job(s) loaded, 0 unchanged, 0 failed; 32 tests"),
        "{text}"
    );
    assert!(
        t.path().join("tko.db").is_file(),
        "the embedded default is ./tko.db"
    );

    let out = tko(&["load", "--level", "2", "results"], t.path())?;
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("0 job(s) loaded, 8 unchanged"), "{text}");

    let out = tko(&["db", "status"], t.path())?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    assert!(text.contains("schema version 3"), "{text}");
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
