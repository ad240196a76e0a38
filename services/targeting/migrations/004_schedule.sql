-- A broadcast scheduled to start at a given moment (the tenant's wall time, stored as UTC):
-- targeting starts it then, as if `start` had been asked by whoever scheduled it.
ALTER TABLE targeting.broadcasts DROP CONSTRAINT broadcasts_state_check;
ALTER TABLE targeting.broadcasts ADD CONSTRAINT broadcasts_state_check
    CHECK (state IN ('draft', 'scheduled', 'started', 'cancelled'));
ALTER TABLE targeting.broadcasts
    ADD COLUMN scheduled_at     timestamptz,
    ADD COLUMN schedule_request text,
    ADD COLUMN scheduled_by     text;
CREATE INDEX broadcasts_due ON targeting.broadcasts (scheduled_at) WHERE state = 'scheduled';
