//! Keyval files (`keyval`, `<test>/keyval`, `host_keyvals/<host>`) as
//! Autotest's `read_keyval` reads them: `key=value` lines, `#` starts a
//! comment anywhere, values typed as int / float / string, last duplicate
//! wins. Where Autotest raises `ValueError` (blank line, comment-only line,
//! bad key) and loses the job, this parser skips the line and reports it.
//! Pure: bytes in, map and problems out; see `ingest` for the file reads.

use super::{is_py_space, lines_with_numbers, Problem};
use crate::model::{Key, KeyMap, Value};
use nom::bytes::complete::{tag, take_while1};
use nom::combinator::rest;
use nom::IResult;
use nom::Parser;

/// A parsed keyval file: the typed map and the lines that were rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keyval {
    /// Key → typed value (last duplicate wins).
    pub map: KeyMap<Value>,
    /// Lines Autotest would have raised on.
    pub problems: Vec<Problem>,
    /// Key → 1-based line of the value kept (the last duplicate).
    pub lines: KeyMap<u32>,
}

/// `key = [-.\w]+` (ASCII word characters, dash, dot).
fn key(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).parse(i)
}

/// `entry = key "=" value`. Typical input `label=nightly`; on success the
/// key and the raw value text.
fn entry(i: &str) -> IResult<&str, (&str, &str)> {
    let (i, k) = key(i)?;
    let (i, _) = tag("=")(i)?;
    let (i, v) = rest(i)?;
    Ok((i, (k, v)))
}

/// Types a keyval value: `^\d+$` → int, `^(\d+\.)?\d+$` → float, else string.
pub fn typed_value(v: &str) -> Value {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if all_digits(v) {
        return match v.parse::<u128>() {
            Ok(n) => Value::Int(n),
            // Python ints are unbounded; keep an oversized one as text.
            Err(_) => Value::Str(v.to_string()),
        };
    }
    if let Some((a, b)) = v.split_once('.') {
        if all_digits(a) && all_digits(b) {
            if let Ok(f) = v.parse::<f64>() {
                return Value::Float(f);
            }
        }
    }
    Value::Str(v.to_string())
}

/// Parses a keyval file's bytes.
pub fn keyval(input: &[u8]) -> Keyval {
    let mut problems = Vec::new();
    // One pair per line at most: sized once, not grown by doubling.
    let mut pairs = Vec::with_capacity(input.iter().filter(|&&b| b == b'\n').count() + 1);
    for (number, raw) in lines_with_numbers(input) {
        let text = crate::text::decode(raw);
        // Python: re.sub('#.*', '', line).rstrip()
        let uncommented = match text.find('#') {
            Some(p) => &text[..p],
            None => &text[..],
        };
        let line = uncommented.trim_end_matches(|c: char| is_py_space(c));
        match entry(line) {
            Ok((_, (k, v))) => pairs.push((Key::from(k), (typed_value(v), number))),
            Err(_) => problems.push(Problem::error(
                Some(number),
                format!(
                    "invalid keyval line {:?} (expected key=value)",
                    super::excerpt(line, super::EXCERPT_CHARS)
                ),
            )),
        }
    }
    // Sorted once; the last duplicate of a key wins, with its line.
    let sorted = KeyMap::from_pairs(pairs);
    let mut map = Vec::with_capacity(sorted.len());
    let mut lines = Vec::with_capacity(sorted.len());
    for (k, (v, n)) in sorted {
        map.push((k.clone(), v));
        lines.push((k, n));
    }
    Keyval {
        map: KeyMap::from_pairs(map),
        problems,
        lines: KeyMap::from_pairs(lines),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_values_like_read_keyval() {
        let k = keyval(b"a=007\nb=0.50\nc=-3\nd=1e5\ne=x=y\nf=\ng=  lead  \n");
        assert_eq!(k.map["a"], Value::Int(7));
        assert_eq!(k.map["b"], Value::Float(0.5));
        assert_eq!(k.map["c"], Value::Str("-3".into()));
        assert_eq!(k.map["d"], Value::Str("1e5".into()));
        assert_eq!(k.map["e"], Value::Str("x=y".into()));
        assert_eq!(k.map["f"], Value::Str(String::new()));
        assert_eq!(k.map["g"], Value::Str("  lead".into()));
        assert!(k.problems.is_empty());
    }

    #[test]
    fn comment_and_blank_lines_are_reported_with_line_numbers() {
        let k = keyval(b"a=1 # note\n# only comment\n\nb$=2\nc=3");
        assert_eq!(k.map.len(), 2);
        assert_eq!(k.map["a"], Value::Int(1));
        let lines: Vec<Option<u32>> = k.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(2), Some(3), Some(4)]);
    }
}
