-- Dashboards and operators read the versioned views as broadcast_reader, the read-only role
-- the administrator creates with the services' roles (deploy/postgres/roles.py). A migration
-- that creates a view grants it as well (tests/unit/test_database_roles.py checks).
GRANT SELECT ON targeting.broadcasts_v1, targeting.runs_v1, targeting.contract_versions_v1
    TO broadcast_reader;
