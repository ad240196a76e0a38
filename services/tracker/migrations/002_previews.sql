-- A preview run (one message to the address given in the preview command) is reported with
-- broadcast.previewed; it has no progress events and no follow-up actions.
ALTER TABLE tracker.runs ADD COLUMN purpose text NOT NULL DEFAULT 'broadcast'
    CHECK (purpose IN ('broadcast', 'preview'));
