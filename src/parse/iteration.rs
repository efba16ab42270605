//! Iteration keyvals (`<test>/results/keyval`): blank-line separated
//! iterations of `key{perf}=v`, `key{attr}=v` and untyped `key=v` lines, as
//! Autotest's `iteration.load_from_keyval` reads them for status version 0
//! (raw strings, `{tag}` kept in the key) and version 1 (typed, floats).
//! Lines Autotest warns about are dropped and reported as warnings; lines it
//! raises on (version 0 without `=`) are dropped and reported as errors.

use super::{lines_with_numbers, python_float, Problem};
use crate::model::{Iteration, Key, KeyMap, PerfValue};

/// Parsed iterations plus what was dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Iterations {
    /// Iterations, indexed from 1.
    pub iterations: Vec<Iteration>,
    /// Dropped lines: warnings where Autotest warns, errors where it raises
    /// and loses the job (version 0 lines without `=`).
    pub problems: Vec<Problem>,
}

/// What one version-1 line is.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// `key{tag}=value`.
    Typed(&'a str, &'a str, &'a str),
    /// `key=value` (legacy, counts as perf).
    Untyped(&'a str, &'a str),
    /// No `=` at all.
    Unparsable,
}

/// `tagged = "{" \w* "}"` at the end of `left` (ASCII word characters, as
/// Python 2's `\w` without `re.UNICODE`): where the `{` is, and the tag.
fn type_tag(left: &str) -> Option<(usize, &str)> {
    let inner = left.strip_suffix('}')?;
    let open = inner.bytes().rposition(|b| b == b'{')?;
    let tag = &inner[open + 1..];
    tag.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        .then_some((open, tag))
}

/// `line = [^=]* "=" .*`, where a `{\w*}` right before the `=` is the type
/// tag (`^([^=]*)\{(\w*)\}=(.*)$`, else `^([^=]*)=(.*)$`).
fn v1_line(i: &str) -> Line<'_> {
    // `[^=]* "="`: the first `=`.
    let Some(eq) = i.bytes().position(|b| b == b'=') else {
        return Line::Unparsable;
    };
    let (left, value) = (&i[..eq], &i[eq + 1..]);
    match type_tag(left) {
        Some((open, t)) => Line::Typed(&left[..open], t, value),
        None => Line::Untyped(left, value),
    }
}

/// Parses `results/keyval` bytes for the given status version.
///
/// A file that is valid UTF-8 (the usual case) is decoded once, not line by
/// line; each iteration's pairs are collected in file order and sorted
/// once ([`KeyMap::from_pairs`]: the last duplicate of a key wins).
pub fn iterations(input: &[u8], status_version: u32) -> Iterations {
    let mut p = IterationParser {
        out: Iterations::default(),
        attr: Vec::new(),
        perf: Vec::new(),
        index: 1,
        status_version,
    };
    match std::str::from_utf8(input) {
        Ok(text) if !crate::text::is_latin1(text) => {
            // Lines are short: a plain byte loop beats a memchr call each.
            let b = text.as_bytes();
            let (mut start, mut number) = (0, 1u32);
            while start < b.len() {
                let mut end = start;
                while end < b.len() && b[end] != b'\n' {
                    end += 1;
                }
                let end = (end + 1).min(b.len());
                p.line(number, &text[start..end]);
                start = end;
                number = number.saturating_add(1);
            }
        }
        _ => {
            for (number, raw) in lines_with_numbers(input) {
                p.line(number, &crate::text::decode(raw));
            }
        }
    }
    let IterationParser {
        mut out,
        attr,
        perf,
        index,
        ..
    } = p;
    if !attr.is_empty() || !perf.is_empty() {
        out.iterations.push(Iteration {
            index,
            attr: KeyMap::from_pairs(attr),
            perf: KeyMap::from_pairs(perf),
        });
    }
    out
}

/// The state of [`iterations`]: what is parsed so far and the open
/// iteration's pairs in file order.
struct IterationParser {
    out: Iterations,
    attr: Vec<(Key, String)>,
    perf: Vec<(Key, PerfValue)>,
    index: u32,
    status_version: u32,
}

impl IterationParser {
    /// One line (with its line break, if any).
    fn line(&mut self, number: u32, text: &str) {
        // Python's str.strip(): ASCII whitespace on both ends.
        let line = super::trim_py_space(text);
        if line.is_empty() {
            // Sized for the next iteration like this one.
            let (na, np) = (self.attr.len(), self.perf.len());
            let attr = std::mem::replace(&mut self.attr, Vec::with_capacity(na));
            let perf = std::mem::replace(&mut self.perf, Vec::with_capacity(np));
            self.out.iterations.push(Iteration {
                index: self.index,
                attr: KeyMap::from_pairs(attr),
                perf: KeyMap::from_pairs(perf),
            });
            self.index += 1;
            return;
        }
        if self.status_version == 0 {
            match line.split_once('=') {
                Some((k, v)) => self
                    .perf
                    .push((Key::from(k), PerfValue::Raw(v.to_string()))),
                None => self.out.problems.push(Problem::error(
                    Some(number),
                    format!(
                        "iteration keyval line '{}' has no '='",
                        super::excerpt(line, super::EXCERPT_CHARS)
                    ),
                )),
            }
            return;
        }
        let (key, value) = match v1_line(line) {
            Line::Typed(k, "attr", v) => {
                self.attr.push((Key::from(k), v.to_string()));
                return;
            }
            Line::Typed(k, "perf", v) | Line::Untyped(k, v) => (k, v),
            Line::Typed(..) | Line::Unparsable => return self.warn(number, line),
        };
        match python_float(value) {
            Some(f) => self.perf.push((Key::from(key), PerfValue::Float(f))),
            None => self.warn(number, line),
        }
    }

    fn warn(&mut self, number: u32, line: &str) {
        self.out.problems.push(Problem::warning(
            Some(number),
            format!(
                "line '{}' found in test iteration keyval could not be parsed",
                super::excerpt(line, super::EXCERPT_CHARS)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_tag_must_touch_the_equals_sign() {
        assert_eq!(v1_line("a{perf}=1"), Line::Typed("a", "perf", "1"));
        assert_eq!(
            v1_line("a{b}{attr}=x=y"),
            Line::Typed("a{b}", "attr", "x=y")
        );
        assert_eq!(v1_line("a{perf} = 5"), Line::Untyped("a{perf} ", " 5"));
        assert_eq!(v1_line("a{x y}=1"), Line::Untyped("a{x y}", "1"));
        assert_eq!(v1_line("nothing"), Line::Unparsable);
        assert_eq!(v1_line("a{}=1"), Line::Typed("a", "", "1"));
        assert_eq!(v1_line("a}{perf}=1"), Line::Typed("a}", "perf", "1"));
        assert_eq!(v1_line("a{p{erf}=1"), Line::Typed("a{p", "erf", "1"));
        assert_eq!(v1_line("a{pé}=1"), Line::Untyped("a{pé}", "1"));
        assert_eq!(v1_line("a}=1"), Line::Untyped("a}", "1"));
    }

    #[test]
    fn blank_lines_close_iterations_even_empty_ones() {
        let it = iterations(b"a{perf}=1\n\n\nb{attr}=x\n", 1);
        assert_eq!(it.iterations.len(), 3);
        assert_eq!(it.iterations[1].index, 2);
        assert!(it.iterations[1].perf.is_empty());
        assert_eq!(it.iterations[2].attr["b"], "x");
    }

    /// Within an iteration a repeated key keeps its last value (a dict
    /// assignment in Autotest), and lines that are not UTF-8 take the
    /// line-by-line Latin-1 path with the same result.
    #[test]
    fn repeated_keys_keep_the_last_value_on_both_paths() {
        for input in [
            &b"b{perf}=1\na{perf}=2\nb{perf}=3\nx{attr}=1\nx{attr}=2\n"[..],
            &b"b{perf}=1\na{perf}=2\nb{perf}=3\nx{attr}=1\nx{attr}=2\nc{attr}=\xe9\n"[..],
        ] {
            let it = iterations(input, 1);
            let i = &it.iterations[0];
            assert_eq!(i.perf["b"], PerfValue::Float(3.0));
            let keys: Vec<&str> = i.perf.keys().collect();
            assert_eq!(keys, ["a", "b"]);
            assert_eq!(i.attr["x"], "2");
        }
        let latin = iterations(b"c{attr}=\xe9\n", 1);
        assert_eq!(
            crate::text::stored(&latin.iterations[0].attr["c"]),
            "\u{e9}"
        );
    }

    #[test]
    fn version_zero_keeps_raw_strings_and_tags() {
        let it = iterations(b"perf-val{perf}=-173\n", 0);
        assert_eq!(
            it.iterations[0].perf["perf-val{perf}"],
            PerfValue::Raw("-173".into())
        );
    }
}
