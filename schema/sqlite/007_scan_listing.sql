-- Backfill's cheap listing check (src/discover/listing.rs): per top-level
-- directory of a results root that is not itself a job directory, its
-- absolute path, its stamp when it was last listed (device, inode, mtime
-- and ctime: six little-endian 64-bit integers) and the names of its
-- sub-directories then (each followed by a NUL byte). While the directory
-- has that stamp, no entry of it came, went or was renamed, so the next
-- backfill takes its sub-directories from here instead of listing it
-- (what is inside them is looked at every time). Bytes, not text: paths
-- and names need not be UTF-8. Only written by backfills; a row of a
-- directory that is gone is never used again.
CREATE TABLE tko_scan_listing (
    path     BLOB PRIMARY KEY,
    stamp    BLOB NOT NULL,
    subdirs  BLOB NOT NULL
);
