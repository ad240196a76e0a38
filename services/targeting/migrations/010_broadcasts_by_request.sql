-- A broadcast created without an id now gets a random one (store/broadcasts.py): nobody, in
-- another tenant or not, can compute the id a create will get and take it first. A replayed
-- create (same tenant, same request) finds its broadcast through this index instead of
-- computing the id again.
ALTER TABLE targeting.broadcasts ADD COLUMN by_request boolean NOT NULL DEFAULT false;

-- Rows from before: a create without an id got an id derived from (tenant, request), so its
-- replay must still land on it. Which rows those are cannot be told apart from explicit ids
-- here (uuid5 needs SHA-1, which PostgreSQL lacks without an extension), so every row alone
-- with its (tenant, request) joins the index: a later create of the same tenant reusing that
-- request id lands on the tenant's own broadcast. Rows sharing a request id (explicit ids
-- given by one request) stay out of it, so this migration cannot fail on existing data.
UPDATE targeting.broadcasts b SET by_request = true
WHERE NOT EXISTS (
    SELECT 1 FROM targeting.broadcasts o
    WHERE o.tenant_id = b.tenant_id AND o.request_id = b.request_id
      AND o.broadcast_id <> b.broadcast_id);

CREATE UNIQUE INDEX broadcasts_by_request ON targeting.broadcasts (tenant_id, request_id)
    WHERE by_request;
