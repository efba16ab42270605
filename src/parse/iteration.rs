//! Iteration keyvals (`<test>/results/keyval`): blank-line separated
//! iterations of `key{perf}=v`, `key{attr}=v` and untyped `key=v` lines, as
//! Autotest's `iteration.load_from_keyval` reads them for status version 0
//! (raw strings, `{tag}` kept in the key) and version 1 (typed, floats).
//! Lines Autotest warns about are dropped and reported as warnings; lines it
//! raises on (version 0 without `=`) are dropped and reported as errors.

use super::{is_py_space, lines_with_numbers, python_float, Problem};
use crate::model::{Iteration, PerfValue};
use nom::bytes::complete::{tag, take_till, take_while};
use nom::combinator::{all_consuming, rest};
use nom::IResult;
use nom::Parser;
use std::collections::BTreeMap;

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

/// `tagged = "{" \w* "}"`, the whole remaining input.
fn type_tag(i: &str) -> IResult<&str, &str> {
    let (i, _) = tag("{")(i)?;
    let (i, t) = take_while(|c: char| c.is_ascii_alphanumeric() || c == '_')(i)?;
    let (i, _) = tag("}")(i)?;
    Ok((i, t))
}

/// `line = [^=]* "=" .*`, where a `{\w*}` right before the `=` is the type
/// tag (`^([^=]*)\{(\w*)\}=(.*)$`, else `^([^=]*)=(.*)$`).
fn v1_line(i: &str) -> Line<'_> {
    let parsed: IResult<&str, (&str, &str)> = (|i| {
        let (i, left) = take_till(|c| c == '=')(i)?;
        let (i, _) = tag("=")(i)?;
        let (i, value) = rest(i)?;
        Ok((i, (left, value)))
    })(i);
    let Ok((_, (left, value))) = parsed else {
        return Line::Unparsable;
    };
    if let Some(open) = left.rfind('{') {
        if let Ok((_, t)) = all_consuming(type_tag).parse(&left[open..]) {
            return Line::Typed(&left[..open], t, value);
        }
    }
    Line::Untyped(left, value)
}

/// Parses `results/keyval` bytes for the given status version.
pub fn iterations(input: &[u8], status_version: u32) -> Iterations {
    let mut out = Iterations::default();
    let mut attr = BTreeMap::new();
    let mut perf = BTreeMap::new();
    let mut index = 1;
    for (number, raw) in lines_with_numbers(input) {
        let text = crate::text::decode(raw);
        // Python's str.strip(): ASCII whitespace on both ends.
        let line = text.trim_matches(|c: char| is_py_space(c));
        if line.is_empty() {
            out.iterations.push(Iteration {
                index,
                attr: std::mem::take(&mut attr),
                perf: std::mem::take(&mut perf),
            });
            index += 1;
            continue;
        }
        let warn = |out: &mut Iterations| {
            out.problems.push(Problem::warning(
                Some(number),
                format!(
                    "line '{}' found in test iteration keyval could not be parsed",
                    super::excerpt(line, super::EXCERPT_CHARS)
                ),
            ))
        };
        if status_version == 0 {
            match line.split_once('=') {
                Some((k, v)) => {
                    perf.insert(k.to_string(), PerfValue::Raw(v.to_string()));
                }
                None => out.problems.push(Problem::error(
                    Some(number),
                    format!(
                        "iteration keyval line '{}' has no '='",
                        super::excerpt(line, super::EXCERPT_CHARS)
                    ),
                )),
            }
            continue;
        }
        let (key, value) = match v1_line(line) {
            Line::Typed(k, "attr", v) => {
                attr.insert(k.to_string(), v.to_string());
                continue;
            }
            Line::Typed(k, "perf", v) | Line::Untyped(k, v) => (k, v),
            Line::Typed(..) | Line::Unparsable => {
                warn(&mut out);
                continue;
            }
        };
        match python_float(value) {
            Some(f) => {
                perf.insert(key.to_string(), PerfValue::Float(f));
            }
            None => warn(&mut out),
        }
    }
    if !attr.is_empty() || !perf.is_empty() {
        out.iterations.push(Iteration { index, attr, perf });
    }
    out
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
    }

    #[test]
    fn blank_lines_close_iterations_even_empty_ones() {
        let it = iterations(b"a{perf}=1\n\n\nb{attr}=x\n", 1);
        assert_eq!(it.iterations.len(), 3);
        assert_eq!(it.iterations[1].index, 2);
        assert!(it.iterations[1].perf.is_empty());
        assert_eq!(it.iterations[2].attr["b"], "x");
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
