-- Resolving a manual action: "ignore" (who and when) or "send" (the message goes through the
-- pipeline again, as a one-message follow-up run, to a corrected address when given).
ALTER TABLE tracker.actions DROP CONSTRAINT actions_state_check;
ALTER TABLE tracker.actions ADD CONSTRAINT actions_state_check
    CHECK (state IN ('open', 'sending', 'sent', 'ignored'));
ALTER TABLE tracker.actions
    ADD COLUMN resolution    text CHECK (resolution IN ('send', 'ignore')),
    ADD COLUMN resolved_by   text,
    ADD COLUMN resolved_at   timestamptz,
    ADD COLUMN follow_up_run uuid,
    -- Where the follow-up goes (a corrected address, else the original): a replayed "send"
    -- sends the same message to the same address.
    ADD COLUMN follow_up_address text;
CREATE INDEX actions_follow_up ON tracker.actions (follow_up_run) WHERE follow_up_run IS NOT NULL;

-- A follow-up run carries one message sent again for an action: it is reported on its action,
-- not as a broadcast of its own.
ALTER TABLE tracker.runs DROP CONSTRAINT runs_purpose_check;
ALTER TABLE tracker.runs ADD CONSTRAINT runs_purpose_check
    CHECK (purpose IN ('broadcast', 'preview', 'follow_up'));
