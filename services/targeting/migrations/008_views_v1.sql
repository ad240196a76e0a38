-- Views for readers outside targeting (the CLI, the demo, the bench, end-to-end tests): they read
-- these, never the tables, so the tables may change. A view's columns never change within a
-- version; a new or changed column is a new view (`_v2`), and the old one stays while it is read.
-- See docs/ARCHITECTURE.md, "Versioned views".

-- A broadcast's definition-free summary and its lifecycle state.
CREATE VIEW targeting.broadcasts_v1 AS
SELECT broadcast_id, tenant_id, name, state, created_at, scheduled_at, started_at, completed_at
FROM targeting.broadcasts;

-- One row per run (start or resend) of a broadcast; `state` is 'streaming' until every
-- recipient was published, then 'targeted' (at `targeted_at`).
CREATE VIEW targeting.runs_v1 AS
SELECT run_id, broadcast_id, tenant_id, run_number, state, contracts, messages, started_at,
       targeted_at, completed_at
FROM targeting.runs;

-- Which version of each contract the audience read model holds (deleted ones included, as
-- tombstones), to wait until an import or a feed has been applied.
CREATE VIEW targeting.contract_versions_v1 AS
SELECT tenant_id, contract_id, version, deleted
FROM targeting.contracts;
