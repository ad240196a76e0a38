-- What is learnt of a message after its hand-over (broadcast.deliveries: delivery.bounced,
-- delivery.complained, delivery.confirmed: `reported_at` is when an SMS reached the handset),
-- one row per message and kind: a report received
-- twice (a redelivered batch, a DSN and a provider's webhook for the same bounce) is one row,
-- so it is counted and applied once. The message row may not exist yet (a replay may bring
-- the report before the message's delivery.delivered): the report waits here, and
-- record_deliveries turns that delivery into a failure.
CREATE TABLE tracker.reports (
    recipient_id uuid        NOT NULL,
    kind         text        NOT NULL
                             CHECK (kind IN ('hard_bounce', 'soft_bounce', 'complaint',
                                             'confirmed')),
    run_id       uuid        NOT NULL,
    tenant_id    text        NOT NULL,
    channel      text        NOT NULL,
    source       text        NOT NULL,
    -- RFC 3463 status and diagnostic for a bounce, the feedback type for a complaint.
    detail       text        NOT NULL DEFAULT '',
    reported_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (recipient_id, kind)
);
-- The per-tenant rates read the reports of a window.
CREATE INDEX reports_tenant_time ON tracker.reports (tenant_id, recorded_at);

-- Each run's reports, counted in the same transaction as the rows above (each message once).
ALTER TABLE tracker.runs
    ADD COLUMN hard_bounced integer NOT NULL DEFAULT 0,
    ADD COLUMN soft_bounced integer NOT NULL DEFAULT 0,
    ADD COLUMN complained   integer NOT NULL DEFAULT 0,
    ADD COLUMN confirmed    integer NOT NULL DEFAULT 0;

-- Columns added at the end keep the view compatible (docs/ARCHITECTURE.md, "Versioned views").
CREATE OR REPLACE VIEW tracker.run_counters_v1 AS
SELECT r.run_id, r.broadcast_id, r.tenant_id, r.purpose, r.state, r.outcome,
       r.contracts_targeted, r.messages_targeted, r.delivered, r.failed, r.cancelled,
       r.started_at, r.completed_at, c.contracts_reached, c.contracts_not_reached,
       r.hard_bounced, r.soft_bounced, r.complained, r.confirmed
FROM tracker.runs r
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE reached) AS contracts_reached,
           count(*) FILTER (WHERE settled AND NOT reached) AS contracts_not_reached
    FROM (SELECT bool_or(m.state = 'delivered') AS reached,
                 bool_and(m.state <> 'waiting') AS settled
          FROM tracker.messages m WHERE m.run_id = r.run_id
          GROUP BY m.contract_id) per_contract
) c;

-- Each tenant's bounce and complaint rates per day, for Grafana's SQL panels (Prometheus
-- keeps no tenant label: services/tracker/metrics.py). `accepted` is what the providers took:
-- the messages delivered, plus those a hard bounce moved to failed. Broadcast runs only.
CREATE VIEW tracker.tenant_report_rates_v1 AS
SELECT r.tenant_id, date_trunc('day', r.started_at) AS day,
       sum(r.delivered + r.hard_bounced)::bigint AS accepted,
       sum(r.hard_bounced)::bigint AS hard_bounced,
       sum(r.soft_bounced)::bigint AS soft_bounced,
       sum(r.complained)::bigint AS complained,
       sum(r.hard_bounced)::float8 / nullif(sum(r.delivered + r.hard_bounced), 0)
           AS hard_bounce_rate,
       sum(r.complained)::float8 / nullif(sum(r.delivered + r.hard_bounced), 0)
           AS complaint_rate
FROM tracker.runs r
WHERE r.purpose = 'broadcast'
GROUP BY 1, 2;

GRANT SELECT ON tracker.tenant_report_rates_v1 TO broadcast_reader;
