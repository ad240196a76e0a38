-- The schema exists already where an administrator provisioned the database
-- (deploy/postgres/roles.py): then this service's role owns it but may not create schemas, and
-- PostgreSQL checks that right even for CREATE SCHEMA IF NOT EXISTS.
DO $$ BEGIN
    IF to_regnamespace('dispatcher') IS NULL THEN CREATE SCHEMA dispatcher; END IF;
END $$;

-- The delivery ledger: a message is claimed (committed) before its provider is called, so a
-- message that arrives again, from a replay or another instance, is never handed over twice.
CREATE TABLE dispatcher.deliveries (
    recipient_id     uuid        PRIMARY KEY,
    run_id           uuid        NOT NULL,
    tenant_id        text        NOT NULL,
    channel          text        NOT NULL,
    state            text        NOT NULL CHECK (state IN ('claimed', 'delivered', 'failed')),
    reason           text,
    provider_code    integer,
    provider_message text,
    claimed_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX deliveries_run ON dispatcher.deliveries (run_id);
