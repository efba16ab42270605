-- tko's own: the last information message (an INFO status line nested in
-- the test's group) of each test, with its time. Replaced with the job's
-- tests on every load; the TKO tables and views are unchanged.
CREATE TABLE tko_test_information (
    test_idx  INTEGER PRIMARY KEY,
    job_idx   INTEGER NOT NULL,
    message   TEXT NOT NULL,
    info_time TEXT
);

CREATE INDEX tko_test_information_job ON tko_test_information (job_idx);
