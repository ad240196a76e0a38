-- A resend to the failures leaves out the messages whose outcome is unknown (the relay may
-- have them) unless asked, and those whose manual action was resolved (run.action_closed):
-- somebody took care of them. Failures recorded before this migration have no reason and are
-- resent as before.
ALTER TABLE targeting.failures
    ADD COLUMN reason text,
    ADD COLUMN closed boolean NOT NULL DEFAULT false;

-- A resend to the failures that includes the unknown outcomes (with only_failed_of).
ALTER TABLE targeting.runs ADD COLUMN include_unknown boolean NOT NULL DEFAULT false;
