-- 0010 audit: the immutable audit log, its seal chain, and each plan's audit retention.
--
-- Versioned: applied once by migrations/versions/0010_audit.py. The triggers and
-- functions (the row trigger every tenant table gets, core.audit_event, sealing,
-- verification, retention, api.list_audit) are in sql/repeatable/500_audit.sql, the
-- policies in policies/core_audit_*.sql.
--
-- Order and sealing. A row's place in its tenant's chain is (epoch, audit_id), not its
-- time or its id alone: ids from a sequence are not handed out in commit order (a
-- transaction that took id 5 may commit after the one that took 6), and on Citus each
-- node draws ids from its own range (a shard move changes the range). So every audit row
-- is stamped with its tenant's open epoch (core.audit_heads.open_epoch) by a BEFORE
-- INSERT trigger that holds a shared advisory lock of the tenant until commit; a seal
-- takes the exclusive lock (so every transaction that wrote in the epoch has ended),
-- closes the epoch (open_epoch + 1), and hashes the closed epochs' rows in (epoch,
-- audit_id) order. No row can join a closed epoch later, whatever the commit order.

----------------------------------------------------------------------------------------
-- retention per plan
----------------------------------------------------------------------------------------
-- how long a tenant on the plan sees its audit trail (GET /v1/audit); the retention job
-- drops whole monthly partitions older than the longest retention of any plan
ALTER TABLE core.plans ADD COLUMN audit_retention_days integer NOT NULL DEFAULT 90;
ALTER TABLE core.plans ADD CONSTRAINT plans_audit_retention_days_check CHECK (audit_retention_days BETWEEN 1 AND 3650);

----------------------------------------------------------------------------------------
-- the audit log: time-partitioned by month, distributed on tenant_id
----------------------------------------------------------------------------------------
-- Monthly partitions like core.usage_events (0009): retention drops whole months; no
-- default partition (an audit row no partition takes fails the write: maintenance is
-- late, and nothing goes unaudited). The primary key must hold the partition column.
CREATE SEQUENCE core.audit_log_audit_id_seq AS bigint;
CREATE TABLE core.audit_log (
    tenant_id    uuid NOT NULL,
    audit_id     bigint NOT NULL DEFAULT nextval('core.audit_log_audit_id_seq'),
    -- the tenant's open epoch when the row was written (core.stamp_audit_row)
    epoch        bigint NOT NULL DEFAULT 0,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    actor_id     uuid,
    actor_type   text CHECK (actor_type IN ('user', 'api_key', 'system', 'platform_admin', 'anonymous')),
    request_id   text,
    ip           inet,
    -- insert, update, delete (a row trigger) or an application event (login, ...)
    action       text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,62}$'),
    table_name   text,
    row_key      jsonb,
    -- update: {column: [old, new]} of the changed columns; insert/delete: the row;
    -- secret columns never (core.audit_redacts)
    changes      jsonb,
    details      jsonb,
    PRIMARY KEY (tenant_id, occurred_at, audit_id)
) PARTITION BY RANGE (occurred_at);
COMMENT ON TABLE core.audit_log IS 'Who changed what, per tenant: row changes by trigger and application events; insert-only, sealed into a hash chain.';
ALTER SEQUENCE core.audit_log_audit_id_seq OWNED BY core.audit_log.audit_id;
-- sealing and verification read a tenant's rows in chain order
CREATE INDEX audit_log_chain_idx ON core.audit_log (tenant_id, epoch, audit_id);
SELECT core.distribute_table('core.audit_log', 'core.tenants');

----------------------------------------------------------------------------------------
-- the chain's head per tenant, and the seals
----------------------------------------------------------------------------------------
-- One row per tenant that has audit rows (made by its first one): the open epoch, and
-- where the last seal ended. Only the sealer changes it.
CREATE TABLE core.audit_heads (
    tenant_id        uuid NOT NULL PRIMARY KEY,
    open_epoch       bigint NOT NULL DEFAULT 1,
    seal_no          bigint NOT NULL DEFAULT 0,
    sealed_epoch     bigint NOT NULL DEFAULT 0,
    sealed_audit_id  bigint NOT NULL DEFAULT 0,
    last_hash        bytea,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE core.audit_heads IS 'Per tenant: the open audit epoch and the end of the seal chain.';
SELECT core.distribute_table('core.audit_heads', 'core.tenants');

-- A seal covers the tenant's rows after the previous seal's end up to (last_epoch,
-- last_audit_id), in (epoch, audit_id) order: their ids and SHA-256 digests, in that
-- order; hash = sha256(prev_hash || header || digests). Insert-only, like the log.
-- The first and last occurrence times say which seals retention may have emptied.
CREATE TABLE core.audit_seals (
    tenant_id        uuid NOT NULL,
    seal_no          bigint NOT NULL CHECK (seal_no > 0),
    first_epoch      bigint NOT NULL,
    first_audit_id   bigint NOT NULL,
    last_epoch       bigint NOT NULL,
    last_audit_id    bigint NOT NULL,
    row_count        integer NOT NULL CHECK (row_count > 0),
    audit_ids        bigint[] NOT NULL,
    digests          bytea NOT NULL,
    min_occurred_at  timestamptz NOT NULL,
    max_occurred_at  timestamptz NOT NULL,
    prev_hash        bytea,
    hash             bytea NOT NULL,
    sealed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seal_no)
);
COMMENT ON TABLE core.audit_seals IS 'The per-tenant hash chain over the audit log (tamper evidence); insert-only.';
SELECT core.distribute_table('core.audit_seals', 'core.tenants');
