-- Dashboards and operators read the versioned views as broadcast_reader, the read-only role
-- the administrator creates with the services' roles (deploy/postgres/roles.py). A migration
-- that creates a view grants it as well (tests/unit/test_database_roles.py checks).
GRANT SELECT ON tracker.run_counters_v1, tracker.messages_v1, tracker.actions_v1
    TO broadcast_reader;
-- Grafana's per-broadcast dashboard (deploy/grafana/dashboards/broadcast.json) reads columns
-- no view has yet (a run's name, a message's waiting_for, who resolved an action): the
-- tracker's read model, and only these tables of it, until the dashboard reads views.
GRANT SELECT ON tracker.runs, tracker.messages, tracker.actions TO broadcast_reader;
