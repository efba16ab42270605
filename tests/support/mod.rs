//! Test support: a throwaway PostgreSQL (`pg`), hand-built jobs, and a small
//! reader that runs the same SQL on either backend.

#![allow(dead_code)] // each helper is used by some, not all, test modules

pub(crate) mod pg;

use std::collections::BTreeMap;
use tko::model::{Iteration, Job, Kernel, Patch, PerfValue, Status, Test, Value};
use tko::store::LoadItem;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Which backend a shared test body runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Undoes migration 006 (the perf cache and its triggers), per backend in
/// [`Backend`] order.
pub(crate) const UNDO_006: [&str; 2] = [
    "DROP TRIGGER tko_perf_cache_insert; DROP TRIGGER tko_perf_cache_delete; \
     DROP TRIGGER tko_perf_cache_update; \
     DROP TABLE tko_perf_cache; DROP TABLE tko_perf_cache_kernels",
    "DROP TRIGGER tko_perf_cache_insert ON tko_tests; DROP TRIGGER tko_perf_cache_delete ON tko_tests; \
     DROP TRIGGER tko_perf_cache_update ON tko_tests; DROP TRIGGER tko_perf_cache_truncate ON tko_tests; \
     DROP FUNCTION tko_perf_cache_forget(); DROP FUNCTION tko_perf_cache_forget_all(); \
     DROP TABLE tko_perf_cache; DROP TABLE tko_perf_cache_kernels",
];

/// A fresh database of `backend`: its URL (and the temp dir to keep alive).
pub(crate) struct Fresh {
    pub(crate) url: String,
    pub(crate) backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if self.backend == Backend::Postgres {
            pg::drop_database(&self.url);
        }
    }
}

pub(crate) fn fresh(backend: Backend) -> Fresh {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            Fresh {
                url: format!("sqlite:{}", dir.path().join("tko.db").display()),
                backend,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => Fresh {
            url: pg::fresh_database_url(),
            backend,
            _dir: None,
        },
    }
}

/// A direct connection for reading back (and poking) a test database.
pub(crate) enum Db {
    Pg(postgres::Client),
    Lite(rusqlite::Connection),
}

impl Db {
    pub(crate) fn open(f: &Fresh) -> Db {
        match f.backend {
            Backend::Postgres => {
                Db::Pg(postgres::Client::connect(&f.url, postgres::NoTls).expect("connect"))
            }
            Backend::Sqlite => Db::Lite(
                rusqlite::Connection::open(f.url.strip_prefix("sqlite:").expect("sqlite url"))
                    .expect("open"),
            ),
        }
    }

    /// Runs `sql` (every selected column must already be text) → rows.
    pub(crate) fn texts(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        match self {
            Db::Pg(c) => c
                .query(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .iter()
                .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                .collect(),
            Db::Lite(c) => {
                let mut s = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
                let n = s.column_count();
                s.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows")
            }
        }
    }

    /// Runs `sql` selecting one integer.
    pub(crate) fn int(&mut self, sql: &str) -> i64 {
        match self {
            Db::Pg(c) => c
                .query_one(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .get(0),
            Db::Lite(c) => c
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
        }
    }

    /// Runs `sql` selecting one nullable float column.
    pub(crate) fn floats(&mut self, sql: &str) -> Vec<Option<f64>> {
        match self {
            Db::Pg(c) => c
                .query(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .iter()
                .map(|r| r.get(0))
                .collect(),
            Db::Lite(c) => {
                let mut s = c.prepare(sql).expect("prepare");
                s.query_map([], |r| r.get(0))
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows")
            }
        }
    }

    /// Runs a statement without results.
    pub(crate) fn exec(&mut self, sql: &str) {
        match self {
            Db::Pg(c) => c
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
            Db::Lite(c) => c
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
        }
    }
}

pub(crate) fn kernel(base: &str, patch_refs: &[&str]) -> Kernel {
    Kernel::new(
        base.into(),
        patch_refs
            .iter()
            .enumerate()
            .map(|(i, r)| Patch {
                spec: format!("spec{i}"),
                reference: (*r).into(),
                hash: format!("hash{i}"),
            })
            .collect(),
    )
}

pub(crate) fn test(name: &str, subdir: Option<&str>, status: Status, kernel: &Kernel) -> Test {
    Test {
        subdir: subdir.map(Into::into),
        testname: name.into(),
        status,
        reason: Some(format!("{name} finished")),
        started_time: Some(1_300_000_000),
        finished_time: Some(1_300_000_060),
        machine: String::new(),
        kernel: kernel.clone(),
        attributes: Default::default(),
        iterations: Vec::new(),
        labels: Vec::new(),
        information: None,
    }
}

pub(crate) fn with_iterations(mut t: Test, n: u32) -> Test {
    for index in 1..=n {
        let mut attr = BTreeMap::new();
        attr.insert("mode".to_string(), format!("m{index}"));
        let mut perf = BTreeMap::new();
        perf.insert(
            "throughput".to_string(),
            PerfValue::Float(f64::from(index) * 1.5),
        );
        perf.insert("latency".to_string(), PerfValue::Float(2.0));
        attr.insert("ks".to_string(), "v".to_string());
        t.iterations.push(Iteration {
            index,
            attr: attr.into(),
            perf: perf.into(),
        });
    }
    t.attributes.insert("version", Value::Int(u128::from(n)));
    t.attributes.insert("sysinfo", Value::Str("x".into()));
    t
}

pub(crate) fn job(tag: &str, machine: &str, tests: Vec<Test>) -> Job {
    let mut keyval = BTreeMap::new();
    keyval.insert("user".to_string(), Value::Str("alice".into()));
    keyval.insert("job_queued".to_string(), Value::Int(1_299_999_000));
    Job {
        tag: tag.into(),
        afe_job_id: tag.split('-').next().and_then(|s| s.parse().ok()),
        status_version: 1,
        label: Some(format!("label of {tag}")),
        user: Some("alice".into()),
        machine: machine.into(),
        machine_group: "x86_64".into(),
        machine_owner: Some("lab".into()),
        queued_time: Some(1_299_999_000),
        started_time: Some(1_299_999_500),
        finished_time: Some(1_300_000_100),
        aborted_by: None,
        aborted_on: None,
        keyval: keyval.into(),
        tests: tests
            .into_iter()
            .map(|mut t| {
                t.machine = machine.into();
                t
            })
            .collect(),
        diagnostics: Vec::new(),
    }
}

pub(crate) fn item<'a>(job: &'a Job, fingerprint: &str) -> LoadItem<'a> {
    LoadItem {
        job,
        source: format!("/results/{}", job.tag).into(),
        fingerprint: fingerprint.into(),
        force: false,
        read_at: None,
    }
}

/// The job-tree contents of a database without ids, for comparing a
/// database with an expectation or with another database.
pub(crate) fn contents(db: &mut Db) -> Vec<Vec<Option<String>>> {
    let mut out = db.texts(
        "SELECT job_tag, test_name, subdir, status, kernel_hash, kernel_base, hostname, platform, \
            machine_owner, job_name, job_owner, reason, CAST(test_started_time AS TEXT), \
            CAST(test_finished_time AS TEXT), CAST(job_queued_time AS TEXT), \
            CAST(afe_job_id AS TEXT) \
         FROM tko_test_view_2 ORDER BY job_tag, test_name, subdir, reason",
    );
    out.extend(db.texts(
        "SELECT j.tag, t.test, a.attribute, a.value FROM tko_test_attributes a \
         JOIN tko_tests t ON t.test_idx = a.test_idx JOIN tko_jobs j ON j.job_idx = t.job_idx \
         ORDER BY 1, 2, 3, 4",
    ));
    out.extend(db.texts(
        "SELECT job_tag, test_name, CAST(iteration AS TEXT), iteration_key \
         FROM tko_perf_view_2 WHERE iteration IS NOT NULL ORDER BY 1, 2, 3, 4",
    ));
    let values = db.floats(
        "SELECT iteration_value FROM tko_perf_view_2 WHERE iteration IS NOT NULL \
         ORDER BY job_tag, test_name, iteration, iteration_key",
    );
    out.push(values.iter().map(|v| v.map(|f| format!("{f:?}"))).collect());
    out.extend(db.texts(
        "SELECT j.tag, k.key, k.value FROM tko_job_keyvals k JOIN tko_jobs j ON j.job_idx = k.job_id \
         ORDER BY 1, 2",
    ));
    out.extend(db.texts(
        "SELECT j.tag, t.test, t.subdir, i.message, CAST(i.info_time AS TEXT) \
         FROM tko_test_information i JOIN tko_tests t ON t.test_idx = i.test_idx \
         JOIN tko_jobs j ON j.job_idx = i.job_idx ORDER BY 1, 2, 3, 4",
    ));
    for t in [
        "tko_jobs",
        "tko_machines",
        "tko_kernels",
        "tko_patches",
        "tko_tests",
        "tko_iteration_attributes",
    ] {
        out.push(vec![
            Some(t.to_string()),
            Some(db.int(&format!("SELECT count(*) FROM {t}")).to_string()),
        ]);
    }
    out
}
