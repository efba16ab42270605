//! How both backends keep the listings of top-level directories that a
//! backfill need not list again (`discover::Listing`, table
//! `tko_scan_listing`): a row is the directory's absolute path, its stamp
//! and its sub-directories' names, all as bytes (paths need not be
//! UTF-8), looked up by path a round of directories at a time.

use crate::discover::{Listing, Listings};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
