-- The ledger's states (docs/ARCHITECTURE.md): claimed -> delivered | failed | unknown, or
-- scheduled (waiting for a retry, the tenant's send window or a provider that asked us to
-- slow down) -> claimed again when due; cancelled when its broadcast was cancelled first.
ALTER TABLE dispatcher.deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE dispatcher.deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('claimed', 'delivered', 'failed', 'scheduled', 'unknown', 'cancelled'));
ALTER TABLE dispatcher.deliveries
    -- A claim not recorded by then was taken by a dispatcher that died: its outcome is unknown.
    ADD COLUMN lease_until  timestamptz,
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN due_at       timestamptz,
    ADD COLUMN waiting_for  text CHECK (waiting_for IN ('retry', 'send_window', 'throttled')),
    -- The identity of the message, to report on it without its payload.
    ADD COLUMN broadcast_id uuid,
    ADD COLUMN contract_id  text,
    ADD COLUMN address      text,
    -- The whole message while it waits (scheduled), so any dispatcher can send it when due.
    ADD COLUMN payload      jsonb,
    -- False between recording an outcome reached outside a Kafka handler (the sweeper) and
    -- publishing it: a crash in between is repaired by publishing it again.
    ADD COLUMN announced    boolean NOT NULL DEFAULT true;
CREATE INDEX deliveries_due ON dispatcher.deliveries (due_at) WHERE state = 'scheduled';
CREATE INDEX deliveries_leases ON dispatcher.deliveries (lease_until) WHERE state = 'claimed';
CREATE INDEX deliveries_unannounced ON dispatcher.deliveries (finished_at) WHERE NOT announced;

-- Runs whose broadcast was cancelled (from broadcast.runs).
CREATE TABLE dispatcher.cancelled_runs (
    run_id       uuid        PRIMARY KEY,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);

-- Each tenant's settings as last published on tenant.settings.
CREATE TABLE dispatcher.tenants (
    tenant_id  text        PRIMARY KEY,
    settings   jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Token buckets shared by every dispatcher instance: `tenant:<id>:<channel>` and
-- `relay:<name>`. `per_second` NULL: no limit, but a provider's pause still applies. Tokens
-- may go negative: that debt is the wait of the last reservation.
CREATE TABLE dispatcher.rate_limits (
    key          text             PRIMARY KEY,
    per_second   double precision CHECK (per_second > 0),
    tokens       double precision NOT NULL DEFAULT 0,
    updated_at   timestamptz      NOT NULL DEFAULT clock_timestamp(),
    paused_until timestamptz
);
