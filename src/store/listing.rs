//! How both backends keep the listings of top-level directories that a
//! backfill need not list again (`discover::Listing`, table
//! `tko_scan_listing`): a row is the directory's absolute path, its stamp
//! and its sub-directories' names, all as bytes (paths need not be
//! UTF-8), and the rows of a results root are those whose path lies in a
//! byte range ([`below_bounds`]), which `bytea` and `BLOB` keys compare
//! bytewise.

use crate::discover::{Listing, Listings};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The bytes of the paths directly or further below `root` lie in
/// `[low, high)`: `root` and a slash, and the same ending in the byte
/// after the slash.
pub(crate) fn below_bounds(root: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut low = root.as_os_str().as_bytes().to_vec();
    if low.last() != Some(&b'/') {
        low.push(b'/');
    }
    let mut high = low.clone();
    *high.last_mut().expect("ends with a slash") = b'/' + 1;
    (low, high)
}

/// A listing as stored: path, stamp, names.
pub(crate) fn row(path: &Path, listing: &Listing) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        path.as_os_str().as_bytes().to_vec(),
        listing.stamp_bytes(),
        listing.names_bytes(),
    )
}

/// Adds a stored row to `out` (one not written by [`row`] is left out:
/// its directory is listed again).
pub(crate) fn add(out: &mut Listings, path: &[u8], stamp: &[u8], names: &[u8]) {
    if let Some(l) = Listing::from_bytes(stamp, names) {
        out.insert(Path::new(OsStr::from_bytes(path)).to_path_buf(), l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_hold_what_is_below_a_root_and_nothing_else() {
        let (low, high) = below_bounds(Path::new("/r/a"));
        let inside = |p: &str| low.as_slice() <= p.as_bytes() && p.as_bytes() < high.as_slice();
        assert!(inside("/r/a/x"));
        assert!(inside("/r/a/x/y"));
        assert!(inside("/r/a/\u{ff}"));
        assert!(!inside("/r/a"));
        assert!(!inside("/r/ab/x"));
        assert!(!inside("/r/a-b/x"));
        assert!(!inside("/r/a0"));
        let (low, high) = below_bounds(Path::new("/"));
        assert_eq!((low.as_slice(), high.as_slice()), (&b"/"[..], &b"0"[..]));
    }
}
