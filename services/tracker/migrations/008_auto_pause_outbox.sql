-- The pauses the tracker asks for when a run fails too much, recorded before pause_broadcast
-- is published and marked once the broker acknowledged it: after a broker failure the
-- redelivered deliveries are copies the failure window no longer counts, so the tracker
-- republishes what is recorded here, with the same request id (one per run and stretch
-- between resumes), which targeting applies once.
CREATE TABLE tracker.auto_pauses (
    run_id       uuid        NOT NULL,
    resumes      integer     NOT NULL,
    broadcast_id uuid        NOT NULL,
    tenant_id    text        NOT NULL,
    detail       text        NOT NULL,
    asked_at     timestamptz NOT NULL DEFAULT now(),
    published    boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, resumes)
);
CREATE INDEX auto_pauses_unpublished ON tracker.auto_pauses (asked_at) WHERE NOT published;
