CREATE SCHEMA IF NOT EXISTS composer;

-- The definition of each run, as announced by targeting: what every recipient is rendered from.
CREATE TABLE composer.runs (
    run_id      uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    definition  jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
