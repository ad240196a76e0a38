-- Paused runs (run.paused until run.resumed) and the tenant's auto-pause policy each run keeps
-- from its start: the tracker pauses a broadcast whose failure ratio goes over it.
ALTER TABLE tracker.runs
    ADD COLUMN paused     boolean NOT NULL DEFAULT false,
    ADD COLUMN resumes    integer NOT NULL DEFAULT 0,
    ADD COLUMN auto_pause jsonb;
