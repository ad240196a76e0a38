-- Views for readers outside the tracker (the CLI, the demo, end-to-end tests): they read these,
-- never the tables. A view's columns never change within a version; a new or changed column is
-- a new view (`_v2`). See docs/ARCHITECTURE.md, "Versioned views".

-- Each run's counters as the tracker keeps them; `purpose` is 'broadcast', 'preview' or
-- 'follow_up'; `messages_targeted` is NULL until targeting has counted the run.
CREATE VIEW tracker.run_counters_v1 AS
SELECT run_id, broadcast_id, tenant_id, purpose, state, outcome, contracts_targeted,
       messages_targeted, delivered, failed, cancelled, started_at, completed_at
FROM tracker.runs;

-- The manual follow-up actions of each run, with their state ('open', 'sending', 'sent',
-- 'ignored', 'resent').
CREATE VIEW tracker.actions_v1 AS
SELECT action_id, run_id, tenant_id, state, created_at
FROM tracker.actions;

-- One row per message of a run as the tracker counts it ('waiting', 'delivered', 'failed' or
-- 'cancelled'), stamped with the time of its latest change; `due_at` while it waits.
CREATE VIEW tracker.messages_v1 AS
SELECT recipient_id, run_id, tenant_id, contract_id, channel, address, state, reason,
       updated_at, due_at
FROM tracker.messages;
