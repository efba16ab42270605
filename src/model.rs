//! Owned domain types of a parsed job tree: [`Job`] → [`Test`] → attributes
//! and [`Iteration`]s, with [`Kernel`]s, [`Status`] words, typed keyval
//! [`Value`]s and the [`Diagnostic`]s the parser recorded on the way. These
//! types do no I/O and know nothing of nom, files or databases; the parsers
//! build them and the stores and exporters read them. Their serde form is the
//! public JSON Lines format of `tko parse --json` (see README.md).

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Keys to values, sorted by key (byte order, as a `BTreeMap<String, _>`
/// orders them), one value per key: the maps of a job tree (keyvals,
/// attributes, an iteration's attr and perf values). Held as one sorted
/// vector, so a map of 30 perf values is one allocation, built by one sort
/// ([`KeyMap::from_pairs`]) instead of 30 tree inserts; a key of up to 24
/// bytes (nearly all of them) is held inline ([`Key`]), not allocated.
/// Iterating yields `(&str, &V)` in key order, as a `BTreeMap` does.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap<V> {
    entries: Vec<(Key, V)>,
}

/// A [`KeyMap`] key: a string held inline up to 24 bytes (perf keys,
/// keyval names), on the heap beyond.
pub type Key = compact_str::CompactString;

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        KeyMap {
            entries: Vec::new(),
        }
    }
}

impl<V> KeyMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        KeyMap::default()
    }

    /// A map of pairs in file order: a later duplicate of a key replaces an
    /// earlier one (Python's dict assignment, "last duplicate wins").
    pub fn from_pairs(mut pairs: Vec<(Key, V)>) -> Self {
        if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable: equal keys keep file order, the last one is kept.
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            dedup_keep_last(&mut pairs);
        }
        KeyMap { entries: pairs }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// True if the key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets a key's value; returns the value it replaced.
    pub fn insert(&mut self, key: impl Into<Key>, value: V) -> Option<V> {
        let key = key.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes a key; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// `(key, value)` in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// Of each run of equal keys in a sorted vector, keeps the last entry (in
/// place).
fn dedup_keep_last<V>(pairs: &mut Vec<(Key, V)>) {
    // `later` is removed when it equals the entry kept before it, which
    // takes its value first.
    pairs.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
}

impl<V> FromIterator<(String, V)> for KeyMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        KeyMap::from_pairs(iter.into_iter().map(|(k, v)| (Key::from(k), v)).collect())
    }
}

impl<V> Extend<(String, V)> for KeyMap<V> {
    /// Later values replace earlier ones, as `BTreeMap::extend`.
    fn extend<I: IntoIterator<Item = (String, V)>>(&mut self, iter: I) {
        let mut pairs = std::mem::take(&mut self.entries);
        pairs.extend(iter.into_iter().map(|(k, v)| (Key::from(k), v)));
        *self = KeyMap::from_pairs(pairs);
    }
}

impl<V> Extend<(Key, V)> for KeyMap<V> {
    /// Later values replace earlier ones, as `BTreeMap::extend`.
    fn extend<I: IntoIterator<Item = (Key, V)>>(&mut self, iter: I) {
        let mut pairs = std::mem::take(&mut self.entries);
        pairs.extend(iter);
        *self = KeyMap::from_pairs(pairs);
    }
}

impl<V> From<BTreeMap<String, V>> for KeyMap<V> {
    fn from(map: BTreeMap<String, V>) -> Self {
        KeyMap {
            entries: map.into_iter().map(|(k, v)| (Key::from(k), v)).collect(),
        }
    }
}

/// A JSON object in key order; keys holding Latin-1 bytes as
/// `"$latin1:<text>"` ([`crate::text::serialize_map`]).
impl<V: Serialize> Serialize for KeyMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize_map(self, s)
    }
}

impl<V, const N: usize> From<[(String, V); N]> for KeyMap<V> {
    fn from(pairs: [(String, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<V> std::ops::Index<&str> for KeyMap<V> {
    type Output = V;
    fn index(&self, key: &str) -> &V {
        self.get(key)
            .unwrap_or_else(|| panic!("key {key:?} not in map"))
    }
}

impl<'a, V> IntoIterator for &'a KeyMap<V> {
    type Item = (&'a str, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Key, V)>, fn(&'a (Key, V)) -> (&'a str, &'a V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V> IntoIterator for KeyMap<V> {
    type Item = (Key, V);
    type IntoIter = std::vec::IntoIter<(Key, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// A typed keyval value, as Autotest's `read_keyval` types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `^\d+$`: an integer (leading zeros dropped).
    Int(u128),
    /// `^(\d+\.)?\d+$`, or a perf value: a float (may be NaN or infinite).
    Float(f64),
    /// Anything else, verbatim.
    Str(String),
    /// Python's `None` (the version-0 `version` attribute when absent).
    None,
}

impl Value {
    /// The text Autotest would store for this value in the database, or
    /// `None` for SQL NULL. Floats use the shortest representation that
    /// reads back to the same number.
    pub fn to_db_text(&self) -> Option<String> {
        match self {
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::Str(s) => Some(s.clone()),
            Value::None => None,
        }
    }
}

/// Formats a float like Python's `repr`: shortest round-trip digits, always
/// with a decimal point or exponent, `nan`/`inf`/`-inf` for non-finite values.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{f:?}")
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => match u64::try_from(*i) {
                Ok(small) => s.serialize_u64(small),
                Err(_) => s.serialize_u128(*i),
            },
            Value::Float(f) => serialize_float(*f, s),
            Value::Str(v) => crate::text::serialize(v, s),
            Value::None => s.serialize_none(),
        }
    }
}

/// Serializes a float as a JSON number, or as `{"$float": "nan"|"inf"|"-inf"}`
/// when it is not finite (JSON has no such numbers; this is the corpus's
/// convention).
fn serialize_float<S: Serializer>(f: f64, s: S) -> Result<S::Ok, S::Error> {
    if f.is_finite() {
        s.serialize_f64(f)
    } else {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("$float", &format_float(f))?;
        m.end()
    }
}

/// A perf value: a float in status version 1, the raw string in version 0.
#[derive(Debug, Clone, PartialEq)]
pub enum PerfValue {
    /// Version 1: `float(value)`.
    Float(f64),
    /// Version 0: the raw text after `=`.
    Raw(String),
}

impl PerfValue {
    /// The numeric value, as a database `double precision` column takes it.
    /// Version-0 raw strings that are not numbers give `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            PerfValue::Float(f) => Some(*f),
            PerfValue::Raw(s) => crate::parse::python_float(s),
        }
    }
}

impl Serialize for PerfValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PerfValue::Float(f) => serialize_float(*f, s),
            PerfValue::Raw(v) => crate::text::serialize(v, s),
        }
    }
}

/// A test or job status word, worst first (Autotest's `job_statuses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// The test does not apply; ranks worst of all.
    TestNa,
    /// Aborted.
    Abort,
    /// Errored.
    Error,
    /// Failed.
    Fail,
    /// Passed with warnings.
    Warn,
    /// Passed.
    Good,
    /// Bug (accepted by the parser, absent from `tko_status`).
    Bug,
    /// Alert.
    Alert,
    /// Still running (partial result).
    Running,
    /// No status yet.
    NoStatus,
}

impl Status {
    /// Every status, worst first.
    pub const ALL: [Status; 10] = [
        Status::TestNa,
        Status::Abort,
        Status::Error,
        Status::Fail,
        Status::Warn,
        Status::Good,
        Status::Bug,
        Status::Alert,
        Status::Running,
        Status::NoStatus,
    ];

    /// The status word as written in status logs and `tko_status.word`.
    pub fn word(self) -> &'static str {
        match self {
            Status::TestNa => "TEST_NA",
            Status::Abort => "ABORT",
            Status::Error => "ERROR",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Good => "GOOD",
            Status::Bug => "BUG",
            Status::Alert => "ALERT",
            Status::Running => "RUNNING",
            Status::NoStatus => "NOSTATUS",
        }
    }

    /// The status for a word, if it is one of Autotest's.
    pub fn from_word(word: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.word() == word)
    }

    /// `is_worse_than`: strictly earlier in the ranking.
    pub fn is_worse_than(self, other: Status) -> bool {
        self < other
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.word())
    }
}

/// A kernel patch: `spec reference hash` from a `patchN=` field or a
/// `PATCH:` build-log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Patch {
    /// The patch spec as given to the client.
    #[serde(serialize_with = "crate::text::serialize")]
    pub spec: String,
    /// Where the patch came from (a URL or path).
    #[serde(serialize_with = "crate::text::serialize")]
    pub reference: String,
    /// Its md5 (or whatever hash the client recorded).
    #[serde(serialize_with = "crate::text::serialize")]
    pub hash: String,
}

/// A kernel: base version plus patches, identified by `kernel_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kernel {
    /// Base version (`UNKNOWN` when none was seen).
    #[serde(serialize_with = "crate::text::serialize")]
    pub base: String,
    /// md5 of `base,patchhash,...`, or `UNKNOWN`.
    #[serde(serialize_with = "crate::text::serialize")]
    pub kernel_hash: String,
    /// Patches applied on top of the base.
    pub patches: Vec<Patch>,
}

impl Kernel {
    /// Builds a kernel and computes its hash as Autotest's `compute_hash`.
    pub fn new(base: String, patches: Vec<Patch>) -> Kernel {
        if base == "UNKNOWN" {
            return Kernel::unknown();
        }
        // md5 of the original bytes, as Autotest hashes them.
        let mut text = crate::text::bytes(&base).into_owned();
        for p in &patches {
            text.push(b',');
            text.extend_from_slice(&crate::text::bytes(&p.hash));
        }
        let kernel_hash = format!("{:x}", md5::compute(&text));
        Kernel {
            base,
            kernel_hash,
            patches,
        }
    }

    /// The `UNKNOWN` kernel (no patches, hash `UNKNOWN`).
    pub fn unknown() -> Kernel {
        Kernel {
            base: "UNKNOWN".into(),
            kernel_hash: "UNKNOWN".into(),
            patches: Vec::new(),
        }
    }

    /// `tko_kernels.printable` as the legacy writer computes it, given the
    /// kernel's row id: `base`, or `base p<idx>` if a patch is significant.
    pub fn printable(&self, kernel_idx: i64) -> String {
        let significant = self.patches.iter().any(|p| !is_routine_patch(&p.reference));
        if significant {
            format!("{} p{kernel_idx}", self.base)
        } else {
            self.base.clone()
        }
    }
}

/// `.*(-mm[0-9]+|-git[0-9]+)\.(bz2|gz)$`: a routine -mm or -git snapshot.
fn is_routine_patch(reference: &str) -> bool {
    let stem = match reference
        .strip_suffix(".bz2")
        .or_else(|| reference.strip_suffix(".gz"))
    {
        Some(s) => s,
        None => return false,
    };
    let digits = stem.trim_end_matches(|c: char| c.is_ascii_digit());
    digits.len() < stem.len() && (digits.ends_with("-mm") || digits.ends_with("-git"))
}

/// One iteration of a test's `results/keyval`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Iteration {
    /// 1-based index.
    pub index: u32,
    /// `{attr}` keys (strings, verbatim).
    #[serde(serialize_with = "crate::text::serialize_text_map")]
    pub attr: KeyMap<String>,
    /// `{perf}` and untyped keys.
    #[serde(serialize_with = "crate::text::serialize_map")]
    pub perf: KeyMap<PerfValue>,
}

/// Timestamps are whole seconds since the Unix epoch, shown as naive UTC
/// datetimes (`YYYY-MM-DDTHH:MM:SS`) as Autotest's parser does under TZ=UTC.
pub type Timestamp = i64;

/// Serde helper: an optional epoch timestamp as an ISO datetime string.
pub mod iso_opt {
    use super::Timestamp;
    use serde::Serializer;

    /// Serializes `Some(ts)` as `YYYY-MM-DDTHH:MM:SS`, `None` as null.
    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(t) => s.serialize_str(&super::iso_datetime(*t)),
            None => s.serialize_none(),
        }
    }
}

/// Formats an epoch timestamp as a naive UTC `YYYY-MM-DDTHH:MM:SS`.
pub fn iso_datetime(ts: Timestamp) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `strftime("%b %d %H:%M:%S")` of an epoch timestamp in UTC.
pub fn short_datetime(ts: Timestamp) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, m, d) = civil_from_days(ts.div_euclid(86_400));
    let secs = ts.rem_euclid(86_400);
    format!(
        "{} {d:02} {:02}:{:02}:{:02}",
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One test result row (also SERVER_JOB, CLIENT_JOB.N and boot.N).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Test {
    /// Results subdirectory (`None` for `----`; `"----"` for SERVER_JOB).
    #[serde(serialize_with = "crate::text::serialize_opt")]
    pub subdir: Option<String>,
    /// Test name.
    #[serde(serialize_with = "crate::text::serialize")]
    pub testname: String,
    /// Final status (RUNNING for a test still in progress).
    pub status: Status,
    /// Reason text (possibly empty).
    #[serde(serialize_with = "crate::text::serialize_opt")]
    pub reason: Option<String>,
    /// Start time.
    #[serde(with = "iso_opt")]
    pub started_time: Option<Timestamp>,
    /// Finish time.
    #[serde(with = "iso_opt")]
    pub finished_time: Option<Timestamp>,
    /// The job's machine name.
    #[serde(serialize_with = "crate::text::serialize")]
    pub machine: String,
    /// Kernel current when the result completed.
    pub kernel: Kernel,
    /// Test attributes: `<subdir>/keyval` plus `host-*` keys.
    #[serde(serialize_with = "crate::text::serialize_map")]
    pub attributes: KeyMap<Value>,
    /// Iterations from `<subdir>/results/keyval`.
    pub iterations: Vec<Iteration>,
    /// Labels (always empty from the parser).
    #[serde(serialize_with = "crate::text::serialize_list")]
    pub labels: Vec<String>,
    /// The last INFO message recorded inside the test (tko's own; not in
    /// Autotest's output), `null` when there was none.
    pub information: Option<Information>,
}

/// An information message: an `INFO` status line nested in a test's group
/// (`job.record('INFO', subdir, testname, message)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Information {
    /// The line's reason text.
    #[serde(serialize_with = "crate::text::serialize")]
    pub message: String,
    /// Its `timestamp=` field, when it has a valid one.
    #[serde(with = "iso_opt")]
    pub time: Option<Timestamp>,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Autotest would have lost the job (or the run) here; tko kept what it
    /// could.
    Error,
    /// Autotest logs a warning here and goes on.
    Warning,
}

/// Something the parser noticed: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File, relative to the job directory (or absolute for files above it).
    pub file: String,
    /// 1-based line, when the problem is on one line.
    pub line: Option<u32>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(l) => write!(f, "{sev}: {}:{l}: {}", self.file, self.message),
            None => write!(f, "{sev}: {}: {}", self.file, self.message),
        }
    }
}

/// A parsed job: one TKO `tko_jobs` row and its tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// TKO job tag (last `--level` path components).
    pub tag: String,
    /// AFE job id from a `<digits>-<owner>/<x>` tag.
    pub afe_job_id: Option<u64>,
    /// Status log version (0 or 1).
    pub status_version: u32,
    /// Keyval `label`.
    #[serde(serialize_with = "crate::text::serialize_opt")]
    pub label: Option<String>,
    /// Keyval `user`.
    #[serde(serialize_with = "crate::text::serialize_opt")]
    pub user: Option<String>,
    /// Machine name (see spec §4.1).
    #[serde(serialize_with = "crate::text::serialize")]
    pub machine: String,
    /// Sorted distinct host platforms, comma-joined.
    #[serde(serialize_with = "crate::text::serialize")]
    pub machine_group: String,
    /// Keyval `owner`.
    #[serde(serialize_with = "crate::text::serialize_opt")]
    pub machine_owner: Option<String>,
    /// Keyval `job_queued`.
    #[serde(with = "iso_opt")]
    pub queued_time: Option<Timestamp>,
    /// Keyval `job_started`.
    #[serde(with = "iso_opt")]
    pub started_time: Option<Timestamp>,
    /// Keyval `job_finished`.
    #[serde(with = "iso_opt")]
    pub finished_time: Option<Timestamp>,
    /// Keyval `aborted_by`.
    #[serde(serialize_with = "crate::text::serialize_opt")]
    pub aborted_by: Option<String>,
    /// Keyval `aborted_on`.
    #[serde(with = "iso_opt")]
    pub aborted_on: Option<Timestamp>,
    /// The merged job keyval.
    #[serde(serialize_with = "crate::text::serialize_map")]
    pub keyval: KeyMap<Value>,
    /// Tests in Autotest's emission order.
    pub tests: Vec<Test>,
    /// What the parser noticed.
    pub diagnostics: Vec<Diagnostic>,
}

impl Job {
    /// True if any diagnostic is an error (Autotest would have lost the job).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_hash_matches_spec_example() {
        let p = |h: &str| Patch {
            spec: "s".into(),
            reference: "r".into(),
            hash: h.into(),
        };
        let k = Kernel::new("2.6.24-rc40".into(), vec![p("0"), p("0")]);
        assert_eq!(k.kernel_hash, "e1499f842be9f46298542ae6890988f9");
    }

    #[test]
    fn iso_datetime_of_corpus_epoch() {
        assert_eq!(iso_datetime(1_300_000_000), "2011-03-13T07:06:40");
        assert_eq!(short_datetime(1_300_000_050), "Mar 13 07:07:30");
        assert_eq!(iso_datetime(0), "1970-01-01T00:00:00");
    }

    #[test]
    fn routine_patches_do_not_make_printable_unique() {
        let k = Kernel::new(
            "2.6.20".into(),
            vec![Patch {
                spec: "a".into(),
                reference: "http://x/patch-2.6.20-git12.bz2".into(),
                hash: "1".into(),
            }],
        );
        assert_eq!(k.printable(7), "2.6.20");
        let k2 = Kernel::new(
            "2.6.20".into(),
            vec![Patch {
                spec: "a".into(),
                reference: "http://x/my.patch".into(),
                hash: "1".into(),
            }],
        );
        assert_eq!(k2.printable(7), "2.6.20 p7");
    }

    /// A `KeyMap` built by `from_pairs`, `insert`, `extend` and `remove`
    /// holds what a `BTreeMap` given the same operations holds, in its
    /// order (last duplicate wins).
    #[test]
    fn key_map_behaves_like_a_btree_map() {
        use proptest::prelude::*;
        let key = || "[a-c]{0,2}";
        let ops = proptest::collection::vec((0..4u8, key(), any::<u8>()), 0..40);
        proptest!(|(pairs in proptest::collection::vec((key(), any::<u8>()), 0..30), ops in ops)| {
            let mut k: KeyMap<u8> = pairs.iter().cloned().collect();
            let mut b: BTreeMap<String, u8> = pairs.into_iter().collect();
            for (op, key, v) in ops {
                match op {
                    0 => prop_assert_eq!(k.insert(key.clone(), v), b.insert(key, v)),
                    1 => prop_assert_eq!(k.remove(&key), b.remove(&key)),
                    2 => {
                        let more = [(key.clone(), v), (key, v.wrapping_add(1))];
                        k.extend(more.clone());
                        b.extend(more);
                    }
                    _ => prop_assert_eq!(k.get(&key), b.get(&key)),
                }
                let kv: Vec<_> = k.iter().collect();
                let bv: Vec<_> = b.iter().map(|(k, v)| (k.as_str(), v)).collect();
                prop_assert_eq!(kv, bv);
            }
        });
    }

    #[test]
    fn key_map_keeps_the_last_duplicate_and_serializes_in_key_order() {
        let m = KeyMap::from_pairs(vec![("b".into(), 1), ("a".into(), 2), ("b".into(), 3)]);
        assert_eq!(m["b"], 3);
        assert_eq!(m.len(), 2);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"a":2,"b":3}"#);
    }

    #[test]
    fn model_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Job>();
        check::<Test>();
    }
}
