-- The schema exists already where an administrator provisioned the database
-- (deploy/postgres/roles.py): then this service's role owns it but may not create schemas, and
-- PostgreSQL checks that right even for CREATE SCHEMA IF NOT EXISTS.
DO $$ BEGIN
    IF to_regnamespace('composer') IS NULL THEN CREATE SCHEMA composer; END IF;
END $$;

-- The definition of each run, as announced by targeting: what every recipient is rendered from.
CREATE TABLE composer.runs (
    run_id      uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    definition  jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
