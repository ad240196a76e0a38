-- The auto-pause failure window, shared by every tracker instance: each instance sees only the
-- deliveries of the partitions it owns, and an instance that dies must not take the failures
-- it saw with it. One row per run, stretch between resumes (a resume starts a fresh window)
-- and second, so a run's rows stay bounded however fast it goes; a completed run's go.
CREATE TABLE tracker.failure_window (
    run_id  uuid    NOT NULL,
    resumes integer NOT NULL,
    at_second bigint  NOT NULL,
    tried   integer NOT NULL,
    failed  integer NOT NULL,
    PRIMARY KEY (run_id, resumes, at_second)
);
