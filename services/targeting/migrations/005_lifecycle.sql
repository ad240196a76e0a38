-- The lifecycle (services/targeting/lifecycle.py, docs/ARCHITECTURE.md):
-- draft -> scheduled -> running <-> paused -> completed | cancelled; resend starts a new run.
ALTER TABLE targeting.broadcasts DROP CONSTRAINT broadcasts_state_check;
UPDATE targeting.broadcasts SET state = 'running' WHERE state = 'started';
ALTER TABLE targeting.broadcasts ADD CONSTRAINT broadcasts_state_check
    CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'));
ALTER TABLE targeting.broadcasts
    ADD COLUMN paused_at    timestamptz,
    ADD COLUMN completed_at timestamptz;

ALTER TABLE targeting.runs
    -- The tenant's grace delay: nothing is targeted before, so a cancel then sends nothing.
    ADD COLUMN not_before     timestamptz,
    -- A resend to the failures of that run only.
    ADD COLUMN only_failed_of uuid REFERENCES targeting.runs,
    ADD COLUMN completed_at   timestamptz,
    ADD COLUMN outcome        text,
    -- Failed messages of the completed run, as the tracker counted them.
    ADD COLUMN failed         integer;

-- State-changing commands already applied: a replayed request is answered, not applied again
-- (a pause replayed after a resume must not pause the broadcast again).
CREATE TABLE targeting.requests (
    tenant_id    text        NOT NULL,
    request_id   text        NOT NULL,
    command      text        NOT NULL,
    broadcast_id uuid,
    run_id       uuid,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, request_id)
);

-- Messages of targeting's runs that failed for good (from broadcast.deliveries): whom
-- "resend only to the failures" sends to.
CREATE TABLE targeting.failures (
    run_id      uuid NOT NULL,
    contract_id text NOT NULL,
    channel     text NOT NULL,
    address     text NOT NULL,
    PRIMARY KEY (run_id, contract_id, channel, address)
);
