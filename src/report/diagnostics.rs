//! `tko diagnostics`: what the parser recorded for each job, one line per
//! diagnostic in the form `tko parse` prints them (`JOB: severity:
//! FILE:LINE: message`), from the rows of a `diagnostics` query.

use super::text::one_line;
use crate::query::{Column, Sink};
use std::io::{self, Write};

/// A [`Sink`] writing a `diagnostics` query as text lines.
pub struct TextWriter<W: Write> {
    out: W,
}

impl<W: Write> TextWriter<W> {
    /// Writes to `out`.
    pub fn new(out: W) -> TextWriter<W> {
        TextWriter { out }
    }
}

impl<W: Write> Sink for TextWriter<W> {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        if names != ["job_tag", "file", "line", "severity", "message"] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a diagnostics query: columns {names:?}"),
            ));
        }
        Ok(())
    }

    fn row(&mut self, f: &[Option<&str>]) -> io::Result<()> {
        let v = |i: usize| f[i].unwrap_or_default();
        write!(self.out, "{}: {}: {}", v(0), v(3), v(1))?;
        if let Some(line) = f[2] {
            write!(self.out, ":{line}")?;
        }
        writeln!(self.out, ": {}", one_line(v(4)))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ColType;

    #[test]
    fn lines_read_like_tko_parse() {
        let cols: Vec<Column> = ["job_tag", "file", "line", "severity", "message"]
            .iter()
            .map(|n| Column {
                name: (*n).into(),
                ty: ColType::Text,
            })
            .collect();
        let mut w = TextWriter::new(Vec::new());
        w.begin(&cols).unwrap();
        w.row(&[
            Some("1-a/h"),
            Some("status.log"),
            Some("3"),
            Some("error"),
            Some("bad\nline"),
        ])
        .unwrap();
        w.row(&[
            Some("1-a/h"),
            Some("keyval"),
            None,
            Some("warning"),
            Some("odd"),
        ])
        .unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            "1-a/h: error: status.log:3: bad line\n1-a/h: warning: keyval: odd\n"
        );
    }
}
