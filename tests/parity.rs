//! Corpus parity: every case of the vendored corpus `tests/corpus/autotest/`
//! is parsed and compared with the output of Autotest's own
//! parser stored beside it. Where Autotest's parser raised and lost the job,
//! tko must keep the job and report an error diagnostic instead. The
//! `--incremental` runs also replay the status log line by line, as
//! Autotest's continuous parser does, and compare every step. Prints
//! every mismatch and `parity: N of M cases identical`.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use tko::model::Severity;
use tko::parse;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/autotest")
}

fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Structural equality with numbers compared as floats (217 == 217.0).
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn diff(what: &str, ours: &Json, expected: &Json, out: &mut Vec<String>) {
    if !json_eq(ours, expected) {
        out.push(format!(
            "{what}:\n    ours:     {ours}\n    expected: {expected}"
        ));
    }
}

/// Drops tko's own `information` key from every test object (Autotest
/// drops INFO lines; nothing else is ignored).
fn without_information(mut v: Json) -> Json {
    fn strip(tests: &mut Json) {
        for t in tests.as_array_mut().into_iter().flatten() {
            if let Some(o) = t.as_object_mut() {
                o.remove("information");
            }
        }
    }
    if v.is_array() {
        strip(&mut v);
    } else {
        strip(&mut v["tests"]);
    }
    v
}

fn arg_value(args: &[Json], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).and_then(Json::as_str).map(str::to_string)
}

/// Compares one whole-job run (`expected.json`).
fn check_jobs(case: &Path, input: &str, level: usize, expected: &Json, out: &mut Vec<String>) {
    let (dirs, errors) = tko::discover::find_jobs(&[case.join(input)], level);
    if !errors.is_empty() {
        out.push(format!("walk errors: {errors:?}"));
    }
    let jobs: Vec<_> = tko::ingest::parse_jobs(&dirs)
        .into_iter()
        .filter_map(|j| j.map_err(|e| out.push(e.to_string())).ok())
        .collect();
    let exp_jobs = expected["jobs"].as_array().expect("jobs array");
    let mut our_tags: Vec<&str> = jobs.iter().map(|j| j.tag.as_str()).collect();
    let mut exp_tags: Vec<&str> = exp_jobs
        .iter()
        .filter_map(|j| j["jobname"].as_str())
        .collect();
    our_tags.sort();
    exp_tags.sort();
    if our_tags != exp_tags {
        out.push(format!(
            "job tags: ours {our_tags:?}, expected {exp_tags:?}"
        ));
    }
    for exp in exp_jobs {
        let tag = exp["jobname"].as_str().unwrap_or_default();
        let Some(job) = jobs.iter().find(|j| j.tag == tag) else {
            continue;
        };
        let has_error = job
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error);
        if !exp["error"].is_null() {
            if !has_error {
                out.push(format!(
                    "{tag}: Autotest lost this job ({}), tko reports no error diagnostic",
                    exp["error"]["type"]
                ));
            }
            continue;
        }
        if exp["tests"].is_null() {
            // Autotest logged "no status file" and stored nothing.
            if !job.tests.is_empty() || !has_error {
                out.push(format!("{tag}: expected no tests and a diagnostic"));
            }
            continue;
        }
        if has_error {
            out.push(format!(
                "{tag}: unexpected error diagnostics {:?}",
                job.diagnostics
            ));
        }
        let ours = without_information(serde_json::to_value(job).expect("job serializes"));
        for key in [
            "user",
            "label",
            "machine",
            "machine_group",
            "machine_owner",
            "queued_time",
            "started_time",
            "finished_time",
            "aborted_by",
            "aborted_on",
            "keyval",
        ] {
            diff(
                &format!("{tag}: job.{key}"),
                &ours[key],
                &exp["job"][key],
                out,
            );
        }
        diff(
            &format!("{tag}: status_version"),
            &ours["status_version"],
            &exp["status_version"],
            out,
        );
        let afe = exp["afe_job_id"]
            .as_str()
            .map(|s| Json::from(s.parse::<u64>().expect("digits")));
        diff(
            &format!("{tag}: afe_job_id"),
            &ours["afe_job_id"],
            &afe.unwrap_or(Json::Null),
            out,
        );
        let ours_tests = ours["tests"].as_array().expect("tests");
        let exp_tests = exp["tests"].as_array().expect("tests");
        if ours_tests.len() != exp_tests.len() {
            let names = |v: &[Json]| {
                v.iter()
                    .map(|t| t["testname"].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push(format!(
                "{tag}: {} tests, expected {}\n    ours:     {}\n    expected: {}",
                ours_tests.len(),
                exp_tests.len(),
                names(ours_tests),
                names(exp_tests)
            ));
        }
        for (i, (o, e)) in ours_tests.iter().zip(exp_tests).enumerate() {
            diff(&format!("{tag}: test #{i} ({})", e["testname"]), o, e, out);
        }
        let warnings: Vec<&str> = exp["log"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter(|m| m["level"] == "WARNING")
                    .filter_map(|m| m["msg"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let ours_warnings: Vec<&str> = job
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning && !d.message.contains("UTF-8"))
            .map(|d| d.message.as_str())
            .collect();
        if warnings != ours_warnings {
            out.push(format!(
                "{tag}: warnings {ours_warnings:?}, expected {warnings:?}"
            ));
        }
    }
}

/// Compares a continuous-parse replay (`expected_incremental.json`): after
/// each status-log line, the results emitted and their state then.
fn check_incremental(
    case: &Path,
    input: &str,
    level: usize,
    expected: &Json,
    out: &mut Vec<String>,
) {
    check_jobs(case, input, level, expected, out);
    let (dirs, _) = tko::discover::find_jobs(&[case.join(input)], level);
    for exp in expected["jobs"].as_array().expect("jobs array") {
        let tag = exp["jobname"].as_str().unwrap_or_default();
        let Some(dir) = dirs.iter().find(|d| d.tag == tag) else {
            continue;
        };
        let Some(exp_steps) = exp["incremental"].as_array() else {
            continue;
        };
        let (_, steps) = tko::ingest::replay(dir).expect("corpus files are readable");
        let ours: Vec<Json> = steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "after_line": s.after_line.map_or(Json::from("end"), Json::from),
                    "tests": without_information(
                        serde_json::to_value(&s.tests).expect("tests serialize")
                    ),
                })
            })
            .collect();
        if ours.len() != exp_steps.len() {
            let lines = |v: &[Json]| {
                v.iter()
                    .map(|s| s["after_line"].to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push(format!(
                "{tag}: {} replay steps, expected {}\n    ours:     {}\n    expected: {}",
                ours.len(),
                exp_steps.len(),
                lines(&ours),
                lines(exp_steps)
            ));
        }
        for (o, e) in ours.iter().zip(exp_steps) {
            diff(
                &format!("{tag}: replay after line {}", e["after_line"]),
                o,
                e,
                out,
            );
        }
    }
}

fn check_lines(file: &Path, version: u32, expected: &Json, out: &mut Vec<String>) {
    let bytes = std::fs::read(file).expect("status log");
    let text = String::from_utf8_lossy(&bytes);
    let results = expected["unit"]["result"].as_array().expect("result");
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.len() != results.len() {
        out.push(format!("{} lines, expected {}", lines.len(), results.len()));
    }
    for (raw, exp) in lines.iter().zip(results) {
        let cleaned = if version >= 1 {
            raw.replace("\r\0", "")
        } else {
            raw.to_string()
        };
        let ours = match parse::line::status_line(&cleaned, version) {
            Ok(None) => serde_json::json!({"parsed": null, "error": false}),
            Err(_) => serde_json::json!({"parsed": null, "error": true}),
            Ok(Some(l)) => serde_json::json!({
                "parsed": {
                    "indent": l.indent,
                    "optional_fields": l.fields,
                    "reason": l.reason,
                    "status": l.status.map(|s| s.word()),
                    "subdir": l.subdir.as_deref(),
                    "testname": l.testname.as_deref(),
                    "type": l.kind.name(),
                },
                "error": false,
            }),
        };
        let exp_norm =
            serde_json::json!({"parsed": exp["parsed"], "error": !exp["error"].is_null()});
        diff(&format!("line {}", exp["line"]), &ours, &exp_norm, out);
    }
}

fn check_keyval(file: &Path, expected: &Json, out: &mut Vec<String>) {
    let parsed = parse::keyval::keyval(&std::fs::read(file).expect("keyval"));
    let unit = &expected["unit"];
    if unit["error"].is_null() {
        diff(
            "keyval",
            &serde_json::to_value(&parsed.map).expect("map"),
            &unit["result"],
            out,
        );
        if !parsed.problems.is_empty() {
            out.push(format!("unexpected problems {:?}", parsed.problems));
        }
    } else if parsed.problems.is_empty() {
        out.push(format!(
            "Autotest raised {}, tko reports nothing",
            unit["error"]["message"]
        ));
    }
}

fn check_iterations(file: &Path, version: u32, expected: &Json, out: &mut Vec<String>) {
    let parsed = parse::iteration::iterations(&std::fs::read(file).expect("keyval"), version);
    let unit = &expected["unit"];
    if !unit["error"].is_null() {
        if parsed
            .problems
            .iter()
            .all(|p| p.severity != Severity::Error)
        {
            out.push(format!(
                "Autotest raised {}, tko reports no error",
                unit["error"]["message"]
            ));
        }
        return;
    }
    diff(
        "iterations",
        &serde_json::to_value(&parsed.iterations).expect("its"),
        &unit["result"],
        out,
    );
    let warnings: Vec<Json> = unit["log"]
        .as_array()
        .map(|l| l.iter().map(|m| m["msg"].clone()).collect())
        .unwrap_or_default();
    let ours: Vec<Json> = parsed
        .problems
        .iter()
        .map(|p| Json::from(p.message.clone()))
        .collect();
    diff(
        "iteration warnings",
        &Json::from(ours),
        &Json::from(warnings),
        out,
    );
}

#[test]
fn corpus_parity() {
    let corpus = corpus_dir();
    let manifest = read_json(&corpus.join("manifest.json"));
    let cases = manifest["cases"].as_array().expect("cases");
    let mut identical = 0;
    let mut report = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let dir = corpus.join(name);
        let mut mismatches = Vec::new();
        for run in case["runs"].as_array().expect("runs") {
            let args = run["args"].as_array().expect("args");
            let input = run["input"].as_str().expect("input");
            let expected = read_json(&dir.join(run["expected"].as_str().expect("expected")));
            let version =
                arg_value(args, "--status-version").map(|v| v.parse::<u32>().expect("version"));
            let mut out = Vec::new();
            match arg_value(args, "--unit").as_deref() {
                Some("lines") => {
                    check_lines(&dir.join(input), version.unwrap_or(1), &expected, &mut out)
                }
                Some("keyval") => check_keyval(&dir.join(input), &expected, &mut out),
                Some("iterations") => {
                    check_iterations(&dir.join(input), version.unwrap_or(1), &expected, &mut out)
                }
                Some(other) => out.push(format!("unknown unit {other}")),
                None => {
                    let level = arg_value(args, "--level").map_or(1, |l| l.parse().expect("level"));
                    if args.iter().any(|a| a == "--incremental") {
                        check_incremental(&dir, input, level, &expected, &mut out);
                    } else {
                        check_jobs(&dir, input, level, &expected, &mut out);
                    }
                }
            }
            for m in out {
                mismatches.push(format!(
                    "  [{}] {m}",
                    run["expected"].as_str().unwrap_or("?")
                ));
            }
        }
        if mismatches.is_empty() {
            identical += 1;
        } else {
            report.push(format!("{name}:\n{}", mismatches.join("\n")));
        }
    }
    for r in &report {
        eprintln!("{r}");
    }
    println!("parity: {identical} of {} cases identical", cases.len());
    eprintln!("parity: {identical} of {} cases identical", cases.len());
    assert!(
        cases.len() >= 72,
        "corpus has {} cases, expected at least 72",
        cases.len()
    );
    assert_eq!(identical, cases.len(), "corpus parity mismatches above");
}
