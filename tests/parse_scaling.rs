//! Parse time stays linear on the inputs that made the version-1 parser
//! super-linear (issue 8 item 3): one test with many distinct `WARN`
//! reasons (Autotest re-merges every reason on every line), and a line that
//! closes many nested groups by indentation regression while carrying a
//! long reason, under a long subdir (each once copied per closed group);
//! and version 0 copying a long group subdir for every END line. Each big
//! case runs on a worker thread; a watchdog fails the test after 60 s (20 s
//! for the version-0 case, which the old code ran in about 45 s) instead of
//! hanging (the old code takes hours on the WARN case). The expected output is
//! computed independently, and checked on a small case too.

use std::sync::mpsc;
use std::time::Duration;
use tko::model::Status;
use tko::parse::v0;
use tko::parse::v1::{JobContext, V1};
use tko::parse::TestResult;

/// Runs `f` on a thread; panics if it takes longer than `secs` seconds.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(e) => panic!("{what}: no result within {secs} s ({e}); parse time is super-linear"),
    }
}

fn parse(log: &str) -> Vec<TestResult> {
    let mut m = V1::new(JobContext {
        exit_status: Some(Status::Good),
        ..JobContext::default()
    });
    m.process(log.split_inclusive('\n').zip(1..).map(|(l, n)| (n, l)));
    m.end().tests
}

/// (name, status, reason) of each result.
fn summary(tests: &[TestResult]) -> Vec<(String, Status, Option<String>)> {
    tests
        .iter()
        .map(|t| (t.testname.clone(), t.status, t.reason.clone()))
        .collect()
}

/// One test with `n` distinct WARN reasons `disk NNNNN is slow`; every 5th
/// is preceded by a reason it contains (dropped when it arrives), every 7th
/// followed by one it contains (never kept) and every 11th followed by one
/// that contains it (which replaces it). Returns the log and the test's
/// expected reason: the surviving reasons, sorted, joined with ", ".
fn warn_reasons(n: usize) -> (String, String) {
    let mut log = String::from("START\t----\t----\ttimestamp=1\t\n\tSTART\tt\tt\ttimestamp=2\t\n");
    let mut warn = |reason: String| {
        log.push_str(&format!("\t\tWARN\tt\tt\ttimestamp=3\t{reason}\n"));
    };
    let mut kept = Vec::new();
    for i in 0..n {
        if i % 5 == 0 {
            warn(format!("k {i:05} is"));
        }
        warn(format!("disk {i:05} is slow"));
        if i % 7 == 0 {
            warn(format!("{i:05} is slo"));
        }
        if i % 11 == 0 {
            warn(format!("disk {i:05} is slow, again"));
            kept.push(format!("disk {i:05} is slow, again"));
        } else {
            kept.push(format!("disk {i:05} is slow"));
        }
    }
    log.push_str("\tEND GOOD\tt\tt\ttimestamp=4\t\nEND GOOD\t----\t----\ttimestamp=5\t\n");
    kept.sort();
    (log, kept.join(", "))
}

fn check_warn_reasons(tests: &[TestResult], reason: String) {
    assert_eq!(
        summary(tests),
        vec![
            ("SERVER_JOB".into(), Status::Good, Some(String::new())),
            ("CLIENT_JOB.0".into(), Status::Good, Some(String::new())),
            ("t".into(), Status::Warn, Some(reason)),
        ]
    );
}

#[test]
fn many_distinct_warn_reasons_small() {
    let (log, reason) = warn_reasons(40);
    check_warn_reasons(&parse(&log), reason);
}

#[test]
fn twenty_thousand_distinct_warn_reasons_parse_in_linear_time() {
    let (log, reason) = warn_reasons(20_000);
    let tests = within(60, "20,000 WARN reasons", move || parse(&log));
    check_warn_reasons(&tests, reason);
}
/// A test `t` holding `depth` nested unnamed groups; the innermost sets the
/// group subdir to a long name `subdir`; then an unindented WARN line with
/// the reason `reason` closes every group by indentation regression.
fn nested(depth: usize, subdir: &str, reason: &str) -> String {
    let mut log = String::from("START\t----\t----\ttimestamp=1\t\n\tSTART\tt\tt\ttimestamp=2\t\n");
    for d in 2..=depth + 1 {
        log.push_str(&"\t".repeat(d));
        log.push_str("START\t----\t----\ttimestamp=2\t\n");
    }
    log.push_str(&"\t".repeat(depth + 2));
    log.push_str(&format!("GOOD\t{subdir}\tx\ttimestamp=2\tok\n"));
    log.push_str(&format!("WARN\t----\t----\ttimestamp=3\t{reason}\n"));
    log
}

/// What Autotest gives for [`nested`]: the test is aborted and keeps its
/// own reason; its subdir propagated to the client level, whose abort
/// becomes a phantom result `t` with the regressing line's reason, and
/// CLIENT_JOB.0 stays RUNNING (spec 3.5).
fn check_nested(tests: &[TestResult], reason: &str) {
    assert_eq!(
        summary(tests),
        vec![
            ("SERVER_JOB".into(), Status::Good, Some(String::new())),
            ("CLIENT_JOB.0".into(), Status::Running, Some(String::new())),
            ("t".into(), Status::Abort, Some("ok".into())),
            ("t".into(), Status::Abort, Some(reason.into())),
        ]
    );
    assert_eq!(tests[2].subdir.as_deref(), Some("t"));
    assert_eq!(tests[3].subdir.as_deref(), Some("t"));
    assert_eq!(tests[2].finished_time, Some(3));
}

#[test]
fn indentation_regression_under_nesting_small() {
    check_nested(&parse(&nested(5, "sub", "gone")), "gone");
}

#[test]
fn indentation_regression_under_deep_nesting_is_linear_in_reason_length() {
    let (subdir, reason) = ("s".repeat(2 << 20), "r".repeat(4 << 20));
    let log = nested(2_000, &subdir, &reason);
    let tests = within(60, "2,000 nested groups, 4 MiB reason", move || parse(&log));
    check_nested(&tests, &reason);
}

/// A version-0 log: a line below the sought level sets the group subdir to
/// a long name `subdir`, `ends` END lines below the sought level each carry
/// it, then an END and a status line at the sought level make results.
fn v0_group_subdir(ends: usize, subdir: &str) -> String {
    let mut log = format!("\tGOOD\t{subdir}\tx\t\n");
    for _ in 0..ends {
        log.push_str("\tEND GOOD\ta\tb\t\n");
    }
    log.push_str("END GOOD\ta\tb\t\nGOOD\t----\tdone\tok\n");
    log
}

fn parse_v0(log: &str) -> Vec<(Option<String>, String, Status, Option<String>)> {
    let source = v0::KernelSource::new(&v0::KernelFiles::default(), &mut Vec::new());
    let (tests, problems) = v0::parse(log.as_bytes(), &source);
    assert!(problems.is_empty(), "{problems:?}");
    tests
        .into_iter()
        .map(|t| (t.subdir, t.testname, t.status, t.reason))
        .collect()
}

/// What Autotest gives for [`v0_group_subdir`]: the END at the sought level
/// takes the group subdir.
fn check_v0_group_subdir(
    tests: Vec<(Option<String>, String, Status, Option<String>)>,
    subdir: &str,
) {
    assert_eq!(
        tests,
        vec![
            (
                Some(subdir.into()),
                "b".into(),
                Status::Good,
                Some(String::new())
            ),
            (None, "done".into(), Status::Good, Some("ok".into())),
        ]
    );
}

#[test]
fn v0_group_subdir_small() {
    check_v0_group_subdir(parse_v0(&v0_group_subdir(3, "sub")), "sub");
}

#[test]
fn v0_long_group_subdir_is_not_copied_per_line() {
    let subdir = "s".repeat(4 << 20);
    let log = v0_group_subdir(100_000, &subdir);
    let tests = within(20, "100,000 END lines under a 4 MiB subdir", move || {
        parse_v0(&log)
    });
    check_v0_group_subdir(tests, &subdir);
}
