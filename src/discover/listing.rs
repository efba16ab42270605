//! What a top-level directory of a results root held when a backfill last
//! listed it, so that an unchanged re-run need not list it again (listing
//! each top-level directory was a third of a re-run's time). A directory's
//! entries cannot come, go or be renamed without its mtime and ctime
//! changing, so while its [`DirStamp`] (device, inode, mtime, ctime) is
//! the one recorded, its sub-directories are the ones recorded; what is
//! inside them is still looked at every time. A listing is recorded only
//! once its directory has been still for [`SETTLED`]: an entry added in
//! the clock tick in which the stamp was taken leaves the stamp as it was.
//! The warehouse keeps listings as bytes (`tko_scan_listing`, see
//! [`Listing::stamp_bytes`] and [`Listing::names_bytes`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Device, inode, mtime (seconds, nanoseconds) and ctime (seconds,
/// nanoseconds) of a directory.
pub type DirStamp = [u64; 6];

/// How long a directory must have been still (mtime and ctime that far in
/// the past) before its listing is recorded.
pub const SETTLED: Duration = Duration::from_secs(2);

/// A top-level directory as it was listed: its stamp then, and the names
/// of its sub-directories (not symlinks), sorted. Recorded only for a
/// directory that is not itself a job directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The directory's stamp, taken before it was listed.
    pub stamp: DirStamp,
    /// Its sub-directories' names, sorted.
    pub subdirs: Vec<OsString>,
}

/// Listings by the absolute path of their directory.
pub type Listings = HashMap<PathBuf, Listing>;

/// What a warehouse holds for a round's top-level directories (see
/// `Store::listings_of`).
#[derive(Debug, Default)]
pub struct Recorded {
    /// The recorded listings of the round's directories.
    pub listings: Listings,
    /// Directories in the round's spans (`TopSpan`) with a recorded
    /// listing that are no longer there: their listings are to go.
    pub gone: Vec<PathBuf>,
}

impl Listing {
    /// The stamp as stored: six little-endian `u64`s.
    pub fn stamp_bytes(&self) -> Vec<u8> {
        self.stamp.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    /// The names as stored: each followed by a NUL (no name holds one).
    pub fn names_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for name in &self.subdirs {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        out
    }

    /// A listing read back from its stored bytes; `None` when they are not
    /// what [`Listing::stamp_bytes`] and [`Listing::names_bytes`] write
    /// (such a row is ignored: the directory is listed again).
    pub fn from_bytes(stamp: &[u8], names: &[u8]) -> Option<Listing> {
        if stamp.len() != 48 || names.last().is_some_and(|&b| b != 0) {
            return None;
        }
        let mut s = [0u64; 6];
        for (n, bytes) in s.iter_mut().zip(stamp.chunks_exact(8)) {
            *n = u64::from_le_bytes(bytes.try_into().ok()?);
        }
        let subdirs = names
            .split(|&b| b == 0)
            .take(names.iter().filter(|&&b| b == 0).count())
            .map(|n| OsString::from_vec(n.to_vec()))
            .collect();
        Some(Listing { stamp: s, subdirs })
    }
}

/// Whether a directory with `stamp` has been still for [`SETTLED`] at
/// `now` (a time in the future, from a skewed clock, is not).
pub(super) fn settled(stamp: &DirStamp, now: SystemTime) -> bool {
    let latest = Duration::new(stamp[2], 0).max(Duration::new(stamp[4], 0));
    let Ok(now) = now.duration_since(UNIX_EPOCH) else {
        return false;
    };
    // Whole seconds, rounded up: a stamp within the second counts as later.
    now.checked_sub(latest + Duration::from_secs(1))
        .is_some_and(|still| still >= SETTLED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_survives_its_bytes() {
        let l = Listing {
            stamp: [1, 2, 3, 4, 5, u64::MAX],
            subdirs: vec![
                "a".into(),
                OsString::from_vec(vec![0xff, b'x']),
                "host1".into(),
            ],
        };
        assert_eq!(
            Listing::from_bytes(&l.stamp_bytes(), &l.names_bytes()),
            Some(l)
        );
        let empty = Listing {
            stamp: [0; 6],
            subdirs: Vec::new(),
        };
        assert_eq!(
            Listing::from_bytes(&empty.stamp_bytes(), &empty.names_bytes()),
            Some(empty)
        );
        // Bytes not written by a listing are refused, not misread.
        assert_eq!(Listing::from_bytes(&[0; 47], b""), None);
        assert_eq!(Listing::from_bytes(&[0; 48], b"a\0b"), None);
    }

    #[test]
    fn only_a_still_directory_is_settled() {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let stamp = |m: u64, c: u64| [0, 0, m, 0, c, 0];
        assert!(settled(&stamp(100, 100), at(104)));
        assert!(!settled(&stamp(100, 100), at(102)));
        // The later of mtime and ctime counts.
        assert!(!settled(&stamp(100, 103), at(104)));
        assert!(!settled(&stamp(103, 100), at(104)));
        // A stamp in the future (a skewed clock) is not settled.
        assert!(!settled(&stamp(200, 200), at(104)));
    }
}
