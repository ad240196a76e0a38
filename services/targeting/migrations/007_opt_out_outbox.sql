-- contact.opted_out is published after the opt-out is recorded: `announced` is set once the
-- broker acknowledged it, and targeting republishes the opt-outs left unannounced (a broker
-- failure in between), with the same event id. Opt-outs recorded before were announced.
ALTER TABLE targeting.opt_outs ADD COLUMN announced boolean NOT NULL DEFAULT true;
ALTER TABLE targeting.opt_outs ALTER COLUMN announced SET DEFAULT false;
CREATE INDEX opt_outs_unannounced ON targeting.opt_outs (opted_out_at) WHERE NOT announced;
