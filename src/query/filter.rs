//! Row filters shared by every read command: globs over job tag, label,
//! test, machine and kernel, status words, and a finished-time window.
//! Raw flag values become a validated [`Filter`] here, before any query
//! runs: dates are parsed by `jiff` (an impossible date such as
//! `2011-02-30` is refused, naming the value), status words are checked
//! against the known ones (listed in the error), and globs are bounded in
//! length so that both stores accept them alike. Globs are translated to
//! each store's pattern language (`LIKE` with `\` escapes on PostgreSQL,
//! `GLOB` on SQLite) by [`glob_to_like`] and [`glob_to_sqlite`].

use super::Error;
use crate::model::Status;
use jiff::civil::DateTime;

/// The longest glob accepted, in bytes. SQLite refuses patterns over
/// 50,000 bytes and a translated glob can be three times its source, so
/// both stores accept anything up to this.
pub const MAX_GLOB_BYTES: usize = 4096;

/// Row filters shared by every kind. Globs match the whole value; `*` is any
/// run of characters, `?` one character, `\` makes the next character
/// literal; everything else (including `[`) is literal. A NULL value never
/// matches a glob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Job tag glob.
    pub job: Option<String>,
    /// Job label glob.
    pub label: Option<String>,
    /// Test name glob.
    pub test: Option<String>,
    /// Machine (hostname) glob.
    pub machine: Option<String>,
    /// Kernel (base version) glob.
    pub kernel: Option<String>,
    /// Status words (any of).
    pub status: Vec<Status>,
    /// Finished at or after (UTC, whole seconds; see [`parse_time`]).
    pub since: Option<DateTime>,
    /// Finished at or before (UTC, whole seconds; see [`parse_time`]).
    pub until: Option<DateTime>,
}

impl Filter {
    /// A filter selecting exactly one job tag.
    pub fn job(tag: &str) -> Filter {
        Filter {
            job: Some(glob_escape(tag)),
            ..Filter::default()
        }
    }

    /// The globs with their flag names, for checks and messages.
    pub fn globs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("--job", &self.job),
            ("--label", &self.label),
            ("--test", &self.test),
            ("--machine", &self.machine),
            ("--kernel", &self.kernel),
        ]
        .into_iter()
        .filter_map(|(flag, g)| g.as_deref().map(|g| (flag, g)))
    }

    /// Checks what both stores must accept alike: glob lengths and NUL
    /// characters (no stored value holds one).
    pub fn validate(&self) -> Result<(), Error> {
        for (flag, g) in self.globs() {
            if g.len() > MAX_GLOB_BYTES {
                return Err(Error::Filter(format!(
                    "{flag}: the glob is {} bytes long; globs are limited to {MAX_GLOB_BYTES}",
                    g.len()
                )));
            }
            if g.contains('\0') {
                return Err(Error::Filter(format!(
                    "{flag}: {g:?} contains a NUL character, which no stored value can hold"
                )));
            }
        }
        Ok(())
    }
}

/// Parses `--since`/`--until`, in UTC (the warehouse stores UTC):
/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` or with `T` instead of the space.
/// A date alone is the start of that day, or with `end_of_day` its last
/// second (so `--until 2011-03-13` includes that day). Impossible dates
/// (`2011-02-30`), fractions of a second and years before 1 (which
/// PostgreSQL cannot hold) are refused with a message naming the value.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<DateTime, Error> {
    let what = "YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS], UTC";
    let shape_ok = {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
        let date = b.len() >= 10
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10);
        let time = match b.len() {
            10 => true,
            16 | 19 => {
                matches!(b[10], b' ' | b'T')
                    && digits(11..13)
                    && b[13] == b':'
                    && digits(14..16)
                    && (b.len() == 16 || (b[16] == b':' && digits(17..19)))
            }
            _ => false,
        };
        // jiff reads a leap second `:60` as `:59`; no stored time has one.
        date && time && !(b.len() == 19 && &b[17..19] == b"60")
    };
    if !shape_ok {
        return Err(Error::Filter(format!("{s:?} is not {what}")));
    }
    let dt: DateTime = s
        .parse()
        .map_err(|e| Error::Filter(format!("{s:?} is not a real date or time: {e}")))?;
    if dt.year() < 1 {
        return Err(Error::Filter(format!(
            "{s:?} is before 0001-01-01, the earliest time both stores hold"
        )));
    }
    if s.len() == 10 && end_of_day {
        return Ok(dt.date().at(23, 59, 59, 0));
    }
    Ok(dt)
}

/// `t` as the warehouse writes times: `YYYY-MM-DD HH:MM:SS`.
pub fn time_text(t: DateTime) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// A status word (any case) → [`Status`]; an unknown word is an error
/// listing the valid ones.
pub fn parse_status(word: &str) -> Result<Status, Error> {
    Status::from_word(&word.to_ascii_uppercase()).ok_or_else(|| {
        let valid: Vec<&str> = Status::ALL.iter().map(|s| s.word()).collect();
        Error::Filter(format!(
            "--status: unknown status {word:?}; valid words (any case): {}",
            valid.join(", ")
        ))
    })
}

/// Escapes `*`, `?` and `\` so that a glob matches `s` literally.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One piece of a glob.
enum GlobTok {
    Any,
    One,
    Lit(char),
}

fn glob_tokens(glob: &str) -> Vec<GlobTok> {
    let mut out = Vec::new();
    let mut it = glob.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '*' => GlobTok::Any,
            '?' => GlobTok::One,
            '\\' => GlobTok::Lit(it.next().unwrap_or('\\')),
            c => GlobTok::Lit(c),
        });
    }
    out
}

/// The value a glob without wildcards matches (its escapes removed), or
/// `None` when it has a `*` or `?`: such a glob is planned as `=`, which
/// uses the unique index on a job tag where `LIKE`/`GLOB` scan.
pub fn glob_literal(glob: &str) -> Option<String> {
    let mut out = String::new();
    for t in glob_tokens(glob) {
        match t {
            GlobTok::Any | GlobTok::One => return None,
            GlobTok::Lit(c) => out.push(c),
        }
    }
    Some(out)
}

/// The glob as a LIKE pattern with `\` as escape character (PostgreSQL).
pub fn glob_to_like(glob: &str) -> String {
    let mut out = String::new();
    for t in glob_tokens(glob) {
        match t {
            GlobTok::Any => out.push('%'),
            GlobTok::One => out.push('_'),
            GlobTok::Lit(c) => {
                if matches!(c, '%' | '_' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// The glob as an SQLite GLOB pattern (literal `*`, `?`, `[` as classes).
pub fn glob_to_sqlite(glob: &str) -> String {
    let mut out = String::new();
    for t in glob_tokens(glob) {
        match t {
            GlobTok::Any => out.push('*'),
            GlobTok::One => out.push('?'),
            GlobTok::Lit(c @ ('*' | '?' | '[')) => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            GlobTok::Lit(c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str, end: bool) -> String {
        time_text(parse_time(s, end).unwrap())
    }

    #[test]
    fn globs_without_wildcards_are_literals() {
        assert_eq!(glob_literal("123-a/h"), Some("123-a/h".into()));
        assert_eq!(
            glob_literal(&glob_escape("a*b?c\\d")),
            Some("a*b?c\\d".into())
        );
        assert_eq!(glob_literal("a*"), None);
        assert_eq!(glob_literal("a?"), None);
    }

    #[test]
    fn globs_translate() {
        assert_eq!(glob_to_like("12*-a?c%_\\*"), "12%-a_c\\%\\_*");
        assert_eq!(glob_to_sqlite("a*b?[c\\*"), "a*b?[[]c[*]");
        assert_eq!(glob_escape("a*b?\\"), "a\\*b\\?\\\\");
        assert_eq!(glob_to_like(&glob_escape("1_x*")), "1\\_x*");
    }

    #[test]
    fn times_parse() {
        assert_eq!(text("2011-03-13", false), "2011-03-13 00:00:00");
        assert_eq!(text("2011-03-13", true), "2011-03-13 23:59:59");
        assert_eq!(text("2011-03-13T07:06", false), "2011-03-13 07:06:00");
        assert_eq!(text("2011-03-13 07:06:41", true), "2011-03-13 07:06:41");
        assert_eq!(text("2012-02-29", false), "2012-02-29 00:00:00");
        assert_eq!(text("0001-01-01", false), "0001-01-01 00:00:00");
        for bad in [
            "2011-3-13",
            "yesterday",
            "2011-13-01",
            "2011-03-13 25:00",
            "2011-03-13T1:2",
            "2011-02-30",
            "2011-02-29",
            "2011-04-31 00:00",
            "0000-01-01",
            "2011-03-13 07:06:41.5",
            "2011-03-13 24:00:00",
            "2011-03-13 07:06:60",
            "",
        ] {
            let e = parse_time(bad, false).expect_err(bad).to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_status_lists_the_valid_words() {
        assert_eq!(parse_status("fail").unwrap(), Status::Fail);
        let e = parse_status("PASS").unwrap_err().to_string();
        assert!(e.contains("\"PASS\""), "{e}");
        for s in Status::ALL {
            assert!(e.contains(s.word()), "{e}");
        }
    }

    #[test]
    fn long_globs_and_nul_are_refused() {
        let ok = Filter {
            test: Some("x".repeat(MAX_GLOB_BYTES)),
            ..Filter::default()
        };
        assert!(ok.validate().is_ok());
        let long = Filter {
            test: Some("x".repeat(MAX_GLOB_BYTES + 1)),
            ..Filter::default()
        };
        let e = long.validate().unwrap_err().to_string();
        assert!(e.contains("--test") && e.contains("4096"), "{e}");
        let nul = Filter {
            machine: Some("a\0".into()),
            ..Filter::default()
        };
        assert!(nul
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--machine"));
    }
}
