-- The schema exists already where an administrator provisioned the database
-- (deploy/postgres/roles.py): then this service's role owns it but may not create schemas, and
-- PostgreSQL checks that right even for CREATE SCHEMA IF NOT EXISTS.
DO $$ BEGIN
    IF to_regnamespace('tracker') IS NULL THEN CREATE SCHEMA tracker; END IF;
END $$;

-- Per-run counters, derived from tracker.messages in the same transactions. A run row may be
-- created by its first delivery, before its run.started event arrives (different topics).
CREATE TABLE tracker.runs (
    run_id               uuid        PRIMARY KEY,
    broadcast_id         uuid        NOT NULL,
    tenant_id            text        NOT NULL,
    requested_by         text,
    name                 text,
    contracts_targeted   integer     NOT NULL DEFAULT 0,
    messages_targeted    integer,
    delivered            integer     NOT NULL DEFAULT 0,
    failed               integer     NOT NULL DEFAULT 0,
    state                text        NOT NULL DEFAULT 'running'
                                     CHECK (state IN ('running', 'completed')),
    outcome              text,
    completion_published boolean     NOT NULL DEFAULT false,
    started_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz
);
CREATE INDEX runs_unpublished ON tracker.runs (state) WHERE NOT completion_published;

-- One row per message, keyed by the recipient's stable id: a duplicate event changes nothing.
CREATE TABLE tracker.messages (
    recipient_id uuid        PRIMARY KEY,
    run_id       uuid        NOT NULL,
    tenant_id    text        NOT NULL,
    contract_id  text        NOT NULL,
    channel      text        NOT NULL,
    address      text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('delivered', 'failed')),
    reason       text,
    detail       text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_run ON tracker.messages (run_id, state);
CREATE INDEX messages_contract ON tracker.messages (tenant_id, contract_id);

-- A manual follow-up action for every message that failed for good.
CREATE TABLE tracker.actions (
    action_id    bigserial   PRIMARY KEY,
    recipient_id uuid        NOT NULL UNIQUE REFERENCES tracker.messages,
    run_id       uuid        NOT NULL,
    tenant_id    text        NOT NULL,
    state        text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'sent', 'ignored')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX actions_tenant ON tracker.actions (tenant_id, state);
