-- An action is resolved once: the request that resolved it tells a replay of that command
-- (answered again; its follow-up run derives from it) from another command (refused). After
-- a follow-up that failed, the action is open again and the next send is a new run.
ALTER TABLE tracker.actions ADD COLUMN resolved_request text;

-- 'resent': a resend to its run's failures sent the message again (run.started with
-- resends_failures_of closes the actions it concerns).
ALTER TABLE tracker.actions DROP CONSTRAINT actions_state_check;
ALTER TABLE tracker.actions ADD CONSTRAINT actions_state_check
    CHECK (state IN ('open', 'sending', 'sent', 'ignored', 'resent'));
CREATE INDEX actions_open_by_run ON tracker.actions (run_id) WHERE state = 'open';
