//! Flat row structs, one per warehouse table, each with its `COLUMNS` const:
//! the single description of what the loaders write, shared by PostgreSQL's
//! binary COPY, SQLite's prepared INSERTs and (later) CSV export. This module
//! turns a [`Job`] into rows once database ids are known ([`JobTreeRows`]);
//! it talks to no database and reads no files (see `store`).
//!
//! Strings are sanitized here so both stores hold the same text: Latin-1
//! bytes become Latin-1 text ([`crate::text::stored`]), NUL (which
//! PostgreSQL `text` cannot hold) becomes U+FFFD, and a value longer than
//! its TKO column holds ([`Limit`]) is cut to what fits; the job gets a
//! warning diagnostic for each.

use crate::model::{Diagnostic, Job, Kernel, Patch, Severity, Status, Timestamp};

/// Longest text (in characters, as MySQL's `varchar(N)` counts) each
/// capped column holds: the wider of TKO's two lineages (spec §5.1; L is
/// `schema_068.sql`, D the Django schema). Natural keys (`tag`, `hostname`,
/// `kernel_hash`) are never cut: two jobs or machines would become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// `table.column`, for the diagnostic.
    pub column: &'static str,
    /// Characters.
    pub chars: usize,
}

impl Limit {
    /// `tko_tests.test varchar(300)`.
    pub const TEST: Limit = Limit {
        column: "tko_tests.test",
        chars: 300,
    };
    /// `tko_tests.subdir varchar(300)`.
    pub const SUBDIR: Limit = Limit {
        column: "tko_tests.subdir",
        chars: 300,
    };
    /// `tko_tests.reason varchar(3072)` (D; L: 1024).
    pub const REASON: Limit = Limit {
        column: "tko_tests.reason",
        chars: 3072,
    };
    /// `tko_test_attributes.attribute varchar(90)` (D; L: 30).
    pub const ATTRIBUTE: Limit = Limit {
        column: "tko_test_attributes.attribute",
        chars: 90,
    };
    /// `tko_test_attributes.value varchar(1024)`.
    pub const ATTRIBUTE_VALUE: Limit = Limit {
        column: "tko_test_attributes.value",
        chars: 1024,
    };
    /// `tko_iteration_attributes.attribute varchar(90)` (D; L: 30).
    pub const ITERATION_ATTRIBUTE: Limit = Limit {
        column: "tko_iteration_attributes.attribute",
        chars: 90,
    };
    /// `tko_iteration_attributes.value varchar(1024)` (L; D: 300).
    pub const ITERATION_VALUE: Limit = Limit {
        column: "tko_iteration_attributes.value",
        chars: 1024,
    };
    /// `tko_iteration_result.attribute varchar(90)` (D; L: 30).
    pub const RESULT_ATTRIBUTE: Limit = Limit {
        column: "tko_iteration_result.attribute",
        chars: 90,
    };
    /// `tko_job_keyvals.key varchar(90)`.
    pub const KEYVAL_KEY: Limit = Limit {
        column: "tko_job_keyvals.key",
        chars: 90,
    };
    /// `tko_job_keyvals.value varchar(300)`.
    pub const KEYVAL_VALUE: Limit = Limit {
        column: "tko_job_keyvals.value",
        chars: 300,
    };
    /// `tko_diagnostics.message` (tko's own table): long enough for any
    /// message tko writes, short enough that a quoted line cannot grow it.
    pub const MESSAGE: Limit = Limit {
        column: "tko_diagnostics.message",
        chars: 4096,
    };
}

/// The replacement for NUL characters in stored strings.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// `tko_machines` row (natural key `hostname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRow {
    /// Machine name.
    pub hostname: String,
    /// Platforms, comma-joined.
    pub machine_group: String,
    /// Owner (keyval `owner`).
    pub owner: Option<String>,
}

impl MachineRow {
    /// Columns written by the loaders.
    pub const COLUMNS: &'static [&'static str] = &["hostname", "machine_group", "owner"];
}

/// `tko_kernels` row (natural key `kernel_hash`); `printable` needs the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRow {
    /// md5 of base and patch hashes, or `UNKNOWN`.
    pub kernel_hash: String,
    /// Base version.
    pub base: String,
    /// `base` or `base p<kernel_idx>` ([`Kernel::printable`]).
    pub printable: String,
}

impl KernelRow {
    /// Columns written by the loaders.
    pub const COLUMNS: &'static [&'static str] = &["kernel_hash", "base", "printable"];

    /// The row for `kernel` once its id is known.
    pub fn new(kernel: &Kernel, kernel_idx: i64) -> KernelRow {
        KernelRow {
            kernel_hash: clean(&kernel.kernel_hash),
            base: clean(&kernel.base),
            printable: clean(&kernel.printable(kernel_idx)),
        }
    }
}

/// `tko_patches` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRow {
    /// Owning kernel.
    pub kernel_idx: i32,
    /// `basename(reference)[:80]`.
    pub name: String,
    /// The reference.
    pub url: String,
    /// Patch hash.
    pub hash: String,
}

impl PatchRow {
    /// Columns written by the loaders.
    pub const COLUMNS: &'static [&'static str] = &["kernel_idx", "name", "url", "hash"];

    /// The row for `patch` of kernel `kernel_idx`.
    pub fn new(kernel_idx: i32, patch: &Patch) -> PatchRow {
        let base = patch
            .reference
            .rsplit('/')
            .next()
            .expect("rsplit yields at least one item");
        PatchRow {
            kernel_idx,
            name: clean(&base.chars().take(80).collect::<String>()),
            url: clean(&patch.reference),
            hash: clean(&patch.hash),
        }
    }
}

/// `tko_jobs` row without its id (written by upsert on `tag`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// TKO job tag.
    pub tag: String,
    /// Keyval `label`.
    pub label: Option<String>,
    /// Keyval `user` (lineage L stores it).
    pub username: Option<String>,
    /// The job's machine.
    pub machine_idx: i32,
    /// Keyval `job_queued`.
    pub queued_time: Option<Timestamp>,
    /// Keyval `job_started`.
    pub started_time: Option<Timestamp>,
    /// Keyval `job_finished`.
    pub finished_time: Option<Timestamp>,
    /// AFE job id from the tag.
    pub afe_job_id: Option<i64>,
}

impl JobRow {
    /// Columns written by the loaders (`job_idx` comes from the sequence).
    pub const COLUMNS: &'static [&'static str] = &[
        "tag",
        "label",
        "username",
        "machine_idx",
        "queued_time",
        "started_time",
        "finished_time",
        "afe_job_id",
    ];

    /// The row for `job` on machine `machine_idx`.
    pub fn new(job: &Job, machine_idx: i32) -> JobRow {
        JobRow {
            tag: clean(&job.tag),
            label: job.label.as_deref().map(clean),
            username: job.user.as_deref().map(clean),
            machine_idx,
            queued_time: job.queued_time,
            started_time: job.started_time,
            finished_time: job.finished_time,
            afe_job_id: job.afe_job_id.and_then(|id| i64::try_from(id).ok()),
        }
    }
}

/// `tko_tests` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRow {
    /// Test id (kept across reparses when matched).
    pub test_idx: i32,
    /// Owning job.
    pub job_idx: i32,
    /// Test name.
    pub test: String,
    /// Subdir, NULL for `None`.
    pub subdir: Option<String>,
    /// Kernel when the result completed.
    pub kernel_idx: i32,
    /// `tko_status.status_idx` of the status word.
    pub status: i32,
    /// Reason text.
    pub reason: Option<String>,
    /// The job's machine.
    pub machine_idx: i32,
    /// Invalidated by a user (kept across reparses).
    pub invalid: bool,
    /// Finish time.
    pub finished_time: Option<Timestamp>,
    /// Start time.
    pub started_time: Option<Timestamp>,
}

impl TestRow {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] = &[
        "test_idx",
        "job_idx",
        "test",
        "subdir",
        "kernel_idx",
        "status",
        "reason",
        "machine_idx",
        "invalid",
        "finished_time",
        "started_time",
    ];
}

/// `tko_test_attributes` row written by the parser (`user_created` = 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAttributeRow {
    /// Owning job (distribution key).
    pub job_idx: i32,
    /// Owning test.
    pub test_idx: i32,
    /// Attribute name.
    pub attribute: String,
    /// Stored text ([`crate::model::Value::to_db_text`]).
    pub value: Option<String>,
    /// Always false from the loader.
    pub user_created: bool,
}

impl TestAttributeRow {
    /// Columns written by the loaders, in COPY order (`id` is generated).
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "test_idx", "attribute", "value", "user_created"];
}

/// `tko_iteration_attributes` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterationAttributeRow {
    /// Owning job.
    pub job_idx: i32,
    /// Owning test.
    pub test_idx: i32,
    /// 1-based iteration.
    pub iteration: i32,
    /// Key.
    pub attribute: String,
    /// Value, verbatim.
    pub value: String,
}

impl IterationAttributeRow {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "test_idx", "iteration", "attribute", "value"];
}

/// `tko_iteration_result` row.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationResultRow {
    /// Owning job.
    pub job_idx: i32,
    /// Owning test.
    pub test_idx: i32,
    /// 1-based iteration.
    pub iteration: i32,
    /// Key.
    pub attribute: String,
    /// Value (`None` for a non-numeric version-0 value).
    pub value: Option<f64>,
}

impl IterationResultRow {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "test_idx", "iteration", "attribute", "value"];
}

/// `tko_job_keyvals` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKeyvalRow {
    /// Owning job (TKO's column name).
    pub job_id: i32,
    /// Key.
    pub key: String,
    /// Stored text, NULL for Python `None`.
    pub value: Option<String>,
}

impl JobKeyvalRow {
    /// Columns written by the loaders, in COPY order (`id` is generated).
    pub const COLUMNS: &'static [&'static str] = &["job_id", "key", "value"];
}

/// `tko_diagnostics` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticRow {
    /// Owning job.
    pub job_idx: i32,
    /// File, relative to the job directory.
    pub file: String,
    /// 1-based line.
    pub line: Option<i32>,
    /// `error` or `warning`.
    pub severity: &'static str,
    /// What was wrong.
    pub message: String,
}

impl DiagnosticRow {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "file", "line", "severity", "message"];
}

/// `tko_test_information` row (tko's own, migration 004): a test's last
/// information message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformationRow {
    /// The test.
    pub test_idx: i32,
    /// Its job.
    pub job_idx: i32,
    /// The message.
    pub message: String,
    /// When it was recorded.
    pub info_time: Option<Timestamp>,
}

impl InformationRow {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] = &["test_idx", "job_idx", "message", "info_time"];
}

/// Row counts of one job's tree, as recorded in `tko_ingest_ledger`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// `tko_tests` rows.
    pub tests: usize,
    /// `tko_test_attributes` rows written by the loader.
    pub test_attributes: usize,
    /// `tko_iteration_attributes` rows.
    pub iteration_attributes: usize,
    /// `tko_iteration_result` rows.
    pub iteration_results: usize,
    /// `tko_job_keyvals` rows.
    pub job_keyvals: usize,
    /// `tko_diagnostics` rows.
    pub diagnostics: usize,
}

impl RowCounts {
    /// Adds another job's counts.
    pub fn add(&mut self, o: &RowCounts) {
        self.tests += o.tests;
        self.test_attributes += o.test_attributes;
        self.iteration_attributes += o.iteration_attributes;
        self.iteration_results += o.iteration_results;
        self.job_keyvals += o.job_keyvals;
        self.diagnostics += o.diagnostics;
    }
}

/// The database ids a job's rows refer to, decided by the store.
#[derive(Debug, Clone, Copy)]
pub struct TreeIds<'a> {
    /// The job's id.
    pub job_idx: i32,
    /// The job's machine.
    pub machine_idx: i32,
    /// Per test (same order as `job.tests`): its test id.
    pub test_idx: &'a [i32],
    /// Per test: its kernel id.
    pub kernel_idx: &'a [i32],
    /// Per test: the `invalid` flag to keep.
    pub invalid: &'a [bool],
}

/// Every row of one job's tree below `tko_jobs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTreeRows {
    /// `tko_tests`.
    pub tests: Vec<TestRow>,
    /// `tko_test_attributes`.
    pub test_attributes: Vec<TestAttributeRow>,
    /// `tko_iteration_attributes`.
    pub iteration_attributes: Vec<IterationAttributeRow>,
    /// `tko_iteration_result`.
    pub iteration_results: Vec<IterationResultRow>,
    /// `tko_job_keyvals`.
    pub job_keyvals: Vec<JobKeyvalRow>,
    /// `tko_diagnostics` (the parser's, plus one for replaced NULs).
    pub diagnostics: Vec<DiagnosticRow>,
    /// `tko_test_information` (not counted in the ledger).
    pub information: Vec<InformationRow>,
}

impl JobTreeRows {
    /// Builds the rows of `job` with the given ids and status lookup.
    ///
    /// # Panics
    /// If the per-test slices of `ids` are shorter than `job.tests`.
    pub fn new(job: &Job, ids: &TreeIds<'_>, status_idx: impl Fn(Status) -> i32) -> JobTreeRows {
        let mut out = JobTreeRows::default();
        out.add_job(job, ids, status_idx);
        out
    }

    /// Appends the rows of `job` (as [`JobTreeRows::new`] builds them) to
    /// these rows, for a batch of jobs; returns that job's counts.
    ///
    /// # Panics
    /// If the per-test slices of `ids` are shorter than `job.tests`.
    pub fn add_job(
        &mut self,
        job: &Job,
        ids: &TreeIds<'_>,
        status_idx: impl Fn(Status) -> i32,
    ) -> RowCounts {
        let before = self.counts();
        let mut c = Cleaner::default();
        // Where test fields come from; the model keeps no line numbers.
        let status = if job.status_version == 0 {
            "status"
        } else {
            "status.log"
        }
        .to_string();
        let job_idx = ids.job_idx;
        let out = self;
        for (i, t) in job.tests.iter().enumerate() {
            let test_idx = ids.test_idx[i];
            out.tests.push(TestRow {
                test_idx,
                job_idx,
                test: c.text(&t.testname, "test name", Limit::TEST, || status.clone()),
                subdir: t
                    .subdir
                    .as_deref()
                    .map(|s| c.text(s, "subdir", Limit::SUBDIR, || status.clone())),
                kernel_idx: ids.kernel_idx[i],
                status: status_idx(t.status),
                reason: t
                    .reason
                    .as_deref()
                    .map(|s| c.text(s, "reason", Limit::REASON, || status.clone())),
                machine_idx: ids.machine_idx,
                invalid: ids.invalid[i],
                finished_time: t.finished_time,
                started_time: t.started_time,
            });
            if let Some(info) = &t.information {
                out.information.push(InformationRow {
                    test_idx,
                    job_idx,
                    message: c.clean(&info.message, "information message"),
                    info_time: info.time,
                });
            }
            for (k, v) in &t.attributes {
                out.test_attributes.push(TestAttributeRow {
                    job_idx,
                    test_idx,
                    attribute: c.text(k, "test attribute", Limit::ATTRIBUTE, || test_keyval(t)),
                    value: v.to_db_text().map(|s| {
                        c.text(&s, "test attribute value", Limit::ATTRIBUTE_VALUE, || {
                            test_keyval(t)
                        })
                    }),
                    user_created: false,
                });
            }
            for it in &t.iterations {
                let iteration = i32::try_from(it.index).unwrap_or(i32::MAX);
                for (k, v) in &it.attr {
                    out.iteration_attributes.push(IterationAttributeRow {
                        job_idx,
                        test_idx,
                        iteration,
                        attribute: c.text(
                            k,
                            "iteration attribute",
                            Limit::ITERATION_ATTRIBUTE,
                            || iteration_keyval(t),
                        ),
                        value: c.text(
                            v,
                            "iteration attribute value",
                            Limit::ITERATION_VALUE,
                            || iteration_keyval(t),
                        ),
                    });
                }
                for (k, v) in &it.perf {
                    out.iteration_results.push(IterationResultRow {
                        job_idx,
                        test_idx,
                        iteration,
                        attribute: c.text(
                            k,
                            "iteration result key",
                            Limit::RESULT_ATTRIBUTE,
                            || iteration_keyval(t),
                        ),
                        value: v.as_f64(),
                    });
                }
            }
        }
        for (k, v) in &job.keyval {
            out.job_keyvals.push(JobKeyvalRow {
                job_id: job_idx,
                key: c.text(k, "job keyval", Limit::KEYVAL_KEY, || "keyval".into()),
                value: v.to_db_text().map(|s| {
                    c.text(&s, "job keyval value", Limit::KEYVAL_VALUE, || {
                        "keyval".into()
                    })
                }),
            });
        }
        for d in &job.diagnostics {
            out.diagnostics.push(diagnostic_row(job_idx, d, &mut c));
        }
        for (file, message) in std::mem::take(&mut c.cut) {
            out.diagnostics.push(DiagnosticRow {
                job_idx,
                file: clean(&file),
                line: None,
                severity: "warning",
                message,
            });
        }
        if let Some(first) = c.first {
            out.diagnostics.push(DiagnosticRow {
                job_idx,
                file: String::new(),
                line: None,
                severity: "warning",
                message: format!(
                    "{} string(s) contained NUL, stored with U+FFFD instead (first in a {first})",
                    c.count
                ),
            });
        }
        let after = out.counts();
        RowCounts {
            tests: after.tests - before.tests,
            test_attributes: after.test_attributes - before.test_attributes,
            iteration_attributes: after.iteration_attributes - before.iteration_attributes,
            iteration_results: after.iteration_results - before.iteration_results,
            job_keyvals: after.job_keyvals - before.job_keyvals,
            diagnostics: after.diagnostics - before.diagnostics,
        }
    }

    /// How many rows of each table.
    pub fn counts(&self) -> RowCounts {
        RowCounts {
            tests: self.tests.len(),
            test_attributes: self.test_attributes.len(),
            iteration_attributes: self.iteration_attributes.len(),
            iteration_results: self.iteration_results.len(),
            job_keyvals: self.job_keyvals.len(),
            diagnostics: self.diagnostics.len(),
        }
    }
}

fn diagnostic_row(job_idx: i32, d: &Diagnostic, c: &mut Cleaner) -> DiagnosticRow {
    DiagnosticRow {
        job_idx,
        file: c.clean(&d.file, "diagnostic"),
        line: d.line.and_then(|l| i32::try_from(l).ok()),
        severity: match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        message: c.text(&d.message, "diagnostic", Limit::MESSAGE, || d.file.clone()),
    }
}

/// Counts NUL replacements and remembers where the first one was; notes
/// every value cut to its column.
#[derive(Default)]
struct Cleaner {
    count: usize,
    first: Option<&'static str>,
    cut: Vec<(String, String)>,
}

/// The file a test's attributes come from.
fn test_keyval(t: &crate::model::Test) -> String {
    format!(
        "{}/keyval",
        crate::text::stored(t.subdir.as_deref().unwrap_or(""))
    )
}

/// The file a test's iterations come from.
fn iteration_keyval(t: &crate::model::Test) -> String {
    format!(
        "{}/results/keyval",
        crate::text::stored(t.subdir.as_deref().unwrap_or(""))
    )
}

impl Cleaner {
    /// [`Cleaner::clean`], cut to `limit` characters (with a warning
    /// naming the column, the file from `file` and the value's start).
    fn text(
        &mut self,
        s: &str,
        what: &'static str,
        limit: Limit,
        file: impl FnOnce() -> String,
    ) -> String {
        let stored = crate::text::stored(s);
        let Some((end, _)) = stored.char_indices().nth(limit.chars) else {
            return self.clean(s, what);
        };
        let kept = &stored[..end];
        let total = stored.chars().count();
        let start: String = kept.chars().take(40).collect();
        self.cut.push((
            file(),
            format!(
                "{what} {start:?}... is {total} characters; stored the first {} \
                 (TKO's {} holds {})",
                limit.chars, limit.column, limit.chars
            ),
        ));
        self.clean(kept, what)
    }

    fn clean(&mut self, s: &str, what: &'static str) -> String {
        if s.contains('\0') {
            self.count += 1;
            self.first.get_or_insert(what);
        }
        clean(s)
    }
}

/// The stored form of a model string: Latin-1 bytes as Latin-1 text
/// ([`crate::text::stored`]), every NUL replaced by [`NUL_REPLACEMENT`].
pub fn clean(s: &str) -> String {
    let s = crate::text::stored(s);
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Iteration, PerfValue, Test, Value};
    use std::collections::BTreeMap;

    fn job() -> Job {
        let mut attributes = BTreeMap::new();
        attributes.insert("a\0b".to_string(), Value::Int(3));
        let mut perf = BTreeMap::new();
        perf.insert("thr".to_string(), PerfValue::Float(1.5));
        Job {
            tag: "1-u/h".into(),
            afe_job_id: Some(1),
            status_version: 1,
            label: None,
            user: Some("u".into()),
            machine: "h".into(),
            machine_group: String::new(),
            machine_owner: None,
            queued_time: None,
            started_time: None,
            finished_time: None,
            aborted_by: None,
            aborted_on: None,
            keyval: Default::default(),
            tests: vec![Test {
                subdir: None,
                testname: "t".into(),
                status: Status::Good,
                reason: None,
                started_time: None,
                finished_time: None,
                machine: "h".into(),
                kernel: Kernel::unknown(),
                attributes: attributes.into(),
                iterations: vec![Iteration {
                    index: 1,
                    attr: Default::default(),
                    perf: perf.into(),
                }],
                labels: vec![],
                information: None,
            }],
            diagnostics: vec![],
        }
    }

    #[test]
    fn nul_is_replaced_and_reported() {
        let ids = TreeIds {
            job_idx: 1,
            machine_idx: 2,
            test_idx: &[3],
            kernel_idx: &[4],
            invalid: &[false],
        };
        let rows = JobTreeRows::new(&job(), &ids, |_| 5);
        assert_eq!(rows.test_attributes[0].attribute, "a\u{FFFD}b");
        assert_eq!(rows.diagnostics.len(), 1);
        assert!(rows.diagnostics[0].message.contains("NUL"));
        assert_eq!(rows.iteration_results[0].value, Some(1.5));
        assert_eq!(rows.counts().tests, 1);
    }

    #[test]
    fn values_longer_than_their_tko_column_are_cut_with_a_warning() {
        let ids = TreeIds {
            job_idx: 1,
            machine_idx: 2,
            test_idx: &[3],
            kernel_idx: &[4],
            invalid: &[false],
        };
        let mut j = job();
        j.tests[0].reason = Some("r".repeat(5000));
        j.tests[0].subdir = Some("sub".into());
        j.tests[0]
            .attributes
            .insert("long".into(), Value::Str("é".repeat(2000)));
        j.keyval.insert("k".into(), Value::Str("v".repeat(300)));
        let rows = JobTreeRows::new(&j, &ids, |_| 5);
        assert_eq!(rows.tests[0].reason.as_deref().map(str::len), Some(3072));
        let long = rows
            .test_attributes
            .iter()
            .find(|a| a.attribute == "long")
            .expect("attribute");
        assert_eq!(long.value.as_deref().map(|v| v.chars().count()), Some(1024));
        assert_eq!(
            rows.job_keyvals[0].value.as_deref().map(str::len),
            Some(300)
        );
        let cut: Vec<_> = rows
            .diagnostics
            .iter()
            .filter(|d| d.severity == "warning" && d.message.contains("stored the first"))
            .map(|d| (d.file.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(cut.len(), 2, "{cut:?}");
        assert_eq!(cut[0].0, "status.log");
        assert!(cut[0].1.contains("5000 characters") && cut[0].1.contains("tko_tests.reason"));
        assert_eq!(cut[1].0, "sub/keyval");
        assert_eq!(rows.counts().diagnostics, 3);
    }

    #[test]
    fn patch_name_is_basename_cut_to_80() {
        let long = "x".repeat(100);
        let p = Patch {
            spec: "s".into(),
            reference: format!("http://h/dir/{long}"),
            hash: "h".into(),
        };
        assert_eq!(PatchRow::new(1, &p).name, "x".repeat(80));
    }
}
