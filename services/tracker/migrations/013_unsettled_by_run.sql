-- The run's breakdown (store._breakdowns) reads only its waiting and failed messages: the
-- delivered and cancelled ones, nearly all of them, no longer cost an entry here. Reading a
-- run in full goes through messages_run_page (run_id, recipient_id) or messages_run_contract.
CREATE INDEX messages_unsettled_run ON tracker.messages (run_id, state)
    WHERE state IN ('waiting', 'failed');
DROP INDEX tracker.messages_run;
