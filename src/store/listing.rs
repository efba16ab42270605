//! How both backends keep the listings of top-level directories that a
//! backfill need not list again (`discover::Listing`, table
//! `tko_scan_listing`): a row is the directory's absolute path, its stamp
//! and its sub-directories' names, all as bytes (paths need not be
//! UTF-8), read a round of directories at a time, a range of each root's
//! rows ([`Span`]): those of the round's directories are used, those of
//! directories no longer there are forgotten.

use crate::discover::{Listing, Recorded, TopSpan};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How many listings of directories gone a round forgets at most: after
/// a lab removed a year of results, the rest are forgotten by the next
/// runs, and a run holds a few MB of them, not all.
pub(crate) const GONE_PER_ROUND: usize = 1 << 15;

/// The rows of one [`TopSpan`]: paths strictly between `low` and `high`
/// (byte order, which both backends give `BLOB`/`bytea`), of which those
/// with no `/` after the first `prefix` bytes (the root and its `/`) are
/// the root's direct children, the others another root's.
pub(crate) struct Span<'a> {
    pub(crate) low: Vec<u8>,
    pub(crate) high: Vec<u8>,
    pub(crate) prefix: usize,
    tops: HashSet<&'a [u8]>,
}

impl<'a> Span<'a> {
    /// The rows `span` covers: after `span.after` (or from the root's
    /// first child) through its last directory (or the root's last child).
    pub(crate) fn of(span: &TopSpan<'a>) -> Span<'a> {
        let mut prefix = span.root.as_os_str().as_bytes().to_vec();
        if prefix.last() != Some(&b'/') {
            prefix.push(b'/');
        }
        let low = span
            .after
            .map_or_else(|| prefix.clone(), |a| a.as_os_str().as_bytes().to_vec());
        let high = match span.tops.last() {
            // Right after the last: no path holds a NUL byte.
            Some(last) if !span.to_end => [last.as_os_str().as_bytes(), &[0]].concat(),
            // Every path that starts with `prefix` is below this.
            _ => [&prefix[..prefix.len() - 1], b"0"].concat(),
        };
        Span {
            low,
            high,
            prefix: prefix.len(),
            tops: span.tops.iter().map(|t| t.as_os_str().as_bytes()).collect(),
        }
    }

    /// Adds a stored row of this span to `out`: the listing of one of its
    /// directories, or a directory gone (a direct child of the root that
    /// is not one of them). A row not written by [`row`] is left out (its
    /// directory is listed again), and so is a directory gone once `out`
    /// holds [`GONE_PER_ROUND`] of them (rows are read as a stream, so
    /// the others cost no memory).
    pub(crate) fn add(&self, out: &mut Recorded, path: &[u8], stamp: &[u8], names: &[u8]) {
        let path_of = |p: &[u8]| Path::new(OsStr::from_bytes(p)).to_path_buf();
        if self.tops.contains(path) {
            if let Some(l) = Listing::from_bytes(stamp, names) {
                out.listings.insert(path_of(path), l);
            }
        } else if out.gone.len() < GONE_PER_ROUND
            && path.len() > self.prefix
            && !path[self.prefix..].contains(&b'/')
        {
            out.gone.push(path_of(path));
        }
    }
}

/// A listing as stored: path, stamp, names.
pub(crate) fn row(path: &Path, listing: &Listing) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        path.as_os_str().as_bytes().to_vec(),
        listing.stamp_bytes(),
        listing.names_bytes(),
    )
}
