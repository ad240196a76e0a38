-- Contracts reached (one message delivered) and not reached (every message heard of final,
-- none delivered; a contract with no address has one `no_contact` failure), counted from the
-- messages themselves: a duplicated or reordered outcome changes no row, so it changes no
-- count. The index lets each run's count read the index alone.
CREATE INDEX messages_run_contract ON tracker.messages (run_id, contract_id, state);

-- Columns added at the end of a view keep it compatible (docs/ARCHITECTURE.md, "Versioned
-- views"): readers that name their columns see no change.
CREATE OR REPLACE VIEW tracker.run_counters_v1 AS
SELECT r.run_id, r.broadcast_id, r.tenant_id, r.purpose, r.state, r.outcome,
       r.contracts_targeted, r.messages_targeted, r.delivered, r.failed, r.cancelled,
       r.started_at, r.completed_at, c.contracts_reached, c.contracts_not_reached
FROM tracker.runs r
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE reached) AS contracts_reached,
           count(*) FILTER (WHERE settled AND NOT reached) AS contracts_not_reached
    FROM (SELECT bool_or(m.state = 'delivered') AS reached,
                 bool_and(m.state <> 'waiting') AS settled
          FROM tracker.messages m WHERE m.run_id = r.run_id
          GROUP BY m.contract_id) per_contract
) c;

-- A resend to the failures of that run: a `no_contact` action of that run becomes 'resent' once
-- the resend has a message for its contract (it had an address by then), not at the start.
ALTER TABLE tracker.runs ADD COLUMN resends_failures_of uuid;
