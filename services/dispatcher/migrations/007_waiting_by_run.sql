-- Only waiting messages are looked up by run (cancel_waiting, resume_run): the index on every
-- row's run cost each claim and each outcome one more index entry for no query. Readers of a
-- whole run (bench.stages, an e2e test) read the deliveries_v1 view once, after the run.
CREATE INDEX deliveries_waiting_run ON dispatcher.deliveries (run_id)
    WHERE state IN ('scheduled', 'refreshing');
DROP INDEX dispatcher.deliveries_run;
