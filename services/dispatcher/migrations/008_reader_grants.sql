-- Dashboards and operators read the versioned views as broadcast_reader, the read-only role
-- the administrator creates with the services' roles (deploy/postgres/roles.py). A migration
-- that creates a view grants it as well (tests/unit/test_database_roles.py checks).
GRANT SELECT ON dispatcher.tenant_settings_v1, dispatcher.deliveries_v1 TO broadcast_reader;
