//! Parse time stays linear on the inputs that made the version-1 parser
//! super-linear (issue 8 item 3): one test with many distinct `WARN`
//! reasons (Autotest re-merges every reason on every line). Each big
//! case runs on a worker thread; a watchdog fails the test after 60 s
//! instead of hanging (the old code took hours). The expected output is
//! computed independently, and checked on a small case too.

use std::sync::mpsc;
use std::time::Duration;
use tko::model::Status;
use tko::parse::v1::{JobContext, V1};
use tko::parse::TestResult;

/// Runs `f` on a thread; panics if it takes longer than 60 s.
fn within_a_minute<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) => v,
        Err(e) => panic!("{what}: no result within 60 s ({e}); parse time is super-linear"),
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
    let tests = within_a_minute("20,000 WARN reasons", move || parse(&log));
    check_warn_reasons(&tests, reason);
}
