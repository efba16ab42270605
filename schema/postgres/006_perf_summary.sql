-- tko's own: per kernel, test, subdir and perf key, the count and the
-- exact sums of the finite perf values and of their squares (each sum a
-- list of non-overlapping doubles as text, src/query/moments.rs), so
-- `tko compare` of two kernels reads a few rows per key instead of every
-- perf row. Maintained in each job's load, reload, delete and prune
-- transaction (src/store/summary.rs); filled from the detail rows when
-- this migration runs. The TKO tables and views are unchanged.
CREATE TABLE tko_perf_summary (
    id         bigserial PRIMARY KEY,
    kernel_idx integer NOT NULL,
    test       text,
    subdir     text,
    attribute  text NOT NULL,
    n          bigint NOT NULL,
    sum        text NOT NULL,
    sumsq      text NOT NULL
);

CREATE INDEX tko_perf_summary_key ON tko_perf_summary (kernel_idx, test, subdir, attribute);
