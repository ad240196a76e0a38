-- list_messages pages a run's messages by recipient id (keyset): one index range per page,
-- however large the run.
CREATE INDEX messages_run_page ON tracker.messages (run_id, recipient_id);
