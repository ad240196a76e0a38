-- A message the dispatcher parked (a retry, a closed send window, a slow-down) is "waiting"
-- until its final outcome arrives; a late deferral never overwrites a final state.
ALTER TABLE tracker.messages DROP CONSTRAINT messages_state_check;
ALTER TABLE tracker.messages ADD CONSTRAINT messages_state_check
    CHECK (state IN ('waiting', 'delivered', 'failed', 'cancelled'));
ALTER TABLE tracker.messages
    ADD COLUMN waiting_for text,
    ADD COLUMN due_at      timestamptz;
