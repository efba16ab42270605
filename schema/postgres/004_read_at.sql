-- When the read of the stored version began (microseconds since the Unix
-- epoch, taken under the job's .parse.lock). Of two loaders racing on one
-- job, the later read wins, not the later commit: a load whose read began
-- before this one is skipped (src/store/ledger.rs). NULL: unknown (rows
-- loaded before this column existed, or by a library caller without it).
ALTER TABLE tko_ingest_ledger ADD COLUMN read_at bigint;
