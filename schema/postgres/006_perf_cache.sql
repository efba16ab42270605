-- tko's own: `tko compare`'s cache of perf moments per kernel base, test,
-- subdir and perf key: the count and the exact sums of the finite values
-- and of their squares (each sum a list of non-overlapping doubles as
-- text, src/query/moments.rs). Built by the first compare that needs a
-- kernel base (src/query/perfcache.rs, under a SHARE lock on tko_tests),
-- never by a load. A base's rows are valid while its row in
-- tko_perf_cache_kernels exists; the triggers below delete both in the
-- transaction of any statement that inserts, deletes or updates tests
-- (every load, reload, delete, prune and live update writes tko_tests
-- with the job's perf rows), so a stale answer cannot be read. They cost
-- one probe of an empty table while no cache exists. The TKO tables and
-- views are unchanged.
CREATE TABLE tko_perf_cache_kernels (
    base       text PRIMARY KEY,
    built_time timestamp NOT NULL
);

CREATE TABLE tko_perf_cache (
    base      text NOT NULL,
    test      text,
    subdir    text,
    attribute text NOT NULL,
    n         bigint NOT NULL,
    sum       text NOT NULL,
    sumsq     text NOT NULL
);

CREATE INDEX tko_perf_cache_base ON tko_perf_cache (base);

-- Forgets the bases of the tests a statement inserted or deleted (the
-- transition table `changed_tests`).
CREATE FUNCTION tko_perf_cache_forget() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tko_perf_cache_kernels) THEN
        DELETE FROM tko_perf_cache_kernels WHERE base IN (
            SELECT k.base FROM changed_tests c
            JOIN tko_kernels k ON k.kernel_idx = c.kernel_idx);
        DELETE FROM tko_perf_cache WHERE base IN (
            SELECT k.base FROM changed_tests c
            JOIN tko_kernels k ON k.kernel_idx = c.kernel_idx);
    END IF;
    RETURN NULL;
END $$;

-- Forgets every base (an UPDATE of tests, which tko never runs, or a
-- TRUNCATE).
CREATE FUNCTION tko_perf_cache_forget_all() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tko_perf_cache_kernels;
    DELETE FROM tko_perf_cache;
    RETURN NULL;
END $$;

CREATE TRIGGER tko_perf_cache_insert AFTER INSERT ON tko_tests
    REFERENCING NEW TABLE AS changed_tests
    FOR EACH STATEMENT EXECUTE FUNCTION tko_perf_cache_forget();

CREATE TRIGGER tko_perf_cache_delete AFTER DELETE ON tko_tests
    REFERENCING OLD TABLE AS changed_tests
    FOR EACH STATEMENT EXECUTE FUNCTION tko_perf_cache_forget();

CREATE TRIGGER tko_perf_cache_update AFTER UPDATE ON tko_tests
    FOR EACH STATEMENT EXECUTE FUNCTION tko_perf_cache_forget_all();

CREATE TRIGGER tko_perf_cache_truncate AFTER TRUNCATE ON tko_tests
    FOR EACH STATEMENT EXECUTE FUNCTION tko_perf_cache_forget_all();
