-- 0008 quotas: the catalog of quota resources, per-tenant overrides, the counters that
-- enforce the limits, and reservations of metered units.
--
-- The limits themselves stay where the plans are declared, in core.plans.limits (jsonb:
-- resource -> maximum, absent = unlimited; 900_seeds.sql), beside the request rate the
-- API reads from the same object: one place says what a plan allows. What a resource
-- is (counted or metered, its unit, where the warning starts) is a row of the reference
-- table core.quota_resources, and whether a plan blocks or bills metered overage is the
-- new column core.plans.overage.
--
-- core.quota_counters holds one row per tenant and resource with the limit copied into
-- it (from the override, else the plan), so a check is one router-planned conditional
-- UPDATE of that row (docs/citus.md, fact 3). The rows are created for every tenant and
-- counted from the real rows by core.sync_quota_counters() at the end of
-- 900_seeds.sql, on every migrate (so this file also backfills nothing by hand: the
-- functions live in sql/repeatable/070_quotas.sql), and for a new tenant by a trigger
-- on core.tenants.

----------------------------------------------------------------------------------------
-- catalog: what can be limited (a reference table)
----------------------------------------------------------------------------------------
CREATE TABLE core.quota_resources (
    resource         text PRIMARY KEY CHECK (resource ~ '^[a-z][a-z0-9_]{1,62}$'),
    -- counted: live rows now (members, projects, ...); metered: units per billing period
    kind             text NOT NULL CHECK (kind IN ('counted', 'metered')),
    unit             text NOT NULL,
    -- GET /v1/quotas flags a resource from this share of its limit on
    warn_at_percent  smallint NOT NULL DEFAULT 80 CHECK (warn_at_percent BETWEEN 1 AND 100),
    description      text NOT NULL
);
COMMENT ON TABLE core.quota_resources IS 'Catalog of what plans can limit: counted resources and metered units per billing period.';
SELECT core.make_reference_table('core.quota_resources');

-- whether a plan blocks metered units beyond its limit or lets them through (billed);
-- the check is a named constraint of its own (Citus refuses an unnamed one in ADD COLUMN)
ALTER TABLE core.plans ADD COLUMN overage text NOT NULL DEFAULT 'block';
ALTER TABLE core.plans ADD CONSTRAINT plans_overage_check CHECK (overage IN ('block', 'bill'));

----------------------------------------------------------------------------------------
-- overrides: a platform administrator's per-tenant limit (distributed)
----------------------------------------------------------------------------------------
CREATE TABLE core.quota_overrides (
    tenant_id  uuid NOT NULL REFERENCES core.tenants (tenant_id),
    resource   text NOT NULL,
    max_value  numeric CHECK (max_value >= 0),  -- NULL: unlimited
    set_by     uuid NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, resource)
);
COMMENT ON TABLE core.quota_overrides IS 'Per-tenant limits set by platform administrators; they replace the plan''s limit.';
SELECT core.distribute_table('core.quota_overrides', 'core.tenants');
ALTER TABLE core.quota_overrides
    ADD CONSTRAINT quota_overrides_resource_fkey FOREIGN KEY (resource) REFERENCES core.quota_resources (resource);

----------------------------------------------------------------------------------------
-- counters: usage and the limit in force, one row per tenant and resource (distributed)
----------------------------------------------------------------------------------------
CREATE TABLE core.quota_counters (
    tenant_id     uuid NOT NULL REFERENCES core.tenants (tenant_id),
    resource      text NOT NULL,
    -- counted: live rows; metered: units used in the period starting at period_start.
    -- No CHECK (used >= 0): drift must not make a delete fail; reconciliation repairs it.
    used          numeric NOT NULL DEFAULT 0,
    reserved      numeric NOT NULL DEFAULT 0 CHECK (reserved >= 0),  -- metered: held by reservations
    max_value     numeric CHECK (max_value >= 0),                    -- NULL: unlimited
    overage       text NOT NULL DEFAULT 'block' CHECK (overage IN ('block', 'bill')),
    period_start  timestamptz,                                       -- metered only
    PRIMARY KEY (tenant_id, resource)
);
COMMENT ON TABLE core.quota_counters IS 'Usage per tenant and resource with the limit in force; enforced by conditional updates.';
SELECT core.distribute_table('core.quota_counters', 'core.tenants');
ALTER TABLE core.quota_counters
    ADD CONSTRAINT quota_counters_resource_fkey FOREIGN KEY (resource) REFERENCES core.quota_resources (resource);

----------------------------------------------------------------------------------------
-- reservations of metered units: reserve, then confirm or release (distributed)
----------------------------------------------------------------------------------------
CREATE TABLE core.quota_reservations (
    tenant_id        uuid NOT NULL,
    reservation_key  text NOT NULL CHECK (length(reservation_key) BETWEEN 1 AND 255),
    resource         text NOT NULL,
    units            numeric NOT NULL CHECK (units > 0),
    status           text NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'confirmed', 'released', 'expired')),
    actual_units     numeric CHECK (actual_units >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    settled_at       timestamptz,
    PRIMARY KEY (tenant_id, reservation_key),
    FOREIGN KEY (tenant_id, resource) REFERENCES core.quota_counters (tenant_id, resource),
    CONSTRAINT quota_reservations_settled CHECK ((status = 'held') = (settled_at IS NULL)),
    CONSTRAINT quota_reservations_actual CHECK ((status = 'confirmed') = (actual_units IS NOT NULL))
);
COMMENT ON TABLE core.quota_reservations IS 'Metered units held before work, confirmed with the real amount or released; idempotent by key.';
-- the expiry job's scan: held reservations by deadline
CREATE INDEX quota_reservations_held_idx ON core.quota_reservations (expires_at) WHERE status = 'held';
SELECT core.distribute_table('core.quota_reservations', 'core.tenants');

----------------------------------------------------------------------------------------
-- the record of platform-admin actions: plan changes and quota overrides
----------------------------------------------------------------------------------------
ALTER TABLE core.platform_admin_actions DROP CONSTRAINT platform_admin_actions_action_check;
ALTER TABLE core.platform_admin_actions ADD CONSTRAINT platform_admin_actions_action_check
    CHECK (action IN ('create', 'suspend', 'reactivate', 'delete', 'set_plan', 'set_quota', 'clear_quota'));
-- what the action was about (the plan, the resource and limit), for the new actions
ALTER TABLE core.platform_admin_actions ADD COLUMN details jsonb;
