-- The Diffusions seed's visit and payment values of a contract (ContractDetails).
ALTER TABLE targeting.contracts ADD COLUMN details jsonb NOT NULL DEFAULT '{}';

-- Each tenant's settings; a run copies them when it starts.
CREATE TABLE targeting.tenants (
    tenant_id     text        PRIMARY KEY,
    settings      jsonb       NOT NULL,
    request_id    text        NOT NULL,
    configured_at timestamptz NOT NULL DEFAULT now()
);

-- Every saved version of every template. A version is never changed: a run names the version
-- it started with. `request_id` makes a replayed save land on the version it created.
CREATE TABLE targeting.templates (
    tenant_id   text        NOT NULL,
    template_id text        NOT NULL,
    version     integer     NOT NULL,
    name        text        NOT NULL,
    content     jsonb       NOT NULL,
    request_id  text        NOT NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, template_id, version),
    UNIQUE (tenant_id, request_id)
);

-- What a run was started with: the content (a template's version pinned at start) and the
-- tenant's settings at that moment, so a later change never alters a running broadcast.
ALTER TABLE targeting.runs
    ADD COLUMN content          jsonb,
    ADD COLUMN template_id      text,
    ADD COLUMN template_version integer,
    ADD COLUMN settings         jsonb NOT NULL DEFAULT '{}';

-- Addresses whose owner used an unsubscribe link. Kept apart from the contracts: a later
-- upsert from the platform must not bring an unsubscribed address back.
CREATE TABLE targeting.opt_outs (
    tenant_id     text        NOT NULL,
    channel       text        NOT NULL CHECK (channel IN ('email', 'sms')),
    address       text        NOT NULL,  -- lower-cased
    contract_id   text        NOT NULL,
    opted_out_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, address)
);
