-- What each job says about its machine, so that a tko_machines row carries
-- the values of the newest job on that machine whatever order jobs were
-- loaded in: machine_group of the job with the greatest `newest`, owner of
-- the newest job that names one. `newest` orders jobs by finished, started,
-- then queued time (a missing time is oldest; each time '0', or '1' and the
-- epoch + 2^62 in 20 digits), then tag; plain byte order (BINARY).
-- Jobs loaded before this table existed take their machine's current
-- values, so those rows do not change until a newer job is loaded.
CREATE TABLE tko_job_machines (
    job_idx       INTEGER PRIMARY KEY,
    machine_idx   INTEGER NOT NULL,
    newest        TEXT NOT NULL,
    machine_group TEXT,
    owner         TEXT
);

INSERT INTO tko_job_machines (job_idx, machine_idx, newest, machine_group, owner)
SELECT j.job_idx, j.machine_idx,
    CASE WHEN j.finished_time IS NULL THEN '0' ELSE '1' || substr('00000000000000000000'
        || (CAST(strftime('%s', j.finished_time) AS INTEGER) + 4611686018427387904), -20) END
    || CASE WHEN j.started_time IS NULL THEN '0' ELSE '1' || substr('00000000000000000000'
        || (CAST(strftime('%s', j.started_time) AS INTEGER) + 4611686018427387904), -20) END
    || CASE WHEN j.queued_time IS NULL THEN '0' ELSE '1' || substr('00000000000000000000'
        || (CAST(strftime('%s', j.queued_time) AS INTEGER) + 4611686018427387904), -20) END
    || COALESCE(j.tag, ''),
    m.machine_group, m.owner
FROM tko_jobs j JOIN tko_machines m ON m.machine_idx = j.machine_idx;

CREATE INDEX tko_job_machines_newest ON tko_job_machines (machine_idx, newest);
CREATE INDEX tko_job_machines_owner ON tko_job_machines (machine_idx, newest)
    WHERE owner IS NOT NULL;
