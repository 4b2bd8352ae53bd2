-- 0011 webhooks: the transactional outbox of domain events, the tenants' webhook
-- endpoints, and the deliveries of events to endpoints with every attempt.
--
-- Versioned: applied once by migrations/versions/0011_webhooks.py. The functions are in
-- sql/repeatable/510_outbox.sql (emitting events, by trigger, in the transaction of the
-- change) and 520_webhooks.sql (endpoints, fan-out, claim, attempts, the api.*
-- functions); the policies in policies/core_outbox_events.sql and
-- policies/core_webhook_*.sql.
--
-- The path of an event: a trigger (or a quota function) inserts it into
-- core.outbox_events in the transaction of the change, so a rolled-back change leaves
-- no event; ops.fan_out_webhook_events turns each undispatched event into one
-- core.webhook_deliveries row per matching active endpoint and marks it dispatched, in
-- one transaction; ops.claim_webhook_deliveries leases due deliveries to a sender
-- (claimed_until), which records each attempt (core.webhook_attempts) with
-- ops.record_webhook_attempt. Every table is distributed on tenant_id, colocated with
-- core.tenants: one tenant's fan-out and claim are router statements on one shard.

----------------------------------------------------------------------------------------
-- the outbox: domain events, written in the transaction of the change
----------------------------------------------------------------------------------------
CREATE TABLE core.outbox_events (
    tenant_id      uuid NOT NULL,
    event_id       uuid NOT NULL DEFAULT gen_random_uuid(),
    -- <resource>.<what happened>: project.created, member.invited, quota.exceeded, ...
    event_type     text NOT NULL CHECK (event_type ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$' AND length(event_type) <= 100),
    -- the resource's public JSON (never a hash or a secret), without envelope
    payload        jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    -- set by the fan-out that made the event's deliveries
    dispatched_at  timestamptz,
    -- a test event (POST /v1/webhooks/{id}/test) goes to this endpoint only
    endpoint_id    uuid,
    PRIMARY KEY (tenant_id, event_id)
);
COMMENT ON TABLE core.outbox_events IS 'Domain events written in the transaction of the change (transactional outbox); fanned out to webhook deliveries.';
-- the fan-out's scan: a tenant's undispatched events, oldest first
CREATE INDEX outbox_events_undispatched_idx ON core.outbox_events (tenant_id, occurred_at, event_id)
    WHERE dispatched_at IS NULL;
SELECT core.distribute_table('core.outbox_events', 'core.tenants');

----------------------------------------------------------------------------------------
-- endpoints: where a tenant wants its events (the signing secret encrypted by the
-- application with AES-GCM: the key never reaches the database)
----------------------------------------------------------------------------------------
CREATE TABLE core.webhook_endpoints (
    tenant_id          uuid NOT NULL,
    endpoint_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    -- http(s), a host, no credentials, no spaces; https only unless the deployment allows
    -- private addresses (checked by the API and again, on the resolved address, when sent)
    url                text NOT NULL CHECK (length(url) <= 2000 AND url ~ '^https?://[^/?#@\s]+([/?#]\S*)?$'),
    -- the event types it receives; '*' is every type
    event_types        text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 100),
    active             boolean NOT NULL DEFAULT true,
    secret_ciphertext  bytea NOT NULL CHECK (length(secret_ciphertext) BETWEEN 16 AND 1000),
    description        text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    created_by         uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    row_version        bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, endpoint_id)
);
COMMENT ON TABLE core.webhook_endpoints IS 'Webhook endpoints of a tenant: URL, event types, active flag and the encrypted signing secret.';
SELECT core.distribute_table('core.webhook_endpoints', 'core.tenants');

----------------------------------------------------------------------------------------
-- deliveries: one event to one endpoint, until it succeeded or is dead
----------------------------------------------------------------------------------------
CREATE TABLE core.webhook_deliveries (
    tenant_id        uuid NOT NULL,
    delivery_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    endpoint_id      uuid NOT NULL,
    event_id         uuid NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- when the next attempt is due (the event's time for the first: per endpoint in event order)
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- leased to a sender until then (NULL: not claimed); an expired lease is claimable again
    claimed_until    timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, delivery_id),
    CONSTRAINT webhook_deliveries_finished CHECK ((status = 'pending') = (finished_at IS NULL))
);
COMMENT ON TABLE core.webhook_deliveries IS 'One event to one endpoint: attempts with backoff until it succeeded or is dead.';
-- the claim's scan: pending deliveries by due time
CREATE INDEX webhook_deliveries_due_idx ON core.webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- one endpoint's pending deliveries (at most one in flight per endpoint)
CREATE INDEX webhook_deliveries_endpoint_pending_idx ON core.webhook_deliveries (tenant_id, endpoint_id, next_attempt_at)
    WHERE status = 'pending';
-- the list of an endpoint's deliveries (keyset by created_at, delivery_id)
CREATE INDEX webhook_deliveries_endpoint_idx ON core.webhook_deliveries (tenant_id, endpoint_id, created_at, delivery_id);
SELECT core.distribute_table('core.webhook_deliveries', 'core.tenants');
-- deleting an endpoint deletes its deliveries (ON DELETE CASCADE is allowed on a key
-- with the distribution column: only SET NULL/DEFAULT are not, docs/citus.md, fact 23)
ALTER TABLE core.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_endpoint_fkey FOREIGN KEY (tenant_id, endpoint_id)
    REFERENCES core.webhook_endpoints (tenant_id, endpoint_id) ON DELETE CASCADE;
ALTER TABLE core.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_event_fkey FOREIGN KEY (tenant_id, event_id)
    REFERENCES core.outbox_events (tenant_id, event_id);

----------------------------------------------------------------------------------------
-- attempts: what each try got back
----------------------------------------------------------------------------------------
CREATE TABLE core.webhook_attempts (
    tenant_id         uuid NOT NULL,
    delivery_id       uuid NOT NULL,
    attempt_no        integer NOT NULL CHECK (attempt_no >= 1),
    status_code       integer,                     -- NULL: no HTTP answer (timeout, refused)
    latency_ms        integer NOT NULL CHECK (latency_ms >= 0),
    response_snippet  text,                        -- the first bytes of the answer
    error             text,
    attempted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, delivery_id, attempt_no)
);
COMMENT ON TABLE core.webhook_attempts IS 'Each delivery attempt: HTTP status, latency, the start of the answer or the error.';
SELECT core.distribute_table('core.webhook_attempts', 'core.tenants');
ALTER TABLE core.webhook_attempts
    ADD CONSTRAINT webhook_attempts_delivery_fkey FOREIGN KEY (tenant_id, delivery_id)
    REFERENCES core.webhook_deliveries (tenant_id, delivery_id) ON DELETE CASCADE;
