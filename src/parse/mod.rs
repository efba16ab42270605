//! Pure parsers: bytes in, model types out, and the only place nom appears.
//! `keyval` reads job, test and host keyval files; `iteration` reads
//! `results/keyval`; `line` reads one status-log line; `v0` and `v1` are the
//! two status-log state machines (`reasons` merges a v1 test's reasons).
//! None of them touches the file system: the caller (`ingest`) reads files
//! and hands over bytes plus the few facts a state machine needs about the
//! job (`JobContext`). Where Autotest's parser raises and loses the job,
//! these parsers skip what they cannot read and report a [`Problem`] with
//! its line instead.

pub mod iteration;
pub mod keyval;
pub mod line;
mod reasons;
pub mod v0;
pub mod v1;

use crate::model::{Information, Kernel, Severity, Status, Timestamp, Value};

/// Something a parser could not read, or that Autotest warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error: Autotest's parser would have raised here (and lost the job).
    /// Warning: Autotest logs it and goes on.
    pub severity: Severity,
    /// 1-based line in the file, when there is one.
    pub line: Option<u32>,
    /// What was wrong.
    pub message: String,
}

impl Problem {
    /// An error at a line.
    pub fn error(line: Option<u32>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Error,
            line,
            message: message.into(),
        }
    }

    /// A warning at a line.
    pub fn warning(line: Option<u32>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            line,
            message: message.into(),
        }
    }
}

/// One result as a status-log state machine emits it, before the test's
/// keyval files are attached (that needs file reads; see `tree`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    /// Subdir (`None` for `----`, `"----"` for SERVER_JOB).
    pub subdir: Option<String>,
    /// Test name.
    pub testname: String,
    /// Status (RUNNING for partial results).
    pub status: Status,
    /// Reason.
    pub reason: Option<String>,
    /// Kernel at completion.
    pub kernel: Kernel,
    /// Start time.
    pub started_time: Option<Timestamp>,
    /// Finish time.
    pub finished_time: Option<Timestamp>,
    /// True once Autotest's `parse_test` built it (it then gets attributes
    /// and iterations); false for a RUNNING partial result.
    pub finalized: bool,
    /// The last INFO message recorded inside the test's group, with its
    /// timestamp (tko's own; Autotest drops INFO lines).
    pub info: Option<Information>,
}

/// Splits input into lines the way Python's file iteration does: on `\n`
/// only, each line keeping its `\n`, numbered from 1.
pub fn lines_with_numbers(input: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    input
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (u32::try_from(i + 1).unwrap_or(u32::MAX), l))
}

/// At most the first `max` characters of `s`, with `...` when cut: what a
/// diagnostic quotes of a line, so a huge line cannot make a huge message.
pub fn excerpt(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &s[..end]).into(),
        None => s.into(),
    }
}

/// Longest excerpt of a line a diagnostic quotes.
pub const EXCERPT_CHARS: usize = 200;

/// Python 2's `str.isspace` for one character (ASCII whitespace incl. `\v`).
pub fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// `text.trim_matches(is_py_space)`, a byte at a time (the spaces are
/// ASCII, so the cuts fall on character boundaries).
pub fn trim_py_space(text: &str) -> &str {
    let b = text.as_bytes();
    let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = b.iter().position(|c| !space(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !space(c)).map_or(start, |e| e + 1);
    &text[start..end]
}

/// Python's `float(text)`: surrounding whitespace, optional sign, decimal or
/// exponent notation, `nan`, `inf`, `infinity` (any case).
pub fn python_float(text: &str) -> Option<f64> {
    let t = trim_py_space(text);
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let value = if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        // The usual case: a number (neither nan nor inf).
        if let Some(f) = short_decimal(body) {
            f
        } else {
            if !is_decimal_literal(body) {
                return None;
            }
            body.parse::<f64>().ok()?
        }
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        f64::INFINITY
    } else {
        if !is_decimal_literal(body) {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if negative { -value } else { value })
}

/// `\d+(\.\d+)?` of at most 15 digits in all, exactly as `str::parse` (and
/// Python) rounds it, without the general algorithm: the digits as an
/// integer below 2^53 and a power of ten up to 10^15 are both exact in an
/// f64, so one IEEE division rounds correctly (Clinger's fast path).
/// `None` for anything else (the caller falls back to the general parse).
fn short_decimal(s: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let (mut m, mut digits, mut frac) = (0u64, 0usize, None);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u64::from(c - b'0');
                digits += 1;
            }
            b'.' if frac.is_none() && i > 0 && i + 1 < b.len() => frac = Some(b.len() - i - 1),
            _ => return None,
        }
    }
    if digits > 15 {
        return None;
    }
    Some(m as f64 / POW10[frac.unwrap_or(0)])
}

/// `(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?`, the unsigned literal `float()` takes.
fn is_decimal_literal(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i, i - start)
    };
    let (mut i, int_digits) = digits(0);
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        let (j, n) = digits(i + 1);
        i = j;
        frac_digits = n;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let (k, n) = digits(j);
        if n == 0 {
            return false;
        }
        i = k;
    }
    i == b.len()
}

/// Python's `int(text)` for a string: surrounding whitespace, optional sign,
/// decimal digits only.
pub fn python_int(text: &str) -> Option<i64> {
    let t = text.trim_matches(is_py_space);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.strip_prefix('+').unwrap_or(t).parse().ok()
}

/// True if `int(text)` would accept `text` as an integer of any size
/// (surrounding whitespace, optional sign, decimal digits).
pub fn is_python_int_literal(text: &str) -> bool {
    let t = text.trim_matches(is_py_space);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit())
}

/// Largest timestamp Python's `datetime.fromtimestamp` accepts (year 9999).
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Autotest's `get_timestamp`: `int(value)` seconds since the epoch. Floats
/// are truncated; anything else is an error (Autotest raises).
pub fn timestamp_of_value(v: &Value) -> Result<Timestamp, String> {
    // Integers too large for i64 are out of range (Python: OverflowError).
    let ts = match v {
        Value::Int(i) => Some(i64::try_from(*i).unwrap_or(i64::MAX)),
        Value::Float(f) if f.is_finite() => Some(f.trunc() as i64),
        Value::Str(s) if is_python_int_literal(s) => Some(python_int(s).unwrap_or(i64::MAX)),
        _ => None,
    };
    timestamp_in_range(ts, || show(v))
}

/// `get_timestamp` of a status-line `timestamp=` field (always a string).
pub fn timestamp_of_field(raw: &str) -> Result<Timestamp, String> {
    // `raw` shown as `show` shows a string value, only for an error.
    timestamp_in_range(python_int(raw), || format!("{raw:?}"))
}

/// `ts` if it is a timestamp tko stores, else the error naming the value
/// (`shown`, called only then).
fn timestamp_in_range(
    ts: Option<i64>,
    shown: impl FnOnce() -> String,
) -> Result<Timestamp, String> {
    match ts {
        Some(t) if (0..=MAX_TIMESTAMP).contains(&t) => Ok(t),
        Some(_) => Err(format!("timestamp {} is out of range", shown())),
        None => Err(format!("timestamp {} is not an integer", shown())),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{s:?}"),
        other => other.to_db_text().unwrap_or_else(|| "None".into()),
    }
}

/// Python 2's `str(value)` of a keyval value (`%.12g` for floats).
pub fn python2_str(v: &Value) -> Option<String> {
    match v {
        Value::Float(f) if f.is_finite() => {
            let s = format_g(*f, 12);
            Some(if s.contains(['.', 'e', 'n']) {
                s
            } else {
                s + ".0"
            })
        }
        other => other.to_db_text(),
    }
}

/// C's `%.{prec}g`.
fn format_g(f: f64, prec: usize) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let exp = format!("{:.*e}", prec - 1, f);
    let (mantissa, e) = exp.split_once('e').expect("{:e} always has an exponent");
    let e: i32 = e.parse().expect("exponent is an integer");
    if e < -4 || e >= prec as i32 {
        let m = trim_zeros(mantissa);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        let decimals = (prec as i32 - 1 - e).max(0) as usize;
        trim_zeros(&format!("{f:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_timestamp_field_is_named_in_its_error() {
        assert_eq!(timestamp_of_field("1234"), Ok(1234));
        assert_eq!(
            timestamp_of_field("12ab"),
            Err(r#"timestamp "12ab" is not an integer"#.to_string())
        );
        assert_eq!(
            timestamp_of_field("-5"),
            Err(r#"timestamp "-5" is out of range"#.to_string())
        );
    }

    #[test]
    fn python_float_accepts_what_python_accepts() {
        for (s, v) in [
            ("1", 1.0),
            (" 217 ", 217.0),
            ("+1.5", 1.5),
            ("1e5", 1e5),
            (".5", 0.5),
            ("5.", 5.0),
        ] {
            assert_eq!(python_float(s), Some(v), "{s}");
        }
        assert!(python_float("nan").is_some_and(f64::is_nan));
        assert_eq!(python_float("-inf"), Some(f64::NEG_INFINITY));
        for s in ["", "12abc", "FooBar", "+-1", "1e", ".", "0x10", "1_0"] {
            assert_eq!(python_float(s), None, "{s}");
        }
    }

    /// The short-decimal fast path gives exactly what `str::parse` gives.
    #[test]
    fn short_decimals_round_like_str_parse() {
        use proptest::prelude::*;
        proptest!(|(s in "[0-9]{1,9}(\\.[0-9]{1,9})?")| {
            let want: f64 = s.parse().unwrap();
            prop_assert_eq!(python_float(&s).map(f64::to_bits), Some(want.to_bits()), "{}", s);
        });
        for s in [
            "0.1",
            "123456789012345",
            "0.000000000000001",
            "9007199.254740993",
            "5e-324",
        ] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(
                python_float(s).map(f64::to_bits),
                Some(want.to_bits()),
                "{s}"
            );
        }
        // Left to the general parse (which still accepts the first two).
        for s in ["1.", ".5", "1.2.3", "1234567890123456", "1e5", "-1"] {
            assert_eq!(short_decimal(s), None, "{s}");
        }
        assert_eq!(python_float("1."), Some(1.0));
        assert_eq!(python_float("1234567890123456"), Some(1234567890123456.0));
    }

    #[test]
    fn python_int_and_timestamps() {
        assert_eq!(python_int(" -5 "), Some(-5));
        for s in ["", " ", " \t1 \x0b", "a b", "\x0cx", "é "] {
            assert_eq!(trim_py_space(s), s.trim_matches(is_py_space), "{s:?}");
        }
        assert_eq!(python_int("1.5"), None);
        assert_eq!(timestamp_of_field("1300000001"), Ok(1_300_000_001));
        assert!(timestamp_of_field("1300000001.5").is_err());
        assert_eq!(timestamp_of_value(&Value::Float(12.9)), Ok(12));
    }

    #[test]
    fn python2_str_of_floats() {
        assert_eq!(python2_str(&Value::Float(2.1)).as_deref(), Some("2.1"));
        assert_eq!(python2_str(&Value::Float(1.0)).as_deref(), Some("1.0"));
        assert_eq!(
            python2_str(&Value::Float(0.1 + 0.2)).as_deref(),
            Some("0.3")
        );
        assert_eq!(python2_str(&Value::Int(7)).as_deref(), Some("7"));
    }
}
