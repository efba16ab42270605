//! One status-log line, as Autotest's `status_line.parse_line` reads it:
//! leading tabs give the indent, then three tab-terminated columns (status
//! word, subdir, test name), then a run of `\w+=value` optional fields, then
//! the reason (which may itself contain tabs). Anything else is not a status
//! line and is ignored by the state machines. Pure and allocation-light.

use super::is_py_space;
use crate::model::{Key, KeyMap, Status};
use nom::bytes::complete::{tag, take_till, take_while};
use nom::IResult;
use nom::Parser;
use std::rc::Rc;

/// What kind of line this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// `START`: opens a group.
    Start,
    /// `END <status>`: closes a group.
    End,
    /// A plain status word.
    Status,
    /// `INFO` (version 1 only).
    Info,
}

impl LineKind {
    /// The name Autotest uses (`START`, `END`, `STATUS`, `INFO`).
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Start => "START",
            LineKind::End => "END",
            LineKind::Status => "STATUS",
            LineKind::Info => "INFO",
        }
    }
}

/// A status line's `key=value` fields, sorted by key (later duplicates
/// win); names and values held inline up to 24 bytes.
pub type Fields = KeyMap<Key>;

/// A parsed status line.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusLine {
    /// Number of leading tabs.
    pub indent: usize,
    /// Line type.
    pub kind: LineKind,
    /// Status word (None for START and INFO).
    pub status: Option<Status>,
    /// Subdir column (`----` → None; None for INFO).
    pub subdir: Option<Rc<str>>,
    /// Test name column (`----` → None; None for INFO).
    pub testname: Option<Rc<str>>,
    /// Reason (None for INFO).
    pub reason: Option<String>,
    /// The text after the fields of an INFO line, which Autotest's parser
    /// drops (tko keeps it as the test's information message); None for
    /// the other kinds.
    pub message: Option<String>,
    /// Optional `key=value` fields (later duplicates win).
    pub fields: Fields,
}

/// Why a status line was rejected (Autotest raises `AssertionError` here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStatus {
    /// The offending status column.
    pub word: String,
}

/// `column = \S [^\t]* "\t"`.
fn column(i: &str) -> IResult<&str, &str> {
    let (rest, text) = take_till(|c| c == '\t')(i)?;
    if text.chars().next().is_none_or(is_py_space) {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    let (rest, _) = tag("\t")(rest)?;
    Ok((rest, text))
}

/// `head = \t* column column column`: `^\t*(\S[^\t]*\t){3}`. On success the
/// indent, the three columns and the unparsed tail.
fn head(i: &str) -> IResult<&str, (usize, [&str; 3])> {
    let (i, tabs) = take_while(|c| c == '\t')(i)?;
    let (i, (a, b, c)) = (column, column, column).parse(i)?;
    Ok((i, (tabs.len(), [a, b, c])))
}

/// `field = \w+ "=" .+` (ASCII word characters; non-empty value).
fn field(part: &str) -> Option<(&str, &str)> {
    let key_end = part
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(part.len());
    let (key, after) = part.split_at(key_end);
    let value = after.strip_prefix('=')?;
    let value = value.split('\n').next().unwrap_or("");
    (!key.is_empty() && !value.is_empty()).then_some((key, value))
}

/// Splits what follows the three columns into the leading `\w+=value`
/// fields and the reason (the rest, tabs kept).
pub(crate) fn fields_and_reason(tail: &str) -> (Fields, String) {
    let (fields, start) = fields_and_reason_start(tail);
    (fields, tail[start..].to_string())
}

/// [`fields_and_reason`], with the reason as the byte offset in `tail`
/// where it starts.
fn fields_and_reason_start(tail: &str) -> (Fields, usize) {
    let mut fields = Fields::new();
    let mut start = 0;
    for part in tail.split('\t') {
        let Some((k, v)) = field(part) else {
            break;
        };
        fields.insert(k, Key::from(v));
        start += part.len() + 1;
    }
    (fields, start.min(tail.len()))
}

/// `----` means no name.
pub(crate) fn name(col: &str) -> Option<Rc<str>> {
    (col != "----").then(|| Rc::from(col))
}

/// True if Autotest would treat this raw line as a status line.
pub fn is_status_line(raw: &str) -> bool {
    head(raw).is_ok()
}

/// Parses one raw line (newline included or not). `Ok(None)` for lines that
/// are not status lines; `Err` for a status line with an unknown status word
/// (and for `INFO` when `version` is 0).
pub fn status_line(raw: &str, version: u32) -> Result<Option<StatusLine>, BadStatus> {
    parse_line(raw, version, |start, end| raw[start..end].to_string())
}

/// [`status_line`] of an owned line: the reason is the line's own buffer,
/// cut in place (no copy of a very long line).
pub fn status_line_owned(raw: String, version: u32) -> Result<Option<StatusLine>, BadStatus> {
    let mut raw = Some(raw);
    let mut span = (0, 0);
    let result = {
        let text = raw.as_deref().expect("set above");
        parse_line(text, version, |start, end| {
            span = (start, end);
            String::new()
        })
    };
    let mut line = result?;
    if let Some(l) = line.as_mut().filter(|l| l.reason.is_some()) {
        let mut own = raw.take().expect("set above");
        let (start, end) = span;
        own.truncate(end);
        own.drain(..start);
        l.reason = Some(own);
    }
    Ok(line)
}

/// The parse shared by [`status_line`] and [`status_line_owned`]; `reason`
/// makes the reason from its byte span in `raw`.
fn parse_line(
    raw: &str,
    version: u32,
    reason: impl FnOnce(usize, usize) -> String,
) -> Result<Option<StatusLine>, BadStatus> {
    let Ok((tail, (indent, [word, subdir, testname]))) = head(raw) else {
        return Ok(None);
    };
    let tail_start = raw.len() - tail.len();
    let tail = tail.trim_end_matches('\n');
    let (fields, start) = fields_and_reason_start(tail);
    let span = (tail_start + start, tail_start + tail.len());
    // A line with exactly three tab-terminated columns and nothing after the
    // last tab still has an (empty) fourth part, as Python's split gives.
    if version >= 1 && word == "INFO" {
        return Ok(Some(StatusLine {
            indent,
            kind: LineKind::Info,
            status: None,
            subdir: None,
            testname: None,
            reason: None,
            message: Some(reason(span.0, span.1)),
            fields,
        }));
    }
    let (kind, status_word) = if word == "START" {
        (LineKind::Start, None)
    } else if let Some(s) = word.strip_prefix("END ") {
        (LineKind::End, Some(s))
    } else {
        (LineKind::Status, Some(word))
    };
    let status = match status_word {
        None => None,
        Some(w) => match Status::from_word(w) {
            Some(s) => Some(s),
            None => {
                return Err(BadStatus {
                    word: word.to_string(),
                })
            }
        },
    };
    Ok(Some(StatusLine {
        indent,
        kind,
        status,
        subdir: name(subdir),
        testname: name(testname),
        reason: Some(reason(span.0, span.1)),
        message: None,
        fields,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoketest_line() {
        let l = status_line(
            "\t\t\tGOOD\t----\t----\tfield1=val1\tfield2=val2\tTest Passed",
            1,
        )
        .expect("valid")
        .expect("a status line");
        assert_eq!(l.indent, 3);
        assert_eq!(l.kind, LineKind::Status);
        assert_eq!(l.status, Some(Status::Good));
        assert_eq!(l.subdir, None);
        assert_eq!(l.fields.len(), 2);
        assert_eq!(l.reason.as_deref(), Some("Test Passed"));
    }

    #[test]
    fn word_like_message_becomes_a_field() {
        let l = status_line("FAIL\tt\tt\ttimestamp=1\texpected=1 got=2\n", 1)
            .expect("valid")
            .expect("line");
        assert_eq!(l.fields["expected"], "1 got=2");
        assert_eq!(l.reason.as_deref(), Some(""));
    }

    #[test]
    fn non_word_key_ends_fields_and_tabs_stay_in_reason() {
        let l = status_line("INFO\t----\t----\twarnings.disable=X\tlocaltime=y\t\n", 1)
            .expect("valid")
            .expect("line");
        assert!(l.fields.is_empty());
        let l = status_line("GOOD\ta\tb\tx=1\tone\ttwo\n", 1)
            .expect("valid")
            .expect("line");
        assert_eq!(l.reason.as_deref(), Some("one\ttwo"));
    }

    #[test]
    fn non_status_lines() {
        for raw in [
            "  continuation\n",
            "\n",
            "GOOD\t----\t----\n",
            " GOOD\ta\tb\tc\n",
            "GOOD\t\tb\tc\t",
        ] {
            assert_eq!(status_line(raw, 1), Ok(None), "{raw:?}");
        }
    }

    #[test]
    fn owned_lines_parse_the_same() {
        for raw in [
            "\t\t\tGOOD\t----\t----\tfield1=val1\tfield2=val2\tTest Passed\n",
            "FAIL\tt\tt\ttimestamp=1\texpected=1 got=2\n",
            "GOOD\ta\tb\tx=1\tone\ttwo",
            "INFO\t----\t----\tkernel=2\t\n",
            "GOOD\ta\tb\t\n",
            "END PASS\ta\tb\t\n",
            "  continuation\n",
        ] {
            assert_eq!(
                status_line_owned(raw.to_string(), 1),
                status_line(raw, 1),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn unknown_status_words_are_rejected() {
        assert!(status_line("END PASS\ta\tb\t\n", 1).is_err());
        assert!(status_line("INFO\t----\t----\t\n", 0).is_err());
        assert!(status_line("INFO\t----\t----\t\n", 1).is_ok());
    }
}
