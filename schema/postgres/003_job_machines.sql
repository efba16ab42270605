-- What each job says about its machine, so that a tko_machines row carries
-- the values of the newest job on that machine whatever order jobs were
-- loaded in: machine_group of the job with the greatest `newest`, owner of
-- the newest job that names one. `newest` orders jobs by finished, started,
-- then queued time (a missing time is oldest; each time '0', or '1' and the
-- epoch + 2^62 in 20 digits), then tag; plain byte order (COLLATE "C").
-- Jobs loaded before this table existed take their machine's current
-- values, so those rows do not change until a newer job is loaded.
CREATE TABLE tko_job_machines (
    job_idx       integer PRIMARY KEY,
    machine_idx   integer NOT NULL,
    newest        text COLLATE "C" NOT NULL,
    machine_group text,
    owner         text
);

INSERT INTO tko_job_machines (job_idx, machine_idx, newest, machine_group, owner)
SELECT j.job_idx, j.machine_idx,
    CASE WHEN j.finished_time IS NULL THEN '0' ELSE '1' || lpad(
        (extract(epoch FROM j.finished_time)::bigint + 4611686018427387904)::text, 20, '0') END
    || CASE WHEN j.started_time IS NULL THEN '0' ELSE '1' || lpad(
        (extract(epoch FROM j.started_time)::bigint + 4611686018427387904)::text, 20, '0') END
    || CASE WHEN j.queued_time IS NULL THEN '0' ELSE '1' || lpad(
        (extract(epoch FROM j.queued_time)::bigint + 4611686018427387904)::text, 20, '0') END
    || COALESCE(j.tag, ''),
    m.machine_group, m.owner
FROM tko_jobs j JOIN tko_machines m ON m.machine_idx = j.machine_idx;

CREATE INDEX tko_job_machines_newest ON tko_job_machines (machine_idx, newest);
CREATE INDEX tko_job_machines_owner ON tko_job_machines (machine_idx, newest)
    WHERE owner IS NOT NULL;
