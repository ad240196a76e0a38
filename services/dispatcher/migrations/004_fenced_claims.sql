-- Claims are bound to a live dispatcher instead of a timed lease (docs/ARCHITECTURE.md, "The
-- delivery ledger"). A lease expired under a live dispatcher whose sends queued behind slow
-- ones, and held a crashed dispatcher's messages for its whole length.

-- Each dispatcher: an identity kept across restarts, the number of its current life (one more
-- at every start) and when it last proved alive. Claims of an earlier life are settled at the
-- next start; claims of an instance silent for `takeover_seconds` are settled by the others.
CREATE TABLE dispatcher.instances (
    instance_id  text        PRIMARY KEY,
    life         bigint      NOT NULL,
    heartbeat_at timestamptz NOT NULL
);

-- A fencing token per claim: only the claim's holder records its outcome. When the claim was
-- settled as unknown meanwhile, the holder's real outcome is applied as a correction.
CREATE SEQUENCE dispatcher.claim_tokens;
ALTER TABLE dispatcher.deliveries
    ADD COLUMN claimed_by  text,
    ADD COLUMN claim_life  bigint,
    ADD COLUMN claim_token bigint,
    -- The outcome replaced an unknown: announced with delivery.corrected as well.
    ADD COLUMN corrected   boolean NOT NULL DEFAULT false;

-- Claims taken under leases belong to no instance: they are a dead instance's, settled by the
-- first dispatcher that sweeps.
INSERT INTO dispatcher.instances VALUES ('', 0, '-infinity');
UPDATE dispatcher.deliveries SET claimed_by = '', claim_life = 0 WHERE state = 'claimed';

DROP INDEX dispatcher.deliveries_leases;
ALTER TABLE dispatcher.deliveries DROP COLUMN lease_until;
CREATE INDEX deliveries_claims ON dispatcher.deliveries (claimed_by, claim_life)
    WHERE state = 'claimed';
