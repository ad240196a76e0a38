-- A cancelled run completes once every message it published is delivered, failed or
-- cancelled (the dispatcher reports what it had not handed over), with the outcome cancelled.
ALTER TABLE tracker.messages DROP CONSTRAINT messages_state_check;
ALTER TABLE tracker.messages ADD CONSTRAINT messages_state_check
    CHECK (state IN ('delivered', 'failed', 'cancelled'));
ALTER TABLE tracker.runs ADD COLUMN cancelled integer NOT NULL DEFAULT 0;
ALTER TABLE tracker.runs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
