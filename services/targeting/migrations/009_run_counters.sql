-- The tracker's counters of each run, as its broadcast.progressed and broadcast.completed
-- events announce them: a read model, so get_broadcast and list_broadcasts answer from
-- targeting alone (no service reads another's tables). `counters` is the events' `Counters`
-- object whole, so a field the tracker adds flows through without a migration.
-- `completed`, `finals` (delivered + failed + cancelled) and `occurred_at` order the
-- announcements: only a newer one replaces the row (services/targeting/counters.py).
CREATE TABLE targeting.run_counters (
    run_id       uuid        PRIMARY KEY,
    tenant_id    text        NOT NULL,
    broadcast_id uuid        NOT NULL,
    counters     jsonb       NOT NULL,
    completed    boolean     NOT NULL,
    outcome      text,
    finals       bigint      NOT NULL,
    occurred_at  timestamptz NOT NULL
);
