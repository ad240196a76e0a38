-- A waiting message rendered again with its contract's current values before it is sent
-- (docs/ARCHITECTURE.md, "Values at the moment of sending"): 'refreshing' while the new
-- rendition is on its way; `due_at` is then when to ask again, should the request be lost.
ALTER TABLE dispatcher.deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE dispatcher.deliveries ADD CONSTRAINT deliveries_state_check
    CHECK (state IN ('claimed', 'delivered', 'failed', 'scheduled', 'unknown', 'cancelled',
                     'refreshing'));
-- The rendition the row holds (0: as targeted), or asks for while refreshing.
ALTER TABLE dispatcher.deliveries
    ADD COLUMN rendition integer NOT NULL DEFAULT 0,
    -- When the pending refresh was first asked for: unanswered for too long, the message fails.
    ADD COLUMN refresh_asked_at timestamptz;
CREATE INDEX deliveries_refreshing ON dispatcher.deliveries (due_at) WHERE state = 'refreshing';
