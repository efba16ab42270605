//! `tko compare`'s statistics are exact on both stores: each set's mean
//! and variance come from exact sums of the values and their squares
//! (`tko::query::Moments`), so they do not depend on row order, and a set
//! like −1e16, 1, 1e16 averages 1/3 (the old sorted-value sum said 0).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::{fresh, Backend, TestResult};

const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

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
