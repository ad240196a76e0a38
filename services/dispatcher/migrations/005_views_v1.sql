-- Views for readers outside the dispatcher (the demo, the bench, end-to-end tests): they read
-- these, never the tables. A view's columns never change within a version; a new or changed
-- column is a new view (`_v2`). See docs/ARCHITECTURE.md, "Versioned views".

-- The tenant settings the dispatcher applies (a configure_tenant has taken effect once its
-- settings show here).
CREATE VIEW dispatcher.tenant_settings_v1 AS
SELECT tenant_id, settings, updated_at
FROM dispatcher.tenants;
