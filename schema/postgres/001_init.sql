-- tko schema 001 (PostgreSQL): TKO's tables, legacy lineage L
-- (schema_068) with the deviations listed in SCHEMA.md. Applied in one
-- transaction by store::schema; recorded in tko_schema_version.
--
-- Index policy (LIMITS.md): only the keys the loader's natural-key lookups,
-- reparse and the views need. The job-tree tables (tests, attributes,
-- iterations, keyvals, diagnostics) carry no foreign keys: the loader writes
-- each job inside one transaction, and Citus cannot enforce FKs between
-- distributed tables that are not co-located on the same key anyway.

CREATE TABLE tko_schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

CREATE TABLE tko_status (
    status_idx serial PRIMARY KEY,
    word       varchar(10) UNIQUE
);
INSERT INTO tko_status (status_idx, word) VALUES
    (1, 'ABORT'), (2, 'ALERT'), (3, 'ERROR'), (4, 'FAIL'), (5, 'GOOD'),
    (6, 'NOSTATUS'), (7, 'RUNNING'), (8, 'TEST_NA'), (9, 'WARN'),
    (10, 'BUG');  -- not in TKO: tko's parser accepts BUG
SELECT setval(pg_get_serial_sequence('tko_status', 'status_idx'), 10);

CREATE TABLE tko_machines (
    machine_idx   serial PRIMARY KEY,
    hostname      text UNIQUE,
    machine_group text,
    owner         text
);

CREATE TABLE tko_kernels (
    kernel_idx  serial PRIMARY KEY,
    kernel_hash text UNIQUE,
    base        text,
    printable   text
);

CREATE TABLE tko_patches (
    kernel_idx integer NOT NULL REFERENCES tko_kernels (kernel_idx) ON DELETE CASCADE,
    name       text,
    url        text,
    hash       text
);
CREATE INDEX tko_patches_kernel_idx ON tko_patches (kernel_idx);

CREATE TABLE tko_jobs (
    job_idx       serial PRIMARY KEY,
    tag           text UNIQUE,
    label         text,
    username      text,
    machine_idx   integer NOT NULL REFERENCES tko_machines (machine_idx),
    queued_time   timestamp without time zone,
    started_time  timestamp without time zone,
    finished_time timestamp without time zone,
    afe_job_id    bigint
);

CREATE TABLE tko_job_keyvals (
    id     serial,
    job_id integer NOT NULL,
    key    text NOT NULL,
    value  text
);
CREATE INDEX tko_job_keyvals_job_id ON tko_job_keyvals (job_id);

CREATE TABLE tko_tests (
    test_idx      serial PRIMARY KEY,
    job_idx       integer NOT NULL,
    test          text,
    subdir        text,
    kernel_idx    integer NOT NULL,
    status        integer NOT NULL,
    reason        text,
    machine_idx   integer NOT NULL,
    invalid       boolean DEFAULT false,
    finished_time timestamp without time zone,
    started_time  timestamp without time zone
);
CREATE INDEX tko_tests_job_idx ON tko_tests (job_idx);

CREATE TABLE tko_test_attributes (
    id           serial,
    job_idx      integer NOT NULL,
    test_idx     integer NOT NULL,
    attribute    text,
    value        text,
    user_created boolean NOT NULL DEFAULT false
);
CREATE INDEX tko_test_attributes_test_idx ON tko_test_attributes (test_idx);

CREATE TABLE tko_iteration_attributes (
    job_idx   integer NOT NULL,
    test_idx  integer NOT NULL,
    iteration integer,
    attribute text,
    value     text
);
CREATE INDEX tko_iteration_attributes_test_idx ON tko_iteration_attributes (test_idx);

CREATE TABLE tko_iteration_result (
    job_idx   integer NOT NULL,
    test_idx  integer NOT NULL,
    iteration integer,
    attribute text,
    value     double precision
);
CREATE INDEX tko_iteration_result_test_idx ON tko_iteration_result (test_idx);

CREATE TABLE tko_test_labels (
    id          serial PRIMARY KEY,
    name        varchar(80) NOT NULL UNIQUE,
    description text NOT NULL DEFAULT ''
);
INSERT INTO tko_test_labels (id, name, description) VALUES (1, 'invalidated', '');
SELECT setval(pg_get_serial_sequence('tko_test_labels', 'id'), 1);

CREATE TABLE tko_test_labels_tests (
    id           serial,
    job_idx      integer NOT NULL,
    testlabel_id integer NOT NULL,
    test_id      integer NOT NULL,
    UNIQUE (testlabel_id, test_id)
);
CREATE INDEX tko_test_labels_tests_test_id ON tko_test_labels_tests (test_id);

CREATE TABLE tko_ingest_ledger (
    tag                  text PRIMARY KEY,
    job_idx              integer,
    source_path          text NOT NULL,
    fingerprint          text NOT NULL,
    parser_version       text NOT NULL,
    loaded_at            timestamp without time zone NOT NULL,
    outcome              text NOT NULL,
    error                text,
    tests                integer NOT NULL DEFAULT 0,
    test_attributes      integer NOT NULL DEFAULT 0,
    iteration_attributes integer NOT NULL DEFAULT 0,
    iteration_results    integer NOT NULL DEFAULT 0,
    job_keyvals          integer NOT NULL DEFAULT 0,
    diagnostics          integer NOT NULL DEFAULT 0
);

CREATE TABLE tko_diagnostics (
    job_idx  integer NOT NULL,
    file     text,
    line     integer,
    severity text NOT NULL,
    message  text
);
CREATE INDEX tko_diagnostics_job_idx ON tko_diagnostics (job_idx);

CREATE VIEW tko_test_view AS SELECT
    t.test_idx, t.job_idx, t.test, t.subdir, t.kernel_idx, t.status, t.reason, t.machine_idx,
    t.started_time AS test_started_time, t.finished_time AS test_finished_time,
    j.tag AS job_tag, j.label AS job_label, j.username AS job_username,
    j.queued_time AS job_queued_time, j.started_time AS job_started_time,
    j.finished_time AS job_finished_time,
    m.hostname AS machine_hostname, m.machine_group, m.owner AS machine_owner,
    k.kernel_hash, k.base AS kernel_base, k.printable AS kernel_printable, s.word AS status_word
FROM tko_tests t
    JOIN tko_jobs j ON j.job_idx = t.job_idx
    JOIN tko_machines m ON m.machine_idx = j.machine_idx
    JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx
    JOIN tko_status s ON s.status_idx = t.status;

CREATE VIEW tko_perf_view AS SELECT
    t.test_idx, t.job_idx, t.test, t.subdir, t.kernel_idx, t.status, t.reason, t.machine_idx,
    t.started_time AS test_started_time, t.finished_time AS test_finished_time,
    j.tag AS job_tag, j.label AS job_label, j.username AS job_username,
    j.queued_time AS job_queued_time, j.started_time AS job_started_time,
    j.finished_time AS job_finished_time,
    m.hostname AS machine_hostname, m.machine_group, m.owner AS machine_owner,
    k.kernel_hash, k.base AS kernel_base, k.printable AS kernel_printable, s.word AS status_word,
    r.iteration, r.attribute AS iteration_key, r.value AS iteration_value
FROM tko_tests t
    JOIN tko_jobs j ON j.job_idx = t.job_idx
    JOIN tko_machines m ON m.machine_idx = j.machine_idx
    JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx
    JOIN tko_status s ON s.status_idx = t.status
    JOIN tko_iteration_result r ON r.test_idx = t.test_idx;

CREATE VIEW tko_test_view_2 AS SELECT
    t.test_idx, t.job_idx, t.test AS test_name, t.subdir, t.kernel_idx, t.status AS status_idx,
    t.reason, t.machine_idx, t.started_time AS test_started_time,
    t.finished_time AS test_finished_time,
    j.tag AS job_tag, j.label AS job_name, j.username AS job_owner,
    j.queued_time AS job_queued_time, j.started_time AS job_started_time,
    j.finished_time AS job_finished_time, j.afe_job_id AS afe_job_id,
    m.hostname AS hostname, m.machine_group AS platform, m.owner AS machine_owner,
    k.kernel_hash, k.base AS kernel_base, k.printable AS kernel, s.word AS status
FROM tko_tests t
    JOIN tko_jobs j ON j.job_idx = t.job_idx
    JOIN tko_machines m ON m.machine_idx = j.machine_idx
    JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx
    JOIN tko_status s ON s.status_idx = t.status;

CREATE VIEW tko_perf_view_2 AS SELECT
    t.test_idx, t.job_idx, t.test AS test_name, t.subdir, t.kernel_idx, t.status AS status_idx,
    t.reason, t.machine_idx, t.started_time AS test_started_time,
    t.finished_time AS test_finished_time,
    j.tag AS job_tag, j.label AS job_name, j.username AS job_owner,
    j.queued_time AS job_queued_time, j.started_time AS job_started_time,
    j.finished_time AS job_finished_time,
    m.hostname AS hostname, m.machine_group AS platform, m.owner AS machine_owner,
    k.kernel_hash, k.base AS kernel_base, k.printable AS kernel, s.word AS status,
    r.iteration, r.attribute AS iteration_key, r.value AS iteration_value
FROM tko_tests t
    LEFT OUTER JOIN tko_jobs j ON j.job_idx = t.job_idx
    LEFT OUTER JOIN tko_machines m ON m.machine_idx = j.machine_idx
    LEFT OUTER JOIN tko_kernels k ON k.kernel_idx = t.kernel_idx
    LEFT OUTER JOIN tko_status s ON s.status_idx = t.status
    LEFT OUTER JOIN tko_iteration_result r ON r.test_idx = t.test_idx;
