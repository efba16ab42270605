//! `tko serve` as a user runs it: a real server process on a real SQLite
//! file and on the throwaway PostgreSQL (`support::pg`), loaded with the
//! bundled example tree plus a job with hostile values, asked over plain
//! HTTP (a tiny client on `TcpStream`) and through a real headless
//! Chromium. Checks every endpoint, the answers against the CLI's, the
//! token rule, read-only sessions and the escaping of hostile values.

mod support;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use support::{fresh, Backend, Fresh, TestResult};

const BOTH: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
const HOSTILE_TAG: &str = "990-eve/evil";
const HOSTILE_REASON: &str = "<script>alert(1)</script>";
const QUOTED_TEST: &str = "it's \"quoted\" <b>";
const HOSTILE_INFO: &str = "<img src=x onerror=alert(2)>";
const HOSTILE_KEY: &str = "lat<script>x</script>";

fn tko(args: &[&str], db: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .arg("--db")
        .arg(db)
        .env_remove("TKO_DB")
        .output()
        .expect("run tko")
}

fn example_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/example-results")
}

/// Writes the hostile job `990-eve/evil` under `root`: a test whose name
/// has quotes and markup, and a FAIL whose reason is a script element.
fn write_hostile_job(root: &Path) {
    let dir = root.join(HOSTILE_TAG);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("keyval"),
        "hostname=evil\njob_started=1300000000\nlabel=<i>lab</i>\nstatus_version=1\nuser=eve\n",
    )
    .expect("keyval");
    let mut log =
        String::from("START\t----\t----\ttimestamp=1300000001\tlocaltime=Mar 13 07:06:41\t\n");
    for (name, status, reason) in [
        ("xss", "FAIL", HOSTILE_REASON),
        (QUOTED_TEST, "GOOD", "fine"),
    ] {
        log.push_str(&format!(
            "\tSTART\t{name}\t{name}\ttimestamp=1300000002\tlocaltime=Mar 13 07:06:42\t\n\
             {info}\
             \t\t{status}\t{name}\t{name}\ttimestamp=1300000003\tlocaltime=Mar 13 07:06:43\t{reason}\n\
             \tEND {status}\t{name}\t{name}\ttimestamp=1300000003\tlocaltime=Mar 13 07:06:43\t{reason}\n",
            info = if name == QUOTED_TEST {
                format!("\t\tINFO\t{name}\t{name}\ttimestamp=1300000002\t{HOSTILE_INFO}\n")
            } else {
                String::new()
            }
        ));
    }
    log.push_str("END GOOD\t----\t----\ttimestamp=1300000100\tlocaltime=Mar 13 07:08:20\t\n");
    std::fs::write(dir.join("status.log"), log).expect("status.log");
    // An iteration whose attribute and perf key are markup.
    std::fs::create_dir_all(dir.join("xss/results")).expect("mkdir");
    std::fs::write(
        dir.join("xss/results/keyval"),
        format!("{HOSTILE_KEY}{{attr}}=x\n{HOSTILE_KEY}{{perf}}=1.5\n\n"),
    )
    .expect("iteration keyval");
}

const HOSTILE_KERNEL: &str = "<i>6.0</i>";

/// Writes job `tag` under `root`: one GOOD test `bench` on `kernel`,
/// finished at epoch `t`, with perf key `lat` = each of `values` (one
/// iteration each) and, on the hostile kernel, also [`HOSTILE_KEY`].
fn write_perf_job(root: &Path, tag: &str, kernel: &str, t: i64, values: &[f64]) {
    let dir = root.join(tag);
    std::fs::create_dir_all(dir.join("bench/results")).expect("mkdir");
    std::fs::write(
        dir.join("keyval"),
        format!(
            "hostname=perfhost\njob_started={}\nstatus_version=1\nuser=pat\n",
            t - 10
        ),
    )
    .expect("keyval");
    std::fs::write(
        dir.join("status.log"),
        format!(
            "INFO\t----\t----\tkernel={kernel}\ttimestamp={a}\t\n\
             START\t----\t----\ttimestamp={a}\t\n\
             \tSTART\tbench\tbench\ttimestamp={a}\t\n\
             \tEND GOOD\tbench\tbench\ttimestamp={t}\tdone\n\
             END GOOD\t----\t----\ttimestamp={t}\t\n",
            a = t - 5
        ),
    )
    .expect("status.log");
    let mut kv = String::new();
    for v in values {
        kv.push_str(&format!("lat{{perf}}={v}\n"));
        if kernel == HOSTILE_KERNEL {
            kv.push_str(&format!("{HOSTILE_KEY}{{perf}}=9\n"));
        }
        kv.push('\n');
    }
    std::fs::write(dir.join("bench/results/keyval"), kv).expect("iteration keyval");
}

/// Loads three runs of `bench` (kernels 5.1, 5.2 and a hostile one, the
/// last with two iterations) into `f`.
fn load_perf_jobs(f: &Fresh) {
    let root = tempfile::tempdir().expect("temp dir");
    write_perf_job(
        root.path(),
        "801-pat/perfhost",
        "5.1",
        1_300_001_000,
        &[1.5],
    );
    write_perf_job(
        root.path(),
        "802-pat/perfhost",
        "5.2",
        1_300_002_000,
        &[2.5],
    );
    write_perf_job(
        root.path(),
        "803-pat/perfhost",
        HOSTILE_KERNEL,
        1_300_003_000,
        &[3.5, 4.5],
    );
    let out = tko(
        &[
            "load",
            "--quiet",
            "--level",
            "2",
            root.path().to_str().unwrap(),
        ],
        &f.url,
    );
    assert_eq!(out.status.code(), Some(0), "load perf jobs: {out:?}");
}

/// A fresh warehouse of `backend` with the example tree and the hostile job.
fn loaded(backend: Backend) -> Fresh {
    let f = fresh(backend);
    let out = tko(
        &[
            "load",
            "--quiet",
            "--level",
            "2",
            example_root().to_str().unwrap(),
        ],
        &f.url,
    );
    // `load` exits 1 on the example's deliberately broken jobs.
    assert!(matches!(out.status.code(), Some(0 | 1)), "load: {out:?}");
    let extra = tempfile::tempdir().expect("temp dir");
    write_hostile_job(extra.path());
    let out = tko(
        &[
            "load",
            "--quiet",
            "--level",
            "2",
            extra.path().to_str().unwrap(),
        ],
        &f.url,
    );
    assert_eq!(out.status.code(), Some(0), "load hostile: {out:?}");
    f
}

/// A running `tko serve`; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tko serve --db URL --listen 127.0.0.1:0 EXTRA...` and waits
/// (at most 30 s) for its "listening on" line.
fn serve(db: &str, extra: &[&str]) -> Server {
    serve_on(db, "127.0.0.1:0", extra)
}

/// Starts `tko serve --db URL --listen LISTEN EXTRA...` (see [`serve`]).
fn serve_on(db: &str, listen: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["serve", "--db", db, "--listen", listen])
        .args(extra)
        .env_remove("TKO_DB")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tko serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(Ok(rest.split_whitespace().next().unwrap_or("").to_owned()));
                break;
            }
            let _ = tx.send(Err(line));
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(addr)) => return Server { child, addr },
            Ok(Err(line)) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("tko serve did not start; stderr: {seen:?}");
            }
        }
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET path` (HTTP/1.1, `Connection: close`), optionally with a token.
fn get(addr: &str, path: &str, token: Option<&str>) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status = head[9..12].parse().expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Answer {
        status,
        headers: head.to_owned(),
        body,
    }
}

fn enc(s: &str) -> String {
    tko::serve::encode(s)
}

/// A perf value compared by number (`10` and `10.0` alike).
fn num(v: &Value) -> Value {
    v.as_f64()
        .map_or_else(|| v.clone(), |x| serde_json::json!(x))
}

/// The rows of `tko export KIND --job TAG --format json`.
fn export_rows(db: &str, kind: &str, tag: &str) -> Vec<Value> {
    let out = tko(
        &[
            "export",
            kind,
            "--job",
            &tko::query::glob_escape(tag),
            "--format",
            "json",
        ],
        db,
    );
    assert!(out.status.success(), "export {kind}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One job's rows per kind (tests, attributes, iterations, perf, keyvals,
/// diagnostics), as tuples, from the export.
fn export_job(db: &str, tag: &str) -> Vec<Vec<Value>> {
    let pick = |kind: &str, keys: &[&str]| -> Vec<Value> {
        export_rows(db, kind, tag)
            .iter()
            .map(|r| {
                Value::Array(
                    keys.iter()
                        .map(|k| match *k {
                            "value" | "duration_s" | "line" => num(&r[*k]),
                            _ => r[*k].clone(),
                        })
                        .collect(),
                )
            })
            .collect()
    };
    vec![
        pick(
            "tests",
            &[
                "test",
                "subdir",
                "status",
                "reason",
                "kernel",
                "kernel_hash",
                "started_time",
                "finished_time",
                "duration_s",
            ],
        ),
        pick("attributes", &["test", "subdir", "attribute", "value"]),
        pick(
            "iterations",
            &["test", "subdir", "iteration", "attribute", "value"],
        ),
        pick("perf", &["test", "subdir", "iteration", "key", "value"]),
        pick("keyvals", &["key", "value"]),
        pick("diagnostics", &["file", "line", "severity", "message"]),
    ]
}

/// The same tuples from `GET /api/jobs/{tag}`'s nested answer.
fn flatten_job(j: &Value) -> Vec<Vec<Value>> {
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let mut out = vec![Vec::new(); 6];
    for t in arr(&j["tests"]) {
        out[0].push(serde_json::json!([
            t["test"],
            t["subdir"],
            t["status"],
            t["reason"],
            t["kernel"],
            t["kernel_hash"],
            t["started_time"],
            t["finished_time"],
            num(&t["duration_s"])
        ]));
        for a in arr(&t["attributes"]) {
            out[1].push(serde_json::json!([
                t["test"],
                t["subdir"],
                a["attribute"],
                a["value"]
            ]));
        }
        for it in arr(&t["iterations"]) {
            for a in arr(&it["attributes"]) {
                out[2].push(serde_json::json!([
                    t["test"],
                    t["subdir"],
                    it["iteration"],
                    a["attribute"],
                    a["value"]
                ]));
            }
            for p in arr(&it["perf"]) {
                out[3].push(serde_json::json!([
                    t["test"],
                    t["subdir"],
                    it["iteration"],
                    p["key"],
                    num(&p["value"])
                ]));
            }
        }
    }
    for k in arr(&j["keyvals"]) {
        out[4].push(serde_json::json!([k["key"], k["value"]]));
    }
    for d in arr(&j["diagnostics"]) {
        out[5].push(serde_json::json!([
            d["file"],
            num(&d["line"]),
            d["severity"],
            d["message"]
        ]));
    }
    out
}

/// Every API endpoint and page on both stores, compared with the CLI.
#[test]
fn every_endpoint_answers_on_both_stores() -> TestResult {
    for backend in BOTH {
        let f = loaded(backend);
        let srv = serve(&f.url, &[]);
        let a = &srv.addr;

        // Jobs: the fields the issue lists, newest loaded first.
        let r = get(a, "/api/jobs", None);
        assert_eq!(r.status, 200, "{backend:?}: {}", r.body);
        assert!(r.headers.to_ascii_lowercase().contains("application/json"));
        let jobs = r.json();
        let list = jobs["jobs"].as_array().expect("jobs array");
        assert_eq!(
            list.len(),
            9,
            "{backend:?}: 8 example jobs and the hostile one"
        );
        assert_eq!(list[0]["tag"], HOSTILE_TAG, "newest first");
        let mut keys: Vec<&String> = list[0].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "afe_job_id",
                "counts",
                "finished_time",
                "label",
                "machine",
                "queued_time",
                "running",
                "started_time",
                "status",
                "tag",
                "user"
            ]
        );
        // SERVER_JOB is ABORT (no autoserv end markers), as Autotest has it.
        assert_eq!(list[0]["status"], "ABORT", "worst status");
        assert_eq!(
            list[0]["counts"],
            serde_json::json!({"ABORT": 1, "FAIL": 1, "GOOD": 2})
        );
        assert_eq!(list[0]["running"], false);
        assert_eq!(jobs["next_cursor"], Value::Null);
        let vic = list
            .iter()
            .find(|j| j["tag"] == "905-vic/host16")
            .expect("vic");
        assert_eq!(vic["running"], true);
        assert_eq!(vic["status"], "ABORT");

        // Paging: limit 2 walks every job once, in the same order.
        let mut paged = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let path = match &cursor {
                None => "/api/jobs?limit=2".to_owned(),
                Some(c) => format!("/api/jobs?limit=2&cursor={}", enc(c)),
            };
            let page = get(a, &path, None).json();
            for j in page["jobs"].as_array().unwrap() {
                paged.push(j["tag"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let all: Vec<String> = list
            .iter()
            .map(|j| j["tag"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(paged, all, "{backend:?}: paging");

        // Filters.
        let r = get(a, "/api/jobs?status=fail&machine=evil", None).json();
        assert_eq!(r["jobs"].as_array().unwrap().len(), 1);
        // A value with quotes and markup, twice (the second run reuses the
        // statement prepared on this connection).
        for _ in 0..2 {
            let r = get(a, &format!("/api/jobs?test={}", enc(QUOTED_TEST)), None).json();
            let tags: Vec<&Value> = r["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| &j["tag"])
                .collect();
            assert_eq!(tags, [HOSTILE_TAG], "{backend:?}");
        }
        let r = get(a, "/api/jobs?test=sleeptest", None).json();
        assert!(r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["tag"] != HOSTILE_TAG));
        for (q, param) in [
            ("status=bogus", "status"),
            ("since=2011-02-30", "since"),
            ("limit=0", "limit"),
            ("cursor=x", "cursor"),
            ("colour=red", "colour"),
        ] {
            let r = get(a, &format!("/api/jobs?{q}"), None);
            assert_eq!(r.status, 400, "{backend:?} {q}: {}", r.body);
            let e = r.json();
            assert_eq!(e["parameter"], param, "{q}: {e}");
            assert!(!e["error"].as_str().unwrap().contains("SELECT"), "{e}");
        }

        // One job, its tag percent-encoded as one segment: tests with
        // their attributes, iterations and information nested in them.
        let r = get(a, &format!("/api/jobs/{}", enc(HOSTILE_TAG)), None);
        assert_eq!(r.status, 200, "{}", r.body);
        let j = r.json();
        assert_eq!(j["job"]["tag"], HOSTILE_TAG);
        assert_eq!(j["job"]["user"], "eve");
        let tests: Vec<&str> = j["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["test"].as_str().unwrap())
            .collect();
        assert!(
            tests.contains(&"xss") && tests.contains(&QUOTED_TEST),
            "{tests:?}"
        );
        assert!(j["summary"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["information"] == HOSTILE_REASON));
        let quoted = j["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["test"] == QUOTED_TEST)
            .expect("the quoted test");
        assert_eq!(quoted["information"]["message"], HOSTILE_INFO, "{quoted}");
        assert_eq!(quoted["information"]["time"], "2011-03-13 07:06:42");
        let xss = j["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["test"] == "xss")
            .unwrap();
        assert_eq!(xss["information"], Value::Null);
        assert_eq!(
            xss["iterations"],
            serde_json::json!([{"iteration": 1, "attributes": [{"attribute": HOSTILE_KEY, "value": "x"}],
                                "perf": [{"key": HOSTILE_KEY, "value": 1.5}]}])
        );
        for k in ["attributes", "perf", "iterations", "summary"] {
            assert!(
                j.get(k).is_none() || k == "summary",
                "{k}: nested, not flat"
            );
        }
        let tina = get(a, "/api/jobs/903-tina%2Fhost9", None).json();
        let perf_test = &tina["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["test"] == "perf")
            .expect("tina's perf test")["iterations"];
        assert_eq!(
            perf_test[0],
            serde_json::json!({"iteration": 1, "attributes": [], "perf": [{"key": "score", "value": 10.0}]})
        );
        assert_eq!(
            perf_test[1],
            serde_json::json!({"iteration": 2, "attributes": [{"attribute": "mode", "value": "fast"}], "perf": []})
        );
        assert!(
            perf_test[2]["perf"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!({"key": "big", "value": {"$float": "inf"}})),
            "{perf_test}"
        );
        // Every job's nested rows are exactly the export's rows, in order.
        for job in list {
            let tag = job["tag"].as_str().unwrap();
            let api = get(a, &format!("/api/jobs/{}", enc(tag)), None).json();
            assert_eq!(
                flatten_job(&api),
                export_job(&f.url, tag),
                "{backend:?} {tag}"
            );
        }
        let r = get(a, "/api/jobs/no-such%2Fjob", None);
        assert_eq!(r.status, 404);
        assert!(r.json()["error"].as_str().unwrap().contains("no-such/job"));

        // Tests, paged by cursor.
        let r = get(a, "/api/tests?limit=5", None).json();
        assert_eq!(r["tests"].as_array().unwrap().len(), 5);
        let next = r["next_cursor"].as_str().expect("more tests").to_owned();
        let r2 = get(a, &format!("/api/tests?limit=5&cursor={next}"), None).json();
        assert_ne!(r["tests"][0], r2["tests"][0]);
        let all = get(a, "/api/tests?limit=1000", None).json();
        assert_eq!(all["tests"].as_array().unwrap().len(), 36);
        assert_eq!(all["next_cursor"], Value::Null);

        // Stats: the same object as `tko stats --format json`.
        let api = get(a, "/api/stats", None).json();
        let cli: Value =
            serde_json::from_slice(&tko(&["stats", "--format", "json"], &f.url).stdout)?;
        assert_eq!(api, cli, "{backend:?}: stats");
        let api = get(a, "/api/stats?machine=evil", None).json();
        assert_eq!(api["tests"], 4);

        // Running: as `tko summary --running --format json`.
        // A running test's elapsed time runs to "now", which moves between
        // the two reads: compared without it.
        let settle = |mut jobs: Vec<Value>| {
            for line in jobs
                .iter_mut()
                .flat_map(|j| j["lines"].as_array_mut())
                .flatten()
            {
                if line["running"] == true {
                    line["elapsed_s"] = Value::Null;
                }
            }
            jobs
        };
        let api = settle(
            get(a, "/api/running", None).json()["jobs"]
                .as_array()
                .unwrap()
                .clone(),
        );
        let out = tko(&["summary", "--running", "--format", "json"], &f.url);
        // The CLI writes one object per test: grouped by job as the API
        // gives them (the API's job objects also carry totals).
        let mut by_job: Vec<(String, Vec<Value>)> = Vec::new();
        for l in String::from_utf8(out.stdout)?.lines() {
            let mut line: Value = serde_json::from_str(l).expect("json line");
            let job = line["job"].as_str().expect("job").to_string();
            line.as_object_mut().expect("object").remove("job");
            match by_job.last_mut() {
                Some((j, lines)) if *j == job => lines.push(line),
                _ => by_job.push((job, vec![line])),
            }
        }
        let api: Vec<Value> = api
            .into_iter()
            .map(|j| serde_json::json!({"job": j["job"], "lines": j["lines"]}))
            .collect();
        let cli = settle(
            by_job
                .into_iter()
                .map(|(job, lines)| serde_json::json!({"job": job, "lines": lines}))
                .collect(),
        );
        assert_eq!(&api, &cli, "{backend:?}: running");
        assert!(!cli.is_empty());

        // History: as `tko history --format json`.
        let api = get(a, "/api/history?test=sleeptest", None).json();
        let cli: Value = serde_json::from_slice(
            &tko(
                &["history", "sleeptest", "--last", "100", "--format", "json"],
                &f.url,
            )
            .stdout,
        )?;
        assert_eq!(api, cli, "{backend:?}: history");
        assert_eq!(get(a, "/api/history", None).status, 400);

        // The API description.
        let doc = get(a, "/api/openapi.json", None).json();
        for p in [
            "/api/jobs",
            "/api/jobs/{tag}",
            "/api/tests",
            "/api/stats",
            "/api/running",
            "/api/history",
            "/api/history/perf",
        ] {
            assert!(doc["paths"].get(p).is_some(), "openapi lists {p}");
        }
        // The nested job answer is described, down to an iteration's perf.
        let schemas = &doc["components"]["schemas"];
        for (schema, field) in [
            ("JobDetail", "tests"),
            ("TestDetail", "attributes"),
            ("TestDetail", "iterations"),
            ("TestDetail", "information"),
            ("Iteration", "perf"),
        ] {
            assert!(
                schemas[schema]["properties"].get(field).is_some(),
                "openapi: {schema}.{field}"
            );
        }
        let r = get(a, "/api/nothing", None);
        assert_eq!((r.status, r.json()["status"].as_u64()), (404, Some(404)));

        // Pages.
        let home = get(a, "/", None);
        assert_eq!(home.status, 200);
        assert!(home.headers.to_ascii_lowercase().contains("text/html"));
        assert!(home.body.contains("905-vic/host16") && home.body.contains("<form"));
        let p2 = get(a, "/?limit=2", None);
        assert!(p2.body.contains("cursor="), "a next page link");
        let job = get(a, &format!("/jobs/{}", enc("300-frank/host3")), None);
        assert_eq!(job.status, 200, "{}", job.body);
        assert!(job.body.contains("<details"));
        let stats = get(a, "/stats", None);
        assert!(
            stats.status == 200 && stats.body.contains("<svg") && stats.body.contains("polyline")
        );
        let running = get(a, "/running", None);
        assert!(
            running.body.contains("http-equiv=\"refresh\"")
                && running.body.contains("905-vic/host16")
        );
        let hist = get(a, "/history?test=sleeptest", None);
        assert!(hist.status == 200 && hist.body.contains("sleeptest"));
        assert_eq!(get(a, "/jobs/none", None).status, 404);
        assert_eq!(get(a, "/?status=bogus", None).status, 400);
        assert_eq!(get(a, "/style.css", None).status, 200);
    }
    Ok(())
}

/// Hostile values from a results tree are text in every page, never markup.
#[test]
fn hostile_values_render_as_text() -> TestResult {
    for backend in BOTH {
        let f = loaded(backend);
        let srv = serve(&f.url, &[]);
        for path in [
            format!("/jobs/{}", enc(HOSTILE_TAG)),
            "/".to_owned(),
            format!("/history?test={}", enc("xss")),
            format!("/history?test={}", enc(QUOTED_TEST)),
        ] {
            let r = get(&srv.addr, &path, None);
            assert_eq!(r.status, 200, "{path}");
            assert!(
                !r.body.contains("<script"),
                "{backend:?} {path}: raw script element"
            );
            assert!(
                !r.body.contains("<b>") && !r.body.contains("<i>lab"),
                "{path}: raw markup"
            );
        }
        let job = get(&srv.addr, &format!("/jobs/{}", enc(HOSTILE_TAG)), None).body;
        assert!(
            job.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{job}"
        );
        assert!(job.contains("it's &quot;quoted&quot; &lt;b&gt;"), "{job}");
        // The information message and the iteration's key, nested in the
        // test row, are text too.
        assert!(job.contains("&lt;img src=x onerror=alert(2)&gt;"), "{job}");
        assert!(!job.contains("<img"), "{job}");
        assert!(job.contains("lat&lt;script&gt;x&lt;/script&gt;"), "{job}");
    }
    Ok(())
}

/// One perf key over time and over kernels: the values as JSON and as a
/// server-side SVG plot, hostile kernel and key names as text.
#[test]
fn perf_key_history_is_plotted() -> TestResult {
    for backend in BOTH {
        let f = loaded(backend);
        load_perf_jobs(&f);
        let srv = serve(&f.url, &[]);
        let a = &srv.addr;

        let r = get(a, "/api/history/perf?test=bench&key=lat", None);
        assert_eq!(r.status, 200, "{backend:?}: {}", r.body);
        let v = r.json();
        assert_eq!((&v["test"], &v["key"]), (&"bench".into(), &"lat".into()));
        let pts = v["points"].as_array().unwrap();
        let got: Vec<(f64, &str, &str, i64)> = pts
            .iter()
            .map(|p| {
                (
                    p["value"].as_f64().unwrap(),
                    p["kernel"].as_str().unwrap(),
                    p["job"].as_str().unwrap(),
                    p["iteration"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (3.5, HOSTILE_KERNEL, "803-pat/perfhost", 1),
                (4.5, HOSTILE_KERNEL, "803-pat/perfhost", 2),
                (2.5, "5.2", "802-pat/perfhost", 1),
                (1.5, "5.1", "801-pat/perfhost", 1),
            ],
            "{backend:?}: newest run first"
        );
        assert_eq!(pts[0]["time"], "2011-03-13 07:56:40");
        assert_eq!(pts[0]["machine"], "perfhost");
        let r = get(
            a,
            "/api/history/perf?test=bench&key=lat&last=2&kernel=5.*",
            None,
        )
        .json();
        assert_eq!(r["points"].as_array().unwrap().len(), 2, "{r}");
        assert_eq!(r["points"][0]["kernel"], "5.2");
        for (q, param) in [
            ("test=bench", "key"),
            ("key=lat", "test"),
            ("test=bench&key=lat&by=kernel", "by"),
            ("test=bench&key=lat&last=0", "last"),
        ] {
            let r = get(a, &format!("/api/history/perf?{q}"), None);
            assert_eq!(r.status, 400, "{q}: {}", r.body);
            assert_eq!(r.json()["parameter"], param, "{q}");
        }
        assert_eq!(
            get(a, "/history?test=bench&key=lat&by=bogus", None).status,
            400
        );

        // Over time: a dot per value, the key list, hostile names as text.
        let page = get(a, "/history?test=bench&key=lat", None);
        assert_eq!(page.status, 200, "{}", page.body);
        let b = &page.body;
        assert!(b.contains("aria-label=\"lat of bench by time\""), "{b}");
        assert_eq!(b.matches("<circle").count(), 4, "{b}");
        assert!(b.contains("<polyline"), "{b}");
        assert!(b.contains("2011-03-13 07:23:20") && b.contains("2011-03-13 07:56:40"));
        assert!(
            b.contains("lat&lt;script&gt;x&lt;/script&gt;"),
            "key list: {b}"
        );
        assert!(b.contains(&format!("key={}", enc(HOSTILE_KEY))), "{b}");
        // Over kernels: one column per kernel, oldest first, labels escaped.
        let b = get(a, "/history?test=bench&key=lat&by=kernel", None).body;
        assert!(b.contains("aria-label=\"lat of bench by kernel\""), "{b}");
        assert_eq!(b.matches("<circle").count(), 4, "{b}");
        let labels: Vec<&str> = b
            .split("<text class=\"x\"")
            .skip(1)
            .map(|t| {
                t.split_once('>')
                    .unwrap()
                    .1
                    .split_once("</text>")
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(labels, ["5.1", "5.2", "&lt;i&gt;6.0&lt;/i&gt;"], "{b}");
        assert!(!b.contains("<i>"), "{b}");
        // The hostile key's own plot.
        let b = get(
            a,
            &format!("/history?test=bench&key={}", enc(HOSTILE_KEY)),
            None,
        )
        .body;
        assert_eq!(b.matches("<circle").count(), 2, "{b}");
        assert!(!b.contains("<script"), "{b}");
        assert!(b.contains("lat&lt;script&gt;x&lt;/script&gt; of bench by time"));
    }
    Ok(())
}

/// A database failure is a JSON 503 that shows no SQL and no server
/// detail; the broken connection is dropped and the next request works.
#[test]
fn a_lost_connection_is_a_json_503_then_recovers() -> TestResult {
    let f = loaded(Backend::Postgres);
    let srv = serve(&f.url, &[]);
    let a = &srv.addr;
    assert_eq!(get(a, "/api/jobs", None).status, 200);
    let mut admin = postgres::Client::connect(&f.url, postgres::NoTls)?;
    admin.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )?;
    let r = get(a, "/api/jobs", None);
    assert_eq!(r.status, 503, "{}", r.body);
    let e = r.json();
    assert_eq!(e["status"], 503);
    let msg = e["error"].as_str().unwrap();
    for leak in ["SELECT", "COPY", "tko_", "terminat", "FATAL"] {
        assert!(!msg.contains(leak), "{leak} in {msg}");
    }
    let page = get(a, "/jobs/x", None);
    assert!(page.status == 200 || page.status == 404, "{}", page.status);
    assert_eq!(get(a, "/api/jobs", None).status, 200, "reconnected");
    Ok(())
}

/// With a token file every request needs the token; off loopback the
/// token file is required.
#[test]
fn the_token_rule() -> TestResult {
    let f = loaded(Backend::Sqlite);
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n")?;
    let tf = token_file.to_str().unwrap();
    let srv = serve(&f.url, &["--token-file", tf]);
    for path in ["/api/jobs", "/", "/api/openapi.json", "/nothing"] {
        assert_eq!(
            get(&srv.addr, path, None).status,
            401,
            "{path} without token"
        );
        assert_eq!(
            get(&srv.addr, path, Some("s3cret-toke")).status,
            401,
            "{path} prefix"
        );
        assert_eq!(
            get(&srv.addr, path, Some("s3cret-token2")).status,
            401,
            "{path} longer"
        );
    }
    assert_eq!(
        get(&srv.addr, "/api/jobs", Some("s3cret-token")).status,
        200
    );
    assert_eq!(get(&srv.addr, "/", Some("s3cret-token")).status, 200);
    drop(srv);

    // 0.0.0.0 without a token: refused, saying why.
    let out = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["serve", "--db", &f.url, "--listen", "0.0.0.0:0"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("0.0.0.0"),
        "{err}"
    );

    // With one it starts (and still wants the token).
    let srv = serve_on(&f.url, "0.0.0.0:0", &["--token-file", tf]);
    let port = srv.addr.rsplit(':').next().unwrap().to_owned();
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(get(&addr, "/api/jobs", None).status, 401);
    assert_eq!(get(&addr, "/api/jobs", Some("s3cret-token")).status, 200);
    Ok(())
}

/// The server's connections cannot write: SQLite is opened read-only,
/// PostgreSQL sessions are read-only with a statement timeout.
#[test]
fn connections_are_read_only() -> TestResult {
    use tko::query::Warehouse;
    for backend in BOTH {
        let f = loaded(backend);
        let mut wh = Warehouse::open_read_only(&f.url, 1234)?;
        match &mut wh {
            Warehouse::Sqlite(s) => {
                let e = s
                    .connection()
                    .execute("DELETE FROM tko_jobs", [])
                    .expect_err("a read-only connection");
                assert!(
                    e.to_string().contains("readonly")
                        || e.to_string().contains("read-only")
                        || e.to_string().contains("query_only"),
                    "{e}"
                );
            }
            Warehouse::Postgres(pg) => {
                let e = pg
                    .client()
                    .batch_execute("DELETE FROM tko_jobs")
                    .expect_err("a read-only session");
                assert!(format!("{e:?}").contains("read-only"), "{e:?}");
                let t: String = pg.client().query_one("SHOW statement_timeout", &[])?.get(0);
                assert_eq!(t, "1234ms");
            }
        }
        // A missing SQLite file is not created.
        if backend == Backend::Sqlite {
            let dir = tempfile::tempdir()?;
            let missing = dir.path().join("none.db");
            assert!(
                Warehouse::open_read_only(&format!("sqlite:{}", missing.display()), 1).is_err()
            );
            assert!(!missing.exists());
        }
    }
    Ok(())
}

/// Debian's Chromium, headless, renders the pages: job tags listed, a job
/// page's tests, the hostile reason as text and no injected script.
#[test]
fn chromium_renders_the_pages() -> TestResult {
    let browser = Path::new("/usr/bin/chromium");
    assert!(
        browser.exists(),
        "/usr/bin/chromium is missing: install Debian's chromium (`apt-get install -y chromium`, \
         as .ci/run does); this test never skips"
    );
    let f = loaded(Backend::Sqlite);
    load_perf_jobs(&f);
    let srv = serve(&f.url, &[]);
    let dump = |path: &str| -> String {
        let profile = tempfile::tempdir().expect("profile dir");
        let out = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("http://{}{path}", srv.addr))
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 DOM")
    };
    let home = dump("/");
    for tag in ["123-alice/host1", "905-vic/host16", HOSTILE_TAG] {
        assert!(home.contains(tag), "jobs list shows {tag}: {home}");
    }
    let job = dump(&format!("/jobs/{}", enc(HOSTILE_TAG)));
    assert!(job.contains("<td class=\"test\">xss</td>"), "{job}");
    // The DOM serialises the text back escaped: present as text only.
    assert!(
        job.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{job}"
    );
    assert!(
        !job.to_ascii_lowercase().contains("<script"),
        "no script element: {job}"
    );
    assert!(job.contains("it's \"quoted\" &lt;b&gt;"), "{job}");
    let frank = dump(&format!("/jobs/{}", enc("300-frank/host3")));
    assert!(frank.contains("class=\"summary\""), "{frank}");
    // The perf plot over kernels: an SVG in the DOM, a dot per value, the
    // hostile kernel a text node of an axis label.
    let plot = dump("/history?test=bench&key=lat&by=kernel");
    assert!(plot.contains("<svg"), "{plot}");
    assert_eq!(plot.matches("<circle").count(), 4, "{plot}");
    assert!(plot.contains(">&lt;i&gt;6.0&lt;/i&gt;</text>"), "{plot}");
    assert!(!plot.contains("<i>"), "no <i> element: {plot}");
    Ok(())
}
