-- Addresses a delivery report suppressed (a hard bounce, a complaint, soft bounces in a row, an
-- SMS STOP), per tenant and channel. Like targeting.opt_outs, kept apart from the contracts: a
-- later upsert from the platform must not bring a suppressed address back; the contracts' points
-- carry `"suppressed": true` so that targeting and estimates leave them out as they leave the
-- opted-out ones. `recipient_id` is the message whose report decided it.
CREATE TABLE targeting.suppressions (
    tenant_id     text        NOT NULL,
    channel       text        NOT NULL CHECK (channel IN ('email', 'sms')),
    address       text        NOT NULL,  -- trimmed, lower-cased
    reason        text        NOT NULL
                              CHECK (reason IN ('hard_bounce', 'complaint', 'soft_bounces',
                                                'sms_stop')),
    recipient_id  uuid        NOT NULL,
    contract_id   text        NOT NULL,
    suppressed_at timestamptz NOT NULL DEFAULT now(),
    -- contact.suppressed is published after the row is recorded: a batch redelivered after a
    -- failed publish publishes the rows still unannounced, with the same event id.
    announced     boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, channel, address)
);

-- Each re-enable (`reenable_contact`), kept for ever: who, when, why, and the suppression it
-- undid (NULL columns: the address was not suppressed). A replayed request finds its row and
-- gets the same answer. A report made before an address's latest re-enable (a replay) no longer
-- suppresses it.
CREATE TABLE targeting.reenables (
    tenant_id      text        NOT NULL,
    request_id     text        NOT NULL,
    channel        text        NOT NULL,
    address        text        NOT NULL,
    requested_by   text        NOT NULL,
    note           text        NOT NULL DEFAULT '',
    reenabled_at   timestamptz NOT NULL DEFAULT now(),
    reason         text,
    recipient_id   uuid,
    suppressed_at  timestamptz,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX reenables_address ON targeting.reenables (tenant_id, channel, address, reenabled_at);

-- The messages of an address with a soft-bounce streak under way: each soft-bounced one, and
-- each delivered after the streak began (which ends it unless it bounces too). Rows go when the
-- address is suppressed or re-enabled.
CREATE TABLE targeting.soft_bounces (
    tenant_id    text        NOT NULL,
    channel      text        NOT NULL,
    address      text        NOT NULL,
    recipient_id uuid        NOT NULL,
    -- When it was handed over (delivery.delivered), or, for a bounce whose hand-over was not
    -- noted (the streak's first), when the bounce was reported: the streak's order.
    sent_at      timestamptz NOT NULL,
    bounced      boolean     NOT NULL,
    PRIMARY KEY (tenant_id, channel, address, recipient_id)
);
