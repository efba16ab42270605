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
use std::borrow::Cow;

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

/// `tko_tests` row (text borrowed from the job where it needs no change).
#[derive(Debug, Clone, PartialEq)]
pub struct TestRow<'a> {
    /// Test id (kept across reparses when matched).
    pub test_idx: i32,
    /// Owning job.
    pub job_idx: i32,
    /// Test name.
    pub test: Cow<'a, str>,
    /// Subdir, NULL for `None`.
    pub subdir: Option<Cow<'a, str>>,
    /// Kernel when the result completed.
    pub kernel_idx: i32,
    /// `tko_status.status_idx` of the status word.
    pub status: i32,
    /// Reason text.
    pub reason: Option<Cow<'a, str>>,
    /// The job's machine.
    pub machine_idx: i32,
    /// Invalidated by a user (kept across reparses).
    pub invalid: bool,
    /// Finish time.
    pub finished_time: Option<Timestamp>,
    /// Start time.
    pub started_time: Option<Timestamp>,
}

impl TestRow<'_> {
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
pub struct TestAttributeRow<'a> {
    /// Owning job (distribution key).
    pub job_idx: i32,
    /// Owning test.
    pub test_idx: i32,
    /// Attribute name.
    pub attribute: Cow<'a, str>,
    /// Stored text ([`crate::model::Value::to_db_text`]).
    pub value: Option<Cow<'a, str>>,
    /// Always false from the loader.
    pub user_created: bool,
}

impl TestAttributeRow<'_> {
    /// Columns written by the loaders, in COPY order (`id` is generated).
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "test_idx", "attribute", "value", "user_created"];
}

/// `tko_iteration_attributes` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterationAttributeRow<'a> {
    /// Owning job.
    pub job_idx: i32,
    /// Owning test.
    pub test_idx: i32,
    /// 1-based iteration.
    pub iteration: i32,
    /// Key.
    pub attribute: Cow<'a, str>,
    /// Value, verbatim.
    pub value: Cow<'a, str>,
}

impl IterationAttributeRow<'_> {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "test_idx", "iteration", "attribute", "value"];
}

/// `tko_iteration_result` row.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationResultRow<'a> {
    /// Owning job.
    pub job_idx: i32,
    /// Owning test.
    pub test_idx: i32,
    /// 1-based iteration.
    pub iteration: i32,
    /// Key.
    pub attribute: Cow<'a, str>,
    /// Value (`None` for a non-numeric version-0 value).
    pub value: Option<f64>,
}

impl IterationResultRow<'_> {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "test_idx", "iteration", "attribute", "value"];
}

/// `tko_job_keyvals` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobKeyvalRow<'a> {
    /// Owning job (TKO's column name).
    pub job_id: i32,
    /// Key.
    pub key: Cow<'a, str>,
    /// Stored text, NULL for Python `None`.
    pub value: Option<Cow<'a, str>>,
}

impl JobKeyvalRow<'_> {
    /// Columns written by the loaders, in COPY order (`id` is generated).
    pub const COLUMNS: &'static [&'static str] = &["job_id", "key", "value"];
}

/// `tko_diagnostics` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticRow<'a> {
    /// Owning job.
    pub job_idx: i32,
    /// File, relative to the job directory.
    pub file: Cow<'a, str>,
    /// 1-based line.
    pub line: Option<i32>,
    /// `error` or `warning`.
    pub severity: &'static str,
    /// What was wrong.
    pub message: Cow<'a, str>,
}

impl DiagnosticRow<'_> {
    /// Columns written by the loaders, in COPY order.
    pub const COLUMNS: &'static [&'static str] =
        &["job_idx", "file", "line", "severity", "message"];
}

/// `tko_test_information` row (tko's own, migration 004): a test's last
/// information message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InformationRow<'a> {
    /// The test.
    pub test_idx: i32,
    /// Its job.
    pub job_idx: i32,
    /// The message.
    pub message: Cow<'a, str>,
    /// When it was recorded.
    pub info_time: Option<Timestamp>,
}

impl InformationRow<'_> {
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

/// Receives the rows of a job tree as [`build_rows`] makes them, one at a
/// time, in an order each table keeps (tests in job order, and so on): a
/// store may encode them as they come instead of holding them
/// ([`JobTreeRows`] holds them).
pub trait RowSink<'a> {
    /// A `tko_tests` row.
    fn test(&mut self, row: TestRow<'a>);
    /// A `tko_test_attributes` row.
    fn test_attribute(&mut self, row: TestAttributeRow<'a>);
    /// A `tko_iteration_attributes` row.
    fn iteration_attribute(&mut self, row: IterationAttributeRow<'a>);
    /// A `tko_iteration_result` row.
    fn iteration_result(&mut self, row: IterationResultRow<'a>);
    /// A `tko_job_keyvals` row.
    fn job_keyval(&mut self, row: JobKeyvalRow<'a>);
    /// A `tko_diagnostics` row.
    fn diagnostic(&mut self, row: DiagnosticRow<'a>);
    /// A `tko_test_information` row.
    fn information(&mut self, row: InformationRow<'a>);
}

/// Every row of one job's tree below `tko_jobs`, held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTreeRows<'a> {
    /// `tko_tests`.
    pub tests: Vec<TestRow<'a>>,
    /// `tko_test_attributes`.
    pub test_attributes: Vec<TestAttributeRow<'a>>,
    /// `tko_iteration_attributes`.
    pub iteration_attributes: Vec<IterationAttributeRow<'a>>,
    /// `tko_iteration_result`.
    pub iteration_results: Vec<IterationResultRow<'a>>,
    /// `tko_job_keyvals`.
    pub job_keyvals: Vec<JobKeyvalRow<'a>>,
    /// `tko_diagnostics` (the parser's, plus one for replaced NULs).
    pub diagnostics: Vec<DiagnosticRow<'a>>,
    /// `tko_test_information` (not counted in the ledger).
    pub information: Vec<InformationRow<'a>>,
}

impl<'a> RowSink<'a> for JobTreeRows<'a> {
    fn test(&mut self, row: TestRow<'a>) {
        self.tests.push(row);
    }
    fn test_attribute(&mut self, row: TestAttributeRow<'a>) {
        self.test_attributes.push(row);
    }
    fn iteration_attribute(&mut self, row: IterationAttributeRow<'a>) {
        self.iteration_attributes.push(row);
    }
    fn iteration_result(&mut self, row: IterationResultRow<'a>) {
        self.iteration_results.push(row);
    }
    fn job_keyval(&mut self, row: JobKeyvalRow<'a>) {
        self.job_keyvals.push(row);
    }
    fn diagnostic(&mut self, row: DiagnosticRow<'a>) {
        self.diagnostics.push(row);
    }
    fn information(&mut self, row: InformationRow<'a>) {
        self.information.push(row);
    }
}

impl<'a> JobTreeRows<'a> {
    /// Builds the rows of `job` with the given ids and status lookup.
    ///
    /// # Panics
    /// If the per-test slices of `ids` are shorter than `job.tests`.
    pub fn new(
        job: &'a Job,
        ids: &TreeIds<'_>,
        status_idx: impl Fn(Status) -> i32,
    ) -> JobTreeRows<'a> {
        let mut out = JobTreeRows::default();
        build_rows(job, ids, status_idx, &mut out);
        out
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

/// Hands the rows of `job` (with the given ids and status lookup) to
/// `out`, text borrowed from the job unless it had to change (Latin-1,
/// NUL, cut to its column); returns their counts.
///
/// # Panics
/// If the per-test slices of `ids` are shorter than `job.tests`.
pub fn build_rows<'a>(
    job: &'a Job,
    ids: &TreeIds<'_>,
    status_idx: impl Fn(Status) -> i32,
    out: &mut impl RowSink<'a>,
) -> RowCounts {
    let mut n = RowCounts::default();
    let mut c = Cleaner::default();
    // Where test fields come from; the model keeps no line numbers.
    let status = if job.status_version == 0 {
        "status"
    } else {
        "status.log"
    };
    let job_idx = ids.job_idx;
    for (i, t) in job.tests.iter().enumerate() {
        let test_idx = ids.test_idx[i];
        n.tests += 1;
        out.test(TestRow {
            test_idx,
            job_idx,
            test: c.text(&t.testname, "test name", Limit::TEST, || status.into()),
            subdir: t
                .subdir
                .as_deref()
                .map(|s| c.text(s, "subdir", Limit::SUBDIR, || status.into())),
            kernel_idx: ids.kernel_idx[i],
            status: status_idx(t.status),
            reason: t
                .reason
                .as_deref()
                .map(|s| c.text(s, "reason", Limit::REASON, || status.into())),
            machine_idx: ids.machine_idx,
            invalid: ids.invalid[i],
            finished_time: t.finished_time,
            started_time: t.started_time,
        });
        if let Some(info) = &t.information {
            out.information(InformationRow {
                test_idx,
                job_idx,
                message: c.clean(&info.message, "information message"),
                info_time: info.time,
            });
        }
        for (k, v) in &t.attributes {
            n.test_attributes += 1;
            let attribute = c.text(k, "test attribute", Limit::ATTRIBUTE, || test_keyval(t));
            let value = v.to_db_text().map(|s| {
                c.owned(s, "test attribute value", Limit::ATTRIBUTE_VALUE, || {
                    test_keyval(t)
                })
            });
            out.test_attribute(TestAttributeRow {
                job_idx,
                test_idx,
                attribute,
                value,
                user_created: false,
            });
        }
        for it in &t.iterations {
            let iteration = i32::try_from(it.index).unwrap_or(i32::MAX);
            for (k, v) in &it.attr {
                n.iteration_attributes += 1;
                out.iteration_attribute(IterationAttributeRow {
                    job_idx,
                    test_idx,
                    iteration,
                    attribute: c.text(k, "iteration attribute", Limit::ITERATION_ATTRIBUTE, || {
                        iteration_keyval(t)
                    }),
                    value: c.text(
                        v,
                        "iteration attribute value",
                        Limit::ITERATION_VALUE,
                        || iteration_keyval(t),
                    ),
                });
            }
            for (k, v) in &it.perf {
                n.iteration_results += 1;
                out.iteration_result(IterationResultRow {
                    job_idx,
                    test_idx,
                    iteration,
                    attribute: c.text(k, "iteration result key", Limit::RESULT_ATTRIBUTE, || {
                        iteration_keyval(t)
                    }),
                    value: v.as_f64(),
                });
            }
        }
    }
    for (k, v) in &job.keyval {
        n.job_keyvals += 1;
        let key = c.text(k, "job keyval", Limit::KEYVAL_KEY, || "keyval".into());
        let value = v.to_db_text().map(|s| {
            c.owned(s, "job keyval value", Limit::KEYVAL_VALUE, || {
                "keyval".into()
            })
        });
        out.job_keyval(JobKeyvalRow {
            job_id: job_idx,
            key,
            value,
        });
    }
    for d in &job.diagnostics {
        n.diagnostics += 1;
        out.diagnostic(diagnostic_row(job_idx, d, &mut c));
    }
    for (file, message) in std::mem::take(&mut c.cut) {
        n.diagnostics += 1;
        out.diagnostic(DiagnosticRow {
            job_idx,
            file: Cow::Owned(clean(&file)),
            line: None,
            severity: "warning",
            message: Cow::Owned(message),
        });
    }
    if let Some(first) = c.first {
        n.diagnostics += 1;
        out.diagnostic(DiagnosticRow {
            job_idx,
            file: Cow::Borrowed(""),
            line: None,
            severity: "warning",
            message: Cow::Owned(format!(
                "{} string(s) contained NUL, stored with U+FFFD instead (first in a {first})",
                c.count
            )),
        });
    }
    n
}

fn diagnostic_row<'a>(job_idx: i32, d: &'a Diagnostic, c: &mut Cleaner) -> DiagnosticRow<'a> {
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
    fn text<'s>(
        &mut self,
        s: &'s str,
        what: &'static str,
        limit: Limit,
        file: impl FnOnce() -> String,
    ) -> Cow<'s, str> {
        // Fast path: a value this short (in bytes) cannot be over its
        // limit (in characters).
        if s.len() <= limit.chars {
            return self.clean(s, what);
        }
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
        Cow::Owned(self.clean(kept, what).into_owned())
    }

    /// [`Cleaner::text`] of a value made for the row (owned already).
    fn owned(
        &mut self,
        s: String,
        what: &'static str,
        limit: Limit,
        file: impl FnOnce() -> String,
    ) -> Cow<'static, str> {
        match self.text(&s, what, limit, file) {
            // Unchanged: keep the allocation.
            Cow::Borrowed(b) if b.len() == s.len() => Cow::Owned(s),
            other => Cow::Owned(other.into_owned()),
        }
    }

    fn clean<'s>(&mut self, s: &'s str, what: &'static str) -> Cow<'s, str> {
        if s.as_bytes().contains(&0) {
            self.count += 1;
            self.first.get_or_insert(what);
        }
        clean_cow(s)
    }
}

/// [`clean`], borrowing `s` when it needs no change.
pub fn clean_cow(s: &str) -> Cow<'_, str> {
    match crate::text::stored(s) {
        Cow::Borrowed(b) if !b.as_bytes().contains(&0) => Cow::Borrowed(b),
        Cow::Borrowed(b) => Cow::Owned(b.replace('\0', "\u{FFFD}")),
        Cow::Owned(o) if o.contains('\0') => Cow::Owned(o.replace('\0', "\u{FFFD}")),
        Cow::Owned(o) => Cow::Owned(o),
    }
}

/// The stored form of a model string: Latin-1 bytes as Latin-1 text
/// ([`crate::text::stored`]), every NUL replaced by [`NUL_REPLACEMENT`].
pub fn clean(s: &str) -> String {
    clean_cow(s).into_owned()
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
        let j = job();
        let rows = JobTreeRows::new(&j, &ids, |_| 5);
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
            .insert("long", Value::Str("é".repeat(2000)));
        j.keyval.insert("k", Value::Str("v".repeat(300)));
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
            .map(|d| (d.file.as_ref(), d.message.as_ref()))
            .collect();
        assert_eq!(cut.len(), 2, "{cut:?}");
        assert_eq!(cut[0].0, "status.log");
        assert!(cut[0].1.contains("5000 characters") && cut[0].1.contains("tko_tests.reason"));
        assert_eq!(cut[1].0, "sub/keyval");
        assert_eq!(rows.counts().diagnostics, 3);
    }

    #[test]
    fn rows_borrow_the_job_and_cut_by_characters_not_bytes() {
        let ids = TreeIds {
            job_idx: 1,
            machine_idx: 2,
            test_idx: &[3],
            kernel_idx: &[4],
            invalid: &[false],
        };
        let mut j = job();
        // 3,072 characters in 6,144 bytes: fits; one more does not.
        j.tests[0].reason = Some("é".repeat(3072));
        j.tests[0].testname = "é".repeat(301);
        let rows = JobTreeRows::new(&j, &ids, |_| 5);
        let reason = rows.tests[0].reason.as_ref().expect("reason");
        assert!(
            matches!(reason, Cow::Borrowed(_)),
            "unchanged text is borrowed"
        );
        assert_eq!(reason.chars().count(), 3072);
        assert_eq!(rows.tests[0].test.chars().count(), 300);
        let cut: Vec<_> = rows
            .diagnostics
            .iter()
            .filter(|d| d.message.contains("stored the first"))
            .collect();
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert!(cut[0].message.contains("tko_tests.test "));
        // The sink sees what the held rows hold, with the same counts.
        let mut counted = JobTreeRows::default();
        let n = build_rows(&j, &ids, |_| 5, &mut counted);
        assert_eq!(counted, rows);
        assert_eq!(n, rows.counts());
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
