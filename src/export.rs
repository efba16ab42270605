//! CSV and JSON Lines sinks over any `io::Write`, and [`write`], which
//! streams a [`Query`] of the warehouse into one of them. CSV is written
//! byte for byte as PostgreSQL's `COPY ... (FORMAT csv)` writes it (so
//! PostgreSQL's own CSV can pass straight through); JSON Lines types the
//! columns (integers and floats as numbers, ±infinity as `{"$float":
//! "inf"}`). The query layer lives in [`crate::query`]; its main types are
//! re-exported here under their historical names.

pub use crate::query::float::pg_float;
pub use crate::query::{
    parse_time, ColType, Column, Error, Filter, Kind, Query as ExportQuery, Sink, Warehouse,
    TEST_COLUMNS,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// RFC 4180 CSV, header row always, NULL as an empty field, `\n` line
    /// ends (as PostgreSQL's `COPY ... CSV` writes them).
    #[default]
    Csv,
    /// JSON Lines: one object per row, keys in column order.
    Json,
}

/// CSV (RFC 4180) writer: a field is quoted when it is empty (an empty
/// string, to tell it from NULL, which is written as nothing), or contains a
/// comma, a double quote, CR or LF (quotes doubled inside); rows end in
/// `\n`. This is byte for byte what PostgreSQL's `COPY ... CSV` writes.
pub struct CsvWriter<W: Write> {
    out: W,
    columns: usize,
}

impl<W: Write> CsvWriter<W> {
    /// Writes CSV to `out`.
    pub fn new(out: W) -> CsvWriter<W> {
        CsvWriter { out, columns: 0 }
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn field(&mut self, v: Option<&str>) -> io::Result<()> {
        let Some(v) = v else { return Ok(()) };
        let quote = v.is_empty()
            || (self.columns == 1 && v == "\\.")
            || v.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
        if !quote {
            return self.out.write_all(v.as_bytes());
        }
        self.out.write_all(b"\"")?;
        let mut rest = v;
        while let Some(i) = rest.find('"') {
            self.out.write_all(&rest.as_bytes()[..=i])?;
            self.out.write_all(b"\"")?;
            rest = &rest[i + 1..];
        }
        self.out.write_all(rest.as_bytes())?;
        self.out.write_all(b"\"")
    }
}

impl<W: Write> Sink for CsvWriter<W> {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.columns = columns.len();
        let names: Vec<Option<&str>> = columns.iter().map(|c| Some(c.name.as_str())).collect();
        self.row(&names)
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.field(*f)?;
        }
        self.out.write_all(b"\n")
    }

    fn csv_passthrough(&mut self) -> Option<&mut dyn Write> {
        Some(&mut self.out)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// JSON Lines writer: one object per row, keys in column order; integer
/// columns as numbers, float columns as numbers or `{"$float": "inf"}` /
/// `{"$float": "-inf"}`, NULL as `null`.
pub struct JsonWriter<W: Write> {
    out: W,
    keys: Vec<String>,
    types: Vec<ColType>,
}

impl<W: Write> JsonWriter<W> {
    /// Writes JSON Lines to `out`.
    pub fn new(out: W) -> JsonWriter<W> {
        JsonWriter {
            out,
            keys: Vec::new(),
            types: Vec::new(),
        }
    }

    /// The inner writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Sink for JsonWriter<W> {
    fn begin(&mut self, columns: &[Column]) -> io::Result<()> {
        self.keys = columns
            .iter()
            .map(|c| serde_json::to_string(&c.name).expect("a string serializes"))
            .collect();
        self.types = columns.iter().map(|c| c.ty).collect();
        Ok(())
    }

    fn row(&mut self, fields: &[Option<&str>]) -> io::Result<()> {
        self.out.write_all(b"{")?;
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.out.write_all(self.keys[i].as_bytes())?;
            self.out.write_all(b":")?;
            match (f, self.types[i]) {
                (None, _) => self.out.write_all(b"null")?,
                (Some("Infinity"), ColType::Float) => {
                    self.out.write_all(br#"{"$float":"inf"}"#)?;
                }
                (Some("-Infinity"), ColType::Float) => {
                    self.out.write_all(br#"{"$float":"-inf"}"#)?;
                }
                (Some("NaN"), ColType::Float) => {
                    self.out.write_all(br#"{"$float":"nan"}"#)?;
                }
                (Some(v), ColType::Int | ColType::Float) => self.out.write_all(v.as_bytes())?,
                (Some(v), ColType::Text) => serde_json::to_writer(&mut self.out, v)?,
            }
        }
        self.out.write_all(b"}\n")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Exports `query` from `wh` to `out` in `format`; returns the row count.
pub fn write<W: Write>(
    wh: &mut Warehouse,
    query: &ExportQuery,
    format: Format,
    out: W,
) -> Result<u64, Error> {
    match format {
        Format::Csv => wh.export(query, &mut CsvWriter::new(out)),
        Format::Json => wh.export(query, &mut JsonWriter::new(out)),
    }
}

/// An output file written beside its final path (`.NAME.tko-PID-N.tmp`
/// in the same directory) and renamed over it by [`AtomicFile::commit`]:
/// readers never see a partial file, and one dropped uncommitted (a failed
/// export) is removed, leaving any earlier file at the path untouched.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<io::BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `path`.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut attempt = 0u32;
        loop {
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".tko-{}-{attempt}.tmp", std::process::id()));
            let tmp = dir.join(tmp_name);
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        path: path.to_owned(),
                        tmp,
                        out: Some(io::BufWriter::with_capacity(1 << 16, file)),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Where to write.
    pub fn writer(&mut self) -> &mut io::BufWriter<File> {
        self.out.as_mut().expect("not yet committed")
    }

    /// Flushes the data to disk and renames the file to its final path.
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("committed once");
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.is_some() || self.tmp.exists() {
            // Best effort: the temporary file is ours and unfinished.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: ColType) -> Column {
        Column {
            name: name.to_owned(),
            ty,
        }
    }

    #[test]
    fn csv_quotes_like_postgres() {
        let mut w = CsvWriter::new(Vec::new());
        w.begin(&[col("a", ColType::Text), col("b", ColType::Text)])
            .unwrap();
        w.row(&[Some(""), None]).unwrap();
        w.row(&[Some("x,y"), Some("say \"hi\"\nbye")]).unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "a,b\n\"\",\n\"x,y\",\"say \"\"hi\"\"\nbye\"\n"
        );
    }

    #[test]
    fn json_types_columns() {
        let mut w = JsonWriter::new(Vec::new());
        w.begin(&[
            col("s", ColType::Text),
            col("i", ColType::Int),
            col("f", ColType::Float),
            col("g", ColType::Float),
        ])
        .unwrap();
        w.row(&[Some("a\"b"), Some("3"), Some("1e+20"), Some("-Infinity")])
            .unwrap();
        w.row(&[None, None, None, None]).unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner()).unwrap(),
            "{\"s\":\"a\\\"b\",\"i\":3,\"f\":1e+20,\"g\":{\"$float\":\"-inf\"}}\n\
             {\"s\":null,\"i\":null,\"f\":null,\"g\":null}\n"
        );
    }
}
