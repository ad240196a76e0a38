-- Views for readers outside the dispatcher (the demo, the bench, end-to-end tests): they read
-- these, never the tables. A view's columns never change within a version; a new or changed
-- column is a new view (`_v2`). See docs/ARCHITECTURE.md, "Versioned views".

-- The tenant settings the dispatcher applies (a configure_tenant has taken effect once its
-- settings show here).
CREATE VIEW dispatcher.tenant_settings_v1 AS
SELECT tenant_id, settings, updated_at
FROM dispatcher.tenants;

-- One row per message the dispatcher took on, with its outcome so far: 'claimed' (being
-- sent), 'scheduled' (waiting for `due_at`), 'delivered', 'failed', 'unknown' or 'cancelled';
-- `finished_at` once it has a final one. `provider_*` is the relay's or gateway's last answer.
CREATE VIEW dispatcher.deliveries_v1 AS
SELECT recipient_id, run_id, broadcast_id, tenant_id, contract_id, channel, address, state,
       reason, attempts, provider_code, provider_message, claimed_at, due_at, finished_at
FROM dispatcher.deliveries;
