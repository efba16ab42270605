//! `tko export`, `tko summary` and `tko stats` on real databases (a temp
//! SQLite file and a throwaway PostgreSQL, see `support::pg`): the bundled
//! example tree is loaded into each, and every output is compared byte for
//! byte with the files under `fixtures/expected/` — the same file for both
//! backends, so they agree with each other too. `TKO_BLESS=1 cargo test
//! --test export` rewrites the expected files from the SQLite run (review
//! the diff before committing).

mod support;

use std::path::{Path, PathBuf};
use support::{fresh, job, kernel, test, Backend, TestResult};
use tko::export::{self, ExportQuery, Filter, Format, Kind, Warehouse};
use tko::model::{Iteration, PerfValue, Status, Value};
use tko::report;
use tko::store::{self, LoadItem};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Loads `fixtures/example-results` (scheduler layout, level 2).
fn load_example(url: &str) {
    let (dirs, errors) =
        tko::discover::find_jobs(&[manifest().join("fixtures/example-results")], 2);
    assert!(errors.is_empty(), "{errors:?}");
    let parsed: Vec<_> = tko::ingest::parse_all(&dirs)
        .into_iter()
        .map(|p| p.expect("fixtures are readable"))
        .collect();
    let items: Vec<LoadItem<'_>> = parsed
        .iter()
        .filter(|p| p.status_file.is_some())
        .map(|p| LoadItem {
            job: &p.job,
            source: p.path.clone(),
            fingerprint: p.fingerprint.clone(),
            force: false,
            read_at: None,
        })
        .collect();
    let mut s = store::open(url).expect("open");
    s.init().expect("init");
    for r in s.load_jobs(&items) {
        r.expect("load");
    }
}

/// Compares `actual` with `fixtures/expected/<name>`; `TKO_BLESS=1`
/// rewrites the file (from the SQLite run only).
fn check_expected(backend: Backend, name: &str, actual: &str) {
    let path = manifest().join("fixtures/expected").join(name);
    if std::env::var_os("TKO_BLESS").is_some() && backend == Backend::Sqlite {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write expected");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `TKO_BLESS=1 cargo test --test export` to create it)",
            path.display()
        )
    });
    assert!(
        actual == want,
        "{backend:?}: output differs from {}\n--- expected\n{want}\n--- actual\n{actual}",
        path.display()
    );
}

fn export_text(wh: &mut Warehouse, q: &ExportQuery, format: Format) -> (String, u64) {
    let mut out = Vec::new();
    let n = export::write(wh, q, format, &mut out).expect("export");
    (String::from_utf8(out).expect("utf-8"), n)
}

fn all(kind: Kind) -> ExportQuery {
    ExportQuery::new(kind, Filter::default())
}

/// Data rows of a CSV text (header excluded), splitting on line ends that
/// are outside quotes.
fn csv_records(text: &str) -> u64 {
    let mut in_q = false;
    let mut n = 0;
    for c in text.chars() {
        match c {
            '"' => in_q = !in_q,
            '\n' if !in_q => n += 1,
            _ => {}
        }
    }
    n - 1
}

// ---------------------------------------------------------------- exports

fn exports_match_expected_files(backend: Backend) -> TestResult {
    let f = fresh(backend);
    load_example(&f.url);
    let mut wh = Warehouse::open(&f.url)?;
    for kind in Kind::ALL {
        let (csv, n) = export_text(&mut wh, &all(kind), Format::Csv);
        assert_eq!(n, csv_records(&csv), "{kind:?} row count");
        check_expected(backend, &format!("export-{}.csv", kind.name()), &csv);
    }
    let wide = ExportQuery {
        wide: true,
        ..all(Kind::Perf)
    };
    let (csv, _) = export_text(&mut wh, &wide, Format::Csv);
    check_expected(backend, "export-perf-wide.csv", &csv);
    for kind in [Kind::Tests, Kind::Perf, Kind::Jobs] {
        let (json, n) = export_text(&mut wh, &all(kind), Format::Json);
        assert_eq!(n as usize, json.lines().count());
        for line in json.lines() {
            serde_json::from_str::<serde_json::Value>(line)?;
        }
        check_expected(backend, &format!("export-{}.jsonl", kind.name()), &json);
    }
    Ok(())
}

#[test]
fn exports_match_expected_files_sqlite() -> TestResult {
    exports_match_expected_files(Backend::Sqlite)
}

#[test]
fn exports_match_expected_files_postgres() -> TestResult {
    exports_match_expected_files(Backend::Postgres)
}

/// Filters select the same rows on both backends, and the right ones.
#[test]
fn filters_agree_across_backends() -> TestResult {
    let lite = fresh(Backend::Sqlite);
    let pg = fresh(Backend::Postgres);
    load_example(&lite.url);
    load_example(&pg.url);
    let mut a = Warehouse::open(&lite.url)?;
    let mut b = Warehouse::open(&pg.url)?;
    let t = |s: &str, end| export::parse_time(s, end).expect("time");
    let cases: Vec<(Kind, Filter, u64)> = vec![
        (
            Kind::Tests,
            Filter {
                job: Some("123-*".into()),
                ..Filter::default()
            },
            4,
        ),
        (
            Kind::Tests,
            Filter {
                status: vec![Status::Fail, Status::Abort],
                ..Filter::default()
            },
            7,
        ),
        (
            Kind::Tests,
            Filter {
                test: Some("sleep?est".into()),
                machine: Some("host*".into()),
                ..Filter::default()
            },
            5,
        ),
        (
            Kind::Tests,
            Filter {
                kernel: Some("2.6.35*".into()),
                label: Some("kernel".into()),
                ..Filter::default()
            },
            5,
        ),
        (
            Kind::Tests,
            Filter {
                since: Some(t("2011-03-13 07:06:50", false)),
                until: Some(t("2011-03-13", true)),
                ..Filter::default()
            },
            10,
        ),
        (
            Kind::Tests,
            Filter {
                until: Some(t("2011-03-12", true)),
                ..Filter::default()
            },
            0,
        ),
        // Job-level kinds keep jobs with a matching test.
        (
            Kind::Jobs,
            Filter {
                status: vec![Status::Fail],
                ..Filter::default()
            },
            1,
        ),
        (
            Kind::Perf,
            Filter {
                job: Some("9*".into()),
                ..Filter::default()
            },
            0,
        ),
        (Kind::Keyvals, Filter::job("123-alice/host1"), 0),
        // LIKE/GLOB metacharacters are literal.
        (
            Kind::Tests,
            Filter {
                job: Some("123_alice*".into()),
                ..Filter::default()
            },
            0,
        ),
        (
            Kind::Tests,
            Filter {
                job: Some("%".into()),
                ..Filter::default()
            },
            0,
        ),
        (
            Kind::Tests,
            Filter {
                label: Some("it's \\\\ [x]".into()),
                ..Filter::default()
            },
            0,
        ),
    ];
    for (kind, filter, want) in cases {
        let q = ExportQuery::new(kind, filter.clone());
        let (x, n) = export_text(&mut a, &q, Format::Csv);
        let (y, m) = export_text(&mut b, &q, Format::Csv);
        assert_eq!(x, y, "{kind:?} {filter:?}");
        assert_eq!(n, m);
        if kind != Kind::Perf && kind != Kind::Keyvals {
            assert_eq!(n, want, "{kind:?} {filter:?}\n{x}");
        }
        let (x, _) = export_text(&mut a, &q, Format::Json);
        let (y, _) = export_text(&mut b, &q, Format::Json);
        assert_eq!(x, y, "json {kind:?} {filter:?}");
    }
    // A NUL cannot be stored, so a filter with one is refused on PostgreSQL
    // (where it would have to go into the COPY text).
    let q = ExportQuery::new(
        Kind::Tests,
        Filter {
            test: Some("a\0b".into()),
            ..Filter::default()
        },
    );
    let mut out = Vec::new();
    assert!(matches!(
        export::write(&mut b, &q, Format::Csv, &mut out),
        Err(export::Error::Filter(_))
    ));
    Ok(())
}

/// Awkward text and floats come out identically from both backends, and
/// CSV quoting round-trips.
#[test]
fn hostile_values_agree_across_backends() -> TestResult {
    let k = kernel("2.6.99", &[]);
    let mut t = test("we,ird \"name\"", Some("sub\tdir"), Status::Fail, &k);
    t.reason = Some("line one\nline two\r\n back\\slash 'quote' ünïcode, \\N".into());
    t.attributes.insert("empty", Value::Str(String::new()));
    t.attributes.insert("none", Value::None);
    t.attributes.insert("f", Value::Float(0.1));
    let values = [
        0.1,
        -0.0,
        1e20,
        1.5e-5,
        123_456_789_012_345.6,
        1e15,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        2.0 / 3.0,
    ];
    t.iterations.push(Iteration {
        index: 1,
        attr: [("a,b".to_string(), "\"".to_string())].into(),
        perf: values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i:02}"), PerfValue::Float(*v)))
            .chain([("raw".to_string(), PerfValue::Raw("n/a".into()))])
            .collect(),
    });
    let mut j = job("1-x/y", "y", vec![t]);
    j.label = Some("it's \\ [x]".into());
    j.keyval.insert("multi", Value::Str("a\nb\tc\\d".into()));
    let urls = [fresh(Backend::Sqlite), fresh(Backend::Postgres)];
    let mut outs = Vec::new();
    for f in &urls {
        let mut s = store::open(&f.url)?;
        s.init()?;
        s.load_jobs(&[support::item(&j, "fp")])
            .pop()
            .expect("one")?;
        let mut wh = Warehouse::open(&f.url)?;
        let mut text = String::new();
        for kind in Kind::ALL {
            for format in [Format::Csv, Format::Json] {
                text.push_str(&export_text(&mut wh, &all(kind), format).0);
            }
        }
        let wide = ExportQuery {
            wide: true,
            ..all(Kind::Perf)
        };
        text.push_str(&export_text(&mut wh, &wide, Format::Csv).0);
        // The label filter with a quote, a backslash and a bracket matches.
        let q = ExportQuery::new(
            Kind::Tests,
            Filter {
                label: Some("it's \\\\ [x]".into()),
                ..Filter::default()
            },
        );
        assert_eq!(
            export_text(&mut wh, &q, Format::Csv).1,
            1,
            "{:?}",
            f.backend
        );
        outs.push(text);
    }
    assert_eq!(outs[0], outs[1]);
    let perf = &outs[0];
    for want in [
        ",k00,0.1\n",
        ",k01,0\n",
        ",k02,1e+20\n",
        ",k03,1.5e-05\n",
        ",k04,123456789012345.6\n",
        ",k05,1e+15\n",
        ",k06,1.7976931348623157e+308\n",
        ",k07,2.2250738585072014e-308\n",
        ",k08,5e-324\n",
        ",k09,Infinity\n",
        ",k10,-Infinity\n",
        ",k11,\n",
        ",raw,\n",
        "\"line one\nline two\r\n back\\slash 'quote' ünïcode, \\N\"",
        "\"we,ird \"\"name\"\"\"",
        "\"key\":\"k09\",\"value\":{\"$float\":\"inf\"}",
    ] {
        assert!(perf.contains(want), "missing {want:?} in\n{perf}");
    }
    Ok(())
}

/// `pg_float` is PostgreSQL's own float8 output, checked on many values.
#[test]
fn float_text_matches_postgres() -> TestResult {
    let f = fresh(Backend::Postgres);
    let mut c = postgres::Client::connect(&f.url, postgres::NoTls)?;
    c.batch_execute("SET extra_float_digits = 1")?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut values = Vec::new();
    for i in 0..30_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = match i % 5 {
            0 => f64::from_bits(x),
            1 => (x % 1_000_000) as f64 / 10f64.powi((x % 12) as i32),
            // Near ties and halfway points: 2^50..2^57 with binary fractions.
            2 => (x % (1 << 57)) as f64 + [0.25, 0.5, 0.75, 0.0][(x % 4) as usize],
            3 => ((x % 100_000_000_000_000) as f64 + 1e17) * 10f64.powi((x % 5) as i32 - 2),
            _ => (x as f64) * 10f64.powi((x % 40) as i32 - 20),
        };
        if v.is_finite() {
            values.push(v);
        }
    }
    let rows = c.query(
        "SELECT v, v::text FROM unnest($1::float8[]) AS v",
        &[&values],
    )?;
    for r in rows {
        let v: f64 = r.get(0);
        let text: String = r.get(1);
        let mut mine = String::new();
        export::pg_float(v, &mut mine);
        assert_eq!(mine, text, "{v:e}");
    }
    Ok(())
}

// ---------------------------------------------------------------- summary

/// "Now" for the summaries: a running test in a job without a finished
/// time counts its elapsed time up to here.
const NOW: i64 = 1_300_000_200;

fn summary_of(wh: &mut Warehouse, tag: &str) -> String {
    let mut records = report::Records::default();
    wh.export(
        &ExportQuery {
            information: true,
            ..ExportQuery::new(Kind::Tests, Filter::job(tag))
        },
        &mut records,
    )
    .expect("export");
    let mut out = Vec::new();
    report::write_summary(&mut out, tag, &report::summarize(&records.records, NOW)).expect("write");
    String::from_utf8(out).expect("utf-8")
}

fn summaries_match_expected_files(backend: Backend) -> TestResult {
    let f = fresh(backend);
    load_example(&f.url);
    let mut wh = Warehouse::open(&f.url)?;
    for tag in ["123-alice/host1", "400-gina/host5", "905-vic/host16"] {
        let text = summary_of(&mut wh, tag);
        check_expected(
            backend,
            &format!("summary-{}.txt", tag.replace('/', "-")),
            &text,
        );
    }
    Ok(())
}

#[test]
fn summaries_match_expected_files_sqlite() -> TestResult {
    summaries_match_expected_files(Backend::Sqlite)
}

#[test]
fn summaries_match_expected_files_postgres() -> TestResult {
    summaries_match_expected_files(Backend::Postgres)
}

/// A job directory read without a database summarizes as the warehouse does.
#[test]
fn summary_of_a_directory_matches_the_warehouse() -> TestResult {
    for tag in ["123-alice/host1", "400-gina/host5", "905-vic/host16"] {
        let dir: &Path = &manifest().join("fixtures/example-results").join(tag);
        let (dirs, errors) = tko::discover::find_jobs(&[dir.to_path_buf()], 2);
        assert!(errors.is_empty());
        let jobs: Vec<_> = tko::ingest::parse_jobs(&dirs)
            .into_iter()
            .collect::<Result<_, _>>()?;
        assert_eq!(jobs.len(), 1);
        let mut out = Vec::new();
        let lines = report::summarize(&report::records_from_job(&jobs[0]), NOW);
        report::write_summary(&mut out, &jobs[0].tag, &lines)?;
        let want = std::fs::read_to_string(
            manifest()
                .join("fixtures/expected")
                .join(format!("summary-{}.txt", tag.replace('/', "-"))),
        )?;
        assert_eq!(String::from_utf8(out)?, want, "{tag}");
    }
    Ok(())
}

// ---------------------------------------------------------------- stats

fn stats_match_expected_files(backend: Backend) -> TestResult {
    let f = fresh(backend);
    load_example(&f.url);
    let mut wh = Warehouse::open(&f.url)?;
    let mut b = report::StatsBuilder::default();
    wh.export(&all(Kind::Tests), &mut b)?;
    let st = b.build();
    let mut json = Vec::new();
    report::write_stats_json(&mut json, &st)?;
    check_expected(backend, "stats.json", &String::from_utf8(json)?);
    let mut text = Vec::new();
    report::write_stats_text(&mut text, &st)?;
    check_expected(backend, "stats.txt", &String::from_utf8(text)?);
    // Filtered: one label.
    let mut b = report::StatsBuilder::default();
    let q = ExportQuery::new(
        Kind::Tests,
        Filter {
            label: Some("word".into()),
            ..Filter::default()
        },
    );
    wh.export(&q, &mut b)?;
    let st = b.build();
    assert_eq!((st.tests, st.jobs, st.running), (4, 1, 1));
    assert_eq!(st.flaky.len(), 1, "{:?}", st.flaky);
    Ok(())
}

#[test]
fn stats_match_expected_files_sqlite() -> TestResult {
    stats_match_expected_files(Backend::Sqlite)
}

#[test]
fn stats_match_expected_files_postgres() -> TestResult {
    stats_match_expected_files(Backend::Postgres)
}
