-- Backfill's cheap change check: per job tag, a signature of the job
-- directory's metadata (sizes, mtimes, inodes of the files a job's parse
-- starts from) and the content fingerprint it was taken with. A job whose
-- signature is unchanged and whose ledger row says that fingerprint was
-- loaded is skipped without reading its files.
CREATE TABLE tko_scan_state (
    tag          text PRIMARY KEY,
    signature    text NOT NULL,
    fingerprint  text NOT NULL
);
