-- The schema exists already where an administrator provisioned the database
-- (deploy/postgres/roles.py): then this service's role owns it but may not create schemas, and
-- PostgreSQL checks that right even for CREATE SCHEMA IF NOT EXISTS.
DO $$ BEGIN
    IF to_regnamespace('targeting') IS NULL THEN CREATE SCHEMA targeting; END IF;
END $$;

-- The audience read model, fed by audience.contracts. A deleted contract stays as a tombstone so
-- that an older upsert arriving late cannot bring it back.
CREATE TABLE targeting.contracts (
    pk              bigserial PRIMARY KEY,
    tenant_id       text        NOT NULL,
    contract_id     text        NOT NULL,
    version         bigint      NOT NULL,
    deleted         boolean     NOT NULL DEFAULT false,
    number          text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT '',
    building_type   text        NOT NULL DEFAULT '',
    zone            text        NOT NULL DEFAULT '',
    season          text        NOT NULL DEFAULT '',
    client_name     text        NOT NULL DEFAULT '',
    service_address text        NOT NULL DEFAULT '',
    language        text        NOT NULL DEFAULT 'fr',
    emails          jsonb       NOT NULL DEFAULT '[]',
    phones          jsonb       NOT NULL DEFAULT '[]',
    balance         numeric(14, 2) NOT NULL DEFAULT 0,
    amount_paid     numeric(14, 2) NOT NULL DEFAULT 0,
    attributes      jsonb       NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, contract_id)
);
-- Streaming reads one tenant's live contracts in pk order, a page at a time.
CREATE INDEX contracts_stream ON targeting.contracts (tenant_id, pk) WHERE NOT deleted;

CREATE TABLE targeting.broadcasts (
    broadcast_id uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    request_id   text        NOT NULL,
    requested_by text        NOT NULL,
    name         text        NOT NULL,
    definition   jsonb       NOT NULL,
    state        text        NOT NULL CHECK (state IN ('draft', 'started')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz
);
CREATE INDEX broadcasts_tenant ON targeting.broadcasts (tenant_id, created_at);

-- One run per start. `cursor` is the pk of the last contract whose recipients were published
-- and acknowledged: a restart resumes after it.
CREATE TABLE targeting.runs (
    run_id         uuid        PRIMARY KEY,
    broadcast_id   uuid        NOT NULL REFERENCES targeting.broadcasts,
    tenant_id      text        NOT NULL,
    run_number     integer     NOT NULL,
    request_id     text        NOT NULL,
    requested_by   text        NOT NULL,
    state          text        NOT NULL CHECK (state IN ('streaming', 'targeted')),
    announced      boolean     NOT NULL DEFAULT false,
    cursor         bigint      NOT NULL DEFAULT 0,
    contracts      integer     NOT NULL DEFAULT 0,
    messages       integer     NOT NULL DEFAULT 0,
    unreachable    integer     NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    targeted_at    timestamptz,
    UNIQUE (broadcast_id, run_number)
);
CREATE INDEX runs_streaming ON targeting.runs (state) WHERE state = 'streaming';
