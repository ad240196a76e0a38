-- A cancelled broadcast sends nothing more: a draft can no longer start, a run stops streaming
-- at its next page and the dispatcher reports what it had not handed over as cancelled.
ALTER TABLE targeting.broadcasts DROP CONSTRAINT broadcasts_state_check;
ALTER TABLE targeting.broadcasts ADD CONSTRAINT broadcasts_state_check
    CHECK (state IN ('draft', 'started', 'cancelled'));
ALTER TABLE targeting.runs ADD COLUMN cancelled boolean NOT NULL DEFAULT false;
