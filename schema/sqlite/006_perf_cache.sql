-- tko's own: `tko compare`'s cache of perf moments per kernel base, test,
-- subdir and perf key: the count and the exact sums of the finite values
-- and of their squares (each sum a list of non-overlapping doubles as
-- text, src/query/moments.rs). Built by the first compare that needs a
-- kernel base (src/query/perfcache.rs, in a BEGIN IMMEDIATE transaction),
-- never by a load. A base's rows are valid while its row in
-- tko_perf_cache_kernels exists; the triggers below delete both in the
-- transaction of any statement that inserts, deletes or updates a test of
-- that base (every load, reload, delete, prune and live update writes
-- tko_tests with the job's perf rows), so a stale answer cannot be read.
-- While no cache exists they cost one indexed probe per test row. The TKO
-- tables and views are unchanged.
CREATE TABLE tko_perf_cache_kernels (
    base       TEXT PRIMARY KEY,
    built_time TEXT NOT NULL
);

CREATE TABLE tko_perf_cache (
    base      TEXT NOT NULL,
    test      TEXT,
    subdir    TEXT,
    attribute TEXT NOT NULL,
    n         INTEGER NOT NULL,
    sum       TEXT NOT NULL,
    sumsq     TEXT NOT NULL
);

CREATE INDEX tko_perf_cache_base ON tko_perf_cache (base);

CREATE TRIGGER tko_perf_cache_insert AFTER INSERT ON tko_tests
WHEN EXISTS (SELECT 1 FROM tko_perf_cache_kernels c JOIN tko_kernels k ON k.base = c.base
             WHERE k.kernel_idx = NEW.kernel_idx)
BEGIN
    DELETE FROM tko_perf_cache_kernels
        WHERE base = (SELECT base FROM tko_kernels WHERE kernel_idx = NEW.kernel_idx);
    DELETE FROM tko_perf_cache
        WHERE base = (SELECT base FROM tko_kernels WHERE kernel_idx = NEW.kernel_idx);
END;

CREATE TRIGGER tko_perf_cache_delete AFTER DELETE ON tko_tests
WHEN EXISTS (SELECT 1 FROM tko_perf_cache_kernels c JOIN tko_kernels k ON k.base = c.base
             WHERE k.kernel_idx = OLD.kernel_idx)
BEGIN
    DELETE FROM tko_perf_cache_kernels
        WHERE base = (SELECT base FROM tko_kernels WHERE kernel_idx = OLD.kernel_idx);
    DELETE FROM tko_perf_cache
        WHERE base = (SELECT base FROM tko_kernels WHERE kernel_idx = OLD.kernel_idx);
END;

CREATE TRIGGER tko_perf_cache_update AFTER UPDATE ON tko_tests
BEGIN
    DELETE FROM tko_perf_cache_kernels;
    DELETE FROM tko_perf_cache;
END;
