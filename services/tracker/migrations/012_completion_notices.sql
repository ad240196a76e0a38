-- Who created the broadcast a run belongs to (run.started's `created_by`): its completion is
-- addressed to the creator, and to whoever started the run when that is someone else.
ALTER TABLE tracker.runs ADD COLUMN created_by text;
-- A notice run carries the email telling one person of the tenant that a run completed: it is
-- counted in no broadcast's counters, opens no action and announces no completion of its own.
ALTER TABLE tracker.runs DROP CONSTRAINT runs_purpose_check;
ALTER TABLE tracker.runs ADD CONSTRAINT runs_purpose_check
    CHECK (purpose IN ('broadcast', 'preview', 'follow_up', 'notice'));
