-- Runs on hold, from run.paused until run.resumed. Their messages wait in the ledger as
-- 'scheduled' with waiting_for 'paused' and no due_at: nothing takes them until the resume
-- makes them due at once. What was delivered before the pause is final and never sent again.
CREATE TABLE dispatcher.paused_runs (
    run_id    uuid        PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE dispatcher.deliveries DROP CONSTRAINT deliveries_waiting_for_check;
ALTER TABLE dispatcher.deliveries ADD CONSTRAINT deliveries_waiting_for_check
    CHECK (waiting_for IN ('retry', 'send_window', 'throttled', 'paused'));
