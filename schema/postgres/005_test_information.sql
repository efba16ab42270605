-- tko's own: the last information message (an INFO status line nested in
-- the test's group) of each test, with its time. Replaced with the job's
-- tests on every load; the TKO tables and views are unchanged.
CREATE TABLE tko_test_information (
    test_idx  integer PRIMARY KEY,
    job_idx   integer NOT NULL,
    message   text NOT NULL,
    info_time timestamp
);

CREATE INDEX tko_test_information_job ON tko_test_information (job_idx);
