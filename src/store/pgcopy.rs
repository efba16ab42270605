//! PostgreSQL binary `COPY` encoding of the job-tree rows, written straight
//! into byte buffers (no per-field trait objects, no per-row allocation).
//! The format is PostgreSQL's "binary COPY file format": a 19-byte header,
//! per row an `int16` field count then per field an `int32` length (-1 for
//! NULL) and the value in network byte order, and an `int16` -1 trailer.
//! Column order is each row type's `COLUMNS`. [`TreeCopy`] takes a batch's
//! rows as `table::build_rows` makes them and encodes each at once, one
//! stream per table, so no row is ever held as strings.

use crate::model::Timestamp;
use crate::table::{
    DiagnosticRow, InformationRow, IterationAttributeRow, IterationResultRow, JobKeyvalRow,
    RowSink, TestAttributeRow, TestRow,
};

/// Signature, flags (no OIDs) and header extension length (0).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_SECS: i64 = 946_684_800;

/// A binary COPY stream being written.
#[derive(Debug, Default)]
pub(crate) struct CopyBuf {
    pub(crate) buf: Vec<u8>,
}

impl CopyBuf {
    pub(crate) fn header(&mut self) {
        self.buf.extend_from_slice(HEADER);
    }

    pub(crate) fn trailer(&mut self) {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
    }

    fn fields(&mut self, n: i16) {
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn int4(&mut self, v: i32) {
        self.buf.extend_from_slice(&4i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn opt_int4(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.int4(v),
            None => self.null(),
        }
    }

    fn bool(&mut self, v: bool) {
        self.buf.extend_from_slice(&1i32.to_be_bytes());
        self.buf.push(u8::from(v));
    }

    fn float8(&mut self, v: Option<f64>) {
        match v {
            Some(v) => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
            }
            None => self.null(),
        }
    }

    fn text(&mut self, s: &str) {
        // A value over 1 GB is rejected by the server anyway.
        let n = i32::try_from(s.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&n.to_be_bytes());
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    /// `timestamp without time zone` from epoch seconds (UTC).
    fn timestamp(&mut self, t: Option<Timestamp>) {
        match t {
            Some(s) => {
                // Out of range (never `infinity`): the server rejects it.
                let us = s
                    .checked_sub(PG_EPOCH_SECS)
                    .and_then(|s| s.checked_mul(1_000_000))
                    .unwrap_or(i64::MAX - 1);
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&us.to_be_bytes());
            }
            None => self.null(),
        }
    }
}

/// A row type that can be written as one binary COPY row.
pub(crate) trait CopyRow {
    fn encode(&self, b: &mut CopyBuf);
}

impl CopyRow for TestRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(11);
        b.int4(self.test_idx);
        b.int4(self.job_idx);
        b.text(&self.test);
        b.opt_text(self.subdir.as_deref());
        b.int4(self.kernel_idx);
        b.int4(self.status);
        b.opt_text(self.reason.as_deref());
        b.int4(self.machine_idx);
        b.bool(self.invalid);
        b.timestamp(self.finished_time);
        b.timestamp(self.started_time);
    }
}

impl CopyRow for TestAttributeRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(5);
        b.int4(self.job_idx);
        b.int4(self.test_idx);
        b.text(&self.attribute);
        b.opt_text(self.value.as_deref());
        b.bool(self.user_created);
    }
}

impl CopyRow for IterationAttributeRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(5);
        b.int4(self.job_idx);
        b.int4(self.test_idx);
        b.int4(self.iteration);
        b.text(&self.attribute);
        b.text(&self.value);
    }
}

impl CopyRow for IterationResultRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(5);
        b.int4(self.job_idx);
        b.int4(self.test_idx);
        b.int4(self.iteration);
        b.text(&self.attribute);
        b.float8(self.value);
    }
}

impl CopyRow for JobKeyvalRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(3);
        b.int4(self.job_id);
        b.text(&self.key);
        b.opt_text(self.value.as_deref());
    }
}

impl CopyRow for DiagnosticRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(5);
        b.int4(self.job_idx);
        b.text(&self.file);
        b.opt_int4(self.line);
        b.text(self.severity);
        b.text(&self.message);
    }
}

impl CopyRow for InformationRow<'_> {
    fn encode(&self, b: &mut CopyBuf) {
        b.fields(4);
        b.int4(self.test_idx);
        b.int4(self.job_idx);
        b.text(&self.message);
        b.timestamp(self.info_time);
    }
}

/// The job-tree tables a batch COPYs, in [`TreeCopy::tables`] order, with
/// their columns.
pub(crate) const TREE_TABLES: [(&str, &[&str]); 7] = [
    ("tko_tests", TestRow::COLUMNS),
    ("tko_test_attributes", TestAttributeRow::COLUMNS),
    ("tko_iteration_attributes", IterationAttributeRow::COLUMNS),
    ("tko_iteration_result", IterationResultRow::COLUMNS),
    ("tko_job_keyvals", JobKeyvalRow::COLUMNS),
    ("tko_diagnostics", DiagnosticRow::COLUMNS),
    ("tko_test_information", InformationRow::COLUMNS),
];

/// One binary COPY stream per job-tree table ([`TREE_TABLES`] order),
/// filled row by row as the rows are built.
#[derive(Debug, Default)]
pub(crate) struct TreeCopy {
    /// The streams; a table's stream holds its header once it has a row.
    pub(crate) tables: [CopyBuf; 7],
    /// Rows per table.
    pub(crate) rows: [u64; 7],
}

impl TreeCopy {
    /// The stream of table `i` with one more row counted.
    fn table(&mut self, i: usize) -> &mut CopyBuf {
        if self.rows[i] == 0 {
            self.tables[i].header();
        }
        self.rows[i] += 1;
        &mut self.tables[i]
    }

    /// Ends every non-empty stream with the trailer.
    pub(crate) fn finish(&mut self) {
        for (b, &n) in self.tables.iter_mut().zip(&self.rows) {
            if n > 0 {
                b.trailer();
            }
        }
    }
}

impl<'a> RowSink<'a> for TreeCopy {
    fn test(&mut self, row: TestRow<'a>) {
        row.encode(self.table(0));
    }
    fn test_attribute(&mut self, row: TestAttributeRow<'a>) {
        row.encode(self.table(1));
    }
    fn iteration_attribute(&mut self, row: IterationAttributeRow<'a>) {
        row.encode(self.table(2));
    }
    fn iteration_result(&mut self, row: IterationResultRow<'a>) {
        row.encode(self.table(3));
    }
    fn job_keyval(&mut self, row: JobKeyvalRow<'a>) {
        row.encode(self.table(4));
    }
    fn diagnostic(&mut self, row: DiagnosticRow<'a>) {
        row.encode(self.table(5));
    }
    fn information(&mut self, row: InformationRow<'a>) {
        row.encode(self.table(6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres::types::{ToSql, Type};
    use std::time::{Duration, UNIX_EPOCH};

    /// The field as `postgres-types` encodes it (length prefix included).
    fn reference(v: &(dyn ToSql + Sync), ty: &Type) -> Vec<u8> {
        let mut out = BytesMut::new();
        let null = v.to_sql_checked(ty, &mut out).unwrap();
        let mut field = Vec::new();
        match null {
            postgres::types::IsNull::Yes => field.extend_from_slice(&(-1i32).to_be_bytes()),
            postgres::types::IsNull::No => {
                field.extend_from_slice(&(out.len() as i32).to_be_bytes());
                field.extend_from_slice(&out);
            }
        }
        field
    }

    fn ours(f: impl FnOnce(&mut CopyBuf)) -> Vec<u8> {
        let mut b = CopyBuf::default();
        f(&mut b);
        b.buf
    }

    #[test]
    fn fields_match_postgres_types() {
        for secs in [
            0i64,
            1_300_000_000,
            -86_400 * 365 * 40,
            946_684_800,
            4_102_444_800,
        ] {
            let st = if secs >= 0 {
                UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            assert_eq!(
                ours(|b| b.timestamp(Some(secs))),
                reference(&st, &Type::TIMESTAMP),
                "{secs}"
            );
        }
        assert_eq!(
            ours(|b| b.timestamp(None)),
            reference(&None::<std::time::SystemTime>, &Type::TIMESTAMP)
        );
        assert_eq!(ours(|b| b.int4(-7)), reference(&-7i32, &Type::INT4));
        assert_eq!(
            ours(|b| b.opt_int4(None)),
            reference(&None::<i32>, &Type::INT4)
        );
        assert_eq!(ours(|b| b.bool(true)), reference(&true, &Type::BOOL));
        assert_eq!(
            ours(|b| b.float8(Some(1.25))),
            reference(&1.25f64, &Type::FLOAT8)
        );
        assert_eq!(
            ours(|b| b.float8(None)),
            reference(&None::<f64>, &Type::FLOAT8)
        );
        assert_eq!(ours(|b| b.text("héllo")), reference(&"héllo", &Type::TEXT));
        assert_eq!(
            ours(|b| b.opt_text(None)),
            reference(&None::<&str>, &Type::TEXT)
        );
    }

    #[test]
    fn header_and_trailer() {
        let b = ours(|b| {
            b.header();
            b.trailer();
        });
        assert_eq!(b.len(), 19 + 2);
        assert_eq!(&b[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&b[19..], &[0xff, 0xff]);
    }
}
