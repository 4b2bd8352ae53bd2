-- Quotas: what a tenant's plan (or a platform administrator's override) allows, enforced
-- in the database.
--
-- * Counted resources (core.quota_resources.kind = 'counted') are live rows now:
--   members (memberships), projects and tasks (not soft-deleted), api_keys (not revoked:
--   an expired key keeps its slot until it is revoked) and storage_bytes (the UTF-8
--   bytes of the live projects' name + description and the live tasks' title +
--   description). Row triggers on those tables (below, on other features' tables) move
--   core.quota_counters.used by the row's delta with ONE conditional UPDATE of the
--   tenant's counter rows, `... SET used = used + d WHERE ... AND (d <= 0 OR max_value
--   IS NULL OR used + d <= max_value)`: router-planned on Citus and race-free, since a
--   concurrent writer waits for the row lock and re-checks the condition on the new
--   value (docs/citus.md, fact 3). A soft delete gives the slot back, a restore takes it
--   again (and is refused over the limit), a hard delete gives it back.
-- * Exceeding a limit is TQ001 with the details as JSON in DETAIL (errors raised on a
--   Citus worker keep SQLSTATE, message, detail and hint but lose COLUMN: docs/citus.md,
--   fact 18), which the API turns into a 403 quota_exceeded problem.
-- * Downgrade rule: a plan change (or override) below the current usage is allowed and
--   deletes nothing; the tenant is over quota (GET /v1/quotas: over_limit), every
--   create of that resource is refused until usage is under the limit, deletes work.
-- * Plan features: core.assert_plan_feature raises TQ002; API keys need 'api_keys'.
-- * Metered resources count units per billing period (core.billing_period_start:
--   calendar month, UTC). Work reserves units first (api.reserve_quota, idempotent by
--   key), then confirms the real amount or releases; used + reserved stays within the
--   limit when the plan's overage is 'block', and may exceed it (billed) when 'bill'.
--   core.consume_metered adds measured usage (the usage ingest calls it).
-- * ops.reconcile_quotas recounts from the real rows and repairs drift;
--   ops.expire_quota_reservations releases reservations past their deadline.
--
-- Trigger and helper functions use invoker rights: the api role moves its own tenant's
-- counters through RLS, with UPDATE on the counters' usage columns only (never the
-- limit); a definer function here would read after the caller's writes to the same
-- shards (docs/citus.md, fact 16).

----------------------------------------------------------------------------------------
-- limits and billing periods
----------------------------------------------------------------------------------------

-- The limit in force for a tenant's resource: its override if it has one, else its
-- plan's (NULL: unlimited).
CREATE OR REPLACE FUNCTION core.quota_limit(p_tenant_id uuid, p_resource text)
RETURNS numeric
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_override core.quota_overrides;
    v_limits jsonb;
BEGIN
    SELECT * INTO v_override FROM core.quota_overrides WHERE tenant_id = p_tenant_id AND resource = p_resource;
    IF FOUND THEN
        RETURN v_override.max_value;
    END IF;
    SELECT p.limits INTO v_limits
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    RETURN (v_limits ->> p_resource)::numeric;
END
$$;

-- The start of the billing period that contains p_at: the calendar month in UTC. One
-- function, so that per-tenant billing anchors (issue 12) change only this.
CREATE OR REPLACE FUNCTION core.billing_period_start(p_tenant_id uuid, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

-- The end (exclusive) of the billing period that starts at p_start.
CREATE OR REPLACE FUNCTION core.billing_period_end(p_tenant_id uuid, p_start timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ((p_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC' $$;

-- The live amount of a counted resource, from the real rows (NULL: not a counted
-- resource). The triggers below must keep core.quota_counters equal to this.
CREATE OR REPLACE FUNCTION core.count_quota_usage(p_tenant_id uuid, p_resource text)
RETURNS numeric
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count numeric;
    v_more numeric;
BEGIN
    CASE p_resource
    WHEN 'projects' THEN
        SELECT count(*) INTO v_count FROM core.projects WHERE tenant_id = p_tenant_id AND deleted_at IS NULL;
    WHEN 'tasks' THEN
        SELECT count(*) INTO v_count FROM core.tasks WHERE tenant_id = p_tenant_id AND deleted_at IS NULL;
    WHEN 'members' THEN
        SELECT count(*) INTO v_count FROM core.memberships WHERE tenant_id = p_tenant_id;
    WHEN 'api_keys' THEN
        SELECT count(*) INTO v_count FROM core.api_keys WHERE tenant_id = p_tenant_id AND revoked_at IS NULL;
    WHEN 'storage_bytes' THEN
        SELECT COALESCE(sum(octet_length(name) + octet_length(description)), 0) INTO v_count
          FROM core.projects WHERE tenant_id = p_tenant_id AND deleted_at IS NULL;
        SELECT COALESCE(sum(octet_length(title) + octet_length(description)), 0) INTO v_more
          FROM core.tasks WHERE tenant_id = p_tenant_id AND deleted_at IS NULL;
        v_count := v_count + v_more;
    ELSE
        RETURN NULL;
    END CASE;
    RETURN v_count;
END
$$;

----------------------------------------------------------------------------------------
-- counter rows: created with the tenant, limits refreshed on plan or override changes
----------------------------------------------------------------------------------------

-- Create the tenant's missing counter rows (one per resource of the catalog), counted
-- from the real rows, with the limit in force; returns the resources created. Plain
-- INSERT ... VALUES per resource: it runs in a trigger on the tenant's shard.
CREATE OR REPLACE FUNCTION core.create_quota_counters(p_tenant_id uuid)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_overage text;
    v_period timestamptz := core.billing_period_start(p_tenant_id, now());
    v_resource core.quota_resources;
    v_limit numeric;
    v_used numeric;
    v_period_start timestamptz;
    v_created text[] := '{}';
BEGIN
    SELECT p.overage INTO v_overage
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    FOR v_resource IN SELECT * FROM core.quota_resources ORDER BY resource LOOP
        PERFORM 1 FROM core.quota_counters WHERE tenant_id = p_tenant_id AND resource = v_resource.resource;
        CONTINUE WHEN FOUND;
        v_limit := core.quota_limit(p_tenant_id, v_resource.resource);
        v_used := COALESCE(core.count_quota_usage(p_tenant_id, v_resource.resource), 0);
        v_period_start := CASE WHEN v_resource.kind = 'metered' THEN v_period END;
        INSERT INTO core.quota_counters (tenant_id, resource, used, max_value, overage, period_start)
        VALUES (p_tenant_id, v_resource.resource, v_used, v_limit, COALESCE(v_overage, 'block'), v_period_start)
        ON CONFLICT (tenant_id, resource) DO NOTHING;
        IF FOUND THEN
            v_created := v_created || v_resource.resource;
        END IF;
    END LOOP;
    RETURN v_created;
END
$$;

-- Copy the limits in force (override, else plan) and the plan's overage rule into the
-- tenant's counter rows (only rows that change are written).
CREATE OR REPLACE FUNCTION core.refresh_quota_limits(p_tenant_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_overage text;
    v_resource text;
    v_limit numeric;
BEGIN
    SELECT p.overage INTO v_overage
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    FOR v_resource IN SELECT resource FROM core.quota_resources ORDER BY resource LOOP
        v_limit := core.quota_limit(p_tenant_id, v_resource);
        UPDATE core.quota_counters SET max_value = v_limit, overage = v_overage
         WHERE tenant_id = p_tenant_id AND resource = v_resource
           AND (max_value IS DISTINCT FROM v_limit OR overage IS DISTINCT FROM v_overage);
    END LOOP;
END
$$;

-- On every migrate (the end of 900_seeds.sql): counter rows for every tenant and
-- resource (new ones counted from the real rows: this is the backfill for tenants that
-- existed before quotas, and for a resource added to the catalog later), and limits
-- that follow the seeded plans. One set-based query finds the tenants with work to do.
CREATE OR REPLACE FUNCTION core.sync_quota_counters()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenants uuid[];
    v_tenant uuid;
BEGIN
    IF core.citus_enabled() THEN
        -- migrate is one transaction with DDL after this (policies/): one connection per
        -- worker, as `tenantry db downgrade` does
        PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
    END IF;
    SELECT array_agg(DISTINCT t.tenant_id) INTO v_tenants
      FROM core.tenants AS t
      JOIN core.plans AS p ON p.plan_id = t.plan_id
      CROSS JOIN core.quota_resources AS r
      LEFT JOIN core.quota_overrides AS o ON o.tenant_id = t.tenant_id AND o.resource = r.resource
      LEFT JOIN core.quota_counters AS c ON c.tenant_id = t.tenant_id AND c.resource = r.resource
     WHERE c.tenant_id IS NULL
        OR c.overage IS DISTINCT FROM p.overage
        OR c.max_value IS DISTINCT FROM (CASE WHEN o.tenant_id IS NOT NULL THEN o.max_value
                                              ELSE (p.limits ->> r.resource)::numeric END);
    FOREACH v_tenant IN ARRAY COALESCE(v_tenants, '{}') LOOP
        PERFORM core.create_quota_counters(v_tenant);
        PERFORM core.refresh_quota_limits(v_tenant);
    END LOOP;
    RETURN COALESCE(cardinality(v_tenants), 0);
END
$$;

-- Row trigger on core.tenants (AFTER INSERT): a new tenant's counters.
CREATE OR REPLACE FUNCTION core.create_tenant_quota_counters()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.create_quota_counters(NEW.tenant_id);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER create_quota_counters
    AFTER INSERT ON core.tenants
    FOR EACH ROW EXECUTE FUNCTION core.create_tenant_quota_counters();

-- Row trigger on core.tenants (AFTER UPDATE OF plan_id): the new plan's limits apply at
-- once, whoever changes the plan (admin.set_tenant_plan, billing, the owner).
CREATE OR REPLACE FUNCTION core.refresh_tenant_quota_limits()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.refresh_quota_limits(NEW.tenant_id);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER refresh_quota_limits
    AFTER UPDATE OF plan_id ON core.tenants
    FOR EACH ROW
    WHEN (OLD.plan_id IS DISTINCT FROM NEW.plan_id)
    EXECUTE FUNCTION core.refresh_tenant_quota_limits();

----------------------------------------------------------------------------------------
-- refusals: TQ001 quota exceeded, TQ002 feature not in plan
----------------------------------------------------------------------------------------

-- Raise TQ001 for p_resource: p_current in use (metered: used + reserved), p_limit
-- allowed, p_requested more asked for. DETAIL is JSON (resource, current, limit,
-- requested, plan, upgrade_plan, upgrade_limit) for the API's problem; the upgrade is
-- the cheapest dearer plan that would allow it (none: ask a platform administrator).
CREATE OR REPLACE FUNCTION core.raise_quota_exceeded(
    p_tenant_id uuid, p_resource text, p_current numeric, p_limit numeric, p_requested numeric
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan core.plans;
    v_upgrade core.plans;
    v_hint text;
BEGIN
    SELECT p.* INTO v_plan
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    SELECT * INTO v_upgrade FROM core.plans
     WHERE price_cents > v_plan.price_cents
       AND (NOT limits ? p_resource OR (limits ->> p_resource)::numeric >= p_current + p_requested)
     ORDER BY price_cents, plan_id
     LIMIT 1;
    v_hint := CASE
        WHEN v_upgrade.plan_id IS NOT NULL THEN
            format('The %s plan allows %s. Or free some: delete what you no longer need.',
                   v_upgrade.name, COALESCE(v_upgrade.limits ->> p_resource, 'unlimited'))
        ELSE 'Free some (delete what you no longer need), or ask for a higher limit.'
    END;
    RAISE EXCEPTION 'quota exceeded: % of % % in use on the % plan', p_current, p_limit, p_resource, v_plan.plan_id USING
        ERRCODE = 'TQ001',
        DETAIL = jsonb_build_object(
            'resource', p_resource, 'current', p_current, 'limit', p_limit, 'requested', p_requested,
            'plan', v_plan.plan_id, 'upgrade_plan', v_upgrade.plan_id,
            'upgrade_limit', CASE WHEN v_upgrade.plan_id IS NOT NULL THEN v_upgrade.limits -> p_resource END
        )::text,
        HINT = v_hint;
END
$$;

-- After a conditional update refused: raise TQ001 for the counter that refused p_delta
-- (or an internal error if the tenant has no counter row: ops.reconcile_quotas creates it).
CREATE OR REPLACE FUNCTION core.raise_quota_refusal(p_tenant_id uuid, p_resource text, p_delta numeric)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_counter core.quota_counters;
    v_used numeric;
BEGIN
    SELECT * INTO v_counter FROM core.quota_counters WHERE tenant_id = p_tenant_id AND resource = p_resource;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % has no quota counter for %: run ops.reconcile_quotas', p_tenant_id, p_resource;
    END IF;
    v_used := v_counter.used;
    IF v_counter.period_start IS NOT NULL
       AND v_counter.period_start <> core.billing_period_start(p_tenant_id, now()) THEN
        v_used := 0;  -- a metered counter's previous period
    END IF;
    PERFORM core.raise_quota_exceeded(p_tenant_id, p_resource, v_used + v_counter.reserved, v_counter.max_value, p_delta);
END
$$;

-- Move a tenant's counted resource by p_count and its storage_bytes by p_bytes, in one
-- conditional UPDATE of (at most) two counter rows: an increase must stay within the
-- limit, a decrease always passes. Raises TQ001 naming the resource that refused.
CREATE OR REPLACE FUNCTION core.apply_quota_delta(p_tenant_id uuid, p_resource text, p_count integer, p_bytes bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_wanted integer := (p_count <> 0)::integer + (p_bytes <> 0)::integer;
    v_moved record;
    v_delta bigint;
    v_count_moved boolean := p_count = 0;
    v_bytes_moved boolean := p_bytes = 0;
BEGIN
    IF v_wanted = 0 THEN
        RETURN;
    END IF;
    IF v_wanted = 2 THEN
        -- A two-row UPDATE locks its rows in scan order; a bitmap heap scan follows the
        -- heap, where each update moves the row, so two writers of one tenant could lock
        -- the pair in opposite orders and deadlock (40P01, seen under load). Lock the pair
        -- in resource order first: LockRows runs above the Sort, so the locks follow it.
        PERFORM 1 FROM core.quota_counters
         WHERE tenant_id = p_tenant_id AND resource IN (p_resource, 'storage_bytes')
         ORDER BY resource
           FOR NO KEY UPDATE;
    END IF;
    -- plain parameters in the CASEs (no now(), no subquery): one router-planned
    -- statement on Citus (docs/citus.md, facts 3 and 14); RETURNING tells which moved,
    -- and to what: an increase that reaches the warning share or the limit is an event
    -- (core.note_quota_change, 510_outbox.sql)
    FOR v_moved IN
        UPDATE core.quota_counters
           SET used = used + CASE WHEN resource = 'storage_bytes' THEN p_bytes ELSE p_count END
         WHERE tenant_id = p_tenant_id
           AND resource IN (CASE WHEN p_count <> 0 THEN p_resource END, CASE WHEN p_bytes <> 0 THEN 'storage_bytes' END)
           AND (max_value IS NULL
                OR CASE WHEN resource = 'storage_bytes' THEN p_bytes ELSE p_count END <= 0
                OR used + CASE WHEN resource = 'storage_bytes' THEN p_bytes ELSE p_count END <= max_value)
        RETURNING resource, used, max_value
    LOOP
        IF v_moved.resource = 'storage_bytes' THEN
            v_bytes_moved := true;
            v_delta := p_bytes;
        ELSE
            v_count_moved := true;
            v_delta := p_count;
        END IF;
        IF v_delta > 0 AND v_moved.max_value IS NOT NULL THEN
            PERFORM core.note_quota_change(p_tenant_id, v_moved.resource, v_moved.used - v_delta, v_moved.used,
                                           v_moved.max_value);
        END IF;
    END LOOP;
    IF NOT v_count_moved THEN
        PERFORM core.raise_quota_refusal(p_tenant_id, p_resource, p_count);
    ELSIF NOT v_bytes_moved THEN
        PERFORM core.raise_quota_refusal(p_tenant_id, 'storage_bytes', p_bytes);
    END IF;
END
$$;

-- Raise TQ002 unless the tenant's plan includes p_feature. Features that plans gate
-- call this (API keys: 'api_keys'; webhooks, audit_export, sso when they exist).
CREATE OR REPLACE FUNCTION core.assert_plan_feature(p_tenant_id uuid, p_feature text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan core.plans;
    v_upgrade core.plans;
BEGIN
    SELECT p.* INTO v_plan
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    IF p_feature = ANY (v_plan.features) THEN
        RETURN;
    END IF;
    SELECT * INTO v_upgrade FROM core.plans WHERE p_feature = ANY (features) ORDER BY price_cents, plan_id LIMIT 1;
    RAISE EXCEPTION 'the % plan does not include %', COALESCE(v_plan.plan_id, 'tenant''s'), p_feature USING
        ERRCODE = 'TQ002',
        DETAIL = jsonb_build_object('feature', p_feature, 'plan', v_plan.plan_id, 'upgrade_plan', v_upgrade.plan_id)::text,
        HINT = CASE WHEN v_upgrade.plan_id IS NOT NULL THEN format('The %s plan includes it.', v_upgrade.name)
                    ELSE 'No plan includes it yet.' END;
END
$$;

----------------------------------------------------------------------------------------
-- counting triggers on the counted resources' tables (other features' tables: the
-- rule is this file's)
----------------------------------------------------------------------------------------

-- Row trigger on core.projects: a live project is one slot of 'projects' and its name
-- and description count towards storage_bytes. AFTER: only rows really written count.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.count_project_quota()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer := 0;
    v_bytes bigint := 0;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        IF NEW.deleted_at IS NULL THEN
            v_count := 1;
            v_bytes := octet_length(NEW.name) + octet_length(NEW.description);
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        IF OLD.deleted_at IS NULL THEN
            v_count := v_count - 1;
            v_bytes := v_bytes - (octet_length(OLD.name) + octet_length(OLD.description));
        END IF;
    END IF;
    PERFORM core.apply_quota_delta(COALESCE(NEW.tenant_id, OLD.tenant_id), 'projects', v_count, v_bytes);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER count_project_quota
    AFTER INSERT OR DELETE OR UPDATE OF deleted_at, name, description ON core.projects
    FOR EACH ROW EXECUTE FUNCTION core.count_project_quota();

-- Row trigger on core.tasks: a live task is one slot of 'tasks'; title and description
-- count towards storage_bytes. A project's soft delete (its cascade) frees its tasks.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.count_task_quota()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer := 0;
    v_bytes bigint := 0;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        IF NEW.deleted_at IS NULL THEN
            v_count := 1;
            v_bytes := octet_length(NEW.title) + octet_length(NEW.description);
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        IF OLD.deleted_at IS NULL THEN
            v_count := v_count - 1;
            v_bytes := v_bytes - (octet_length(OLD.title) + octet_length(OLD.description));
        END IF;
    END IF;
    PERFORM core.apply_quota_delta(COALESCE(NEW.tenant_id, OLD.tenant_id), 'tasks', v_count, v_bytes);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER count_task_quota
    AFTER INSERT OR DELETE OR UPDATE OF deleted_at, title, description ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.count_task_quota();

-- Row trigger on core.memberships: each member is one slot of 'members' (an invitation
-- takes its slot when it is accepted).
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.count_member_quota()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM core.apply_quota_delta(NEW.tenant_id, 'members', 1, 0);
    ELSE
        PERFORM core.apply_quota_delta(OLD.tenant_id, 'members', -1, 0);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER count_member_quota
    AFTER INSERT OR DELETE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.count_member_quota();

-- Row trigger on core.api_keys: a key not revoked is one slot of 'api_keys' (expired
-- keys too, until revoked: expiry is a time, not a write). Creating a key needs the
-- plan feature 'api_keys' (TQ002). Rotation makes the new key before the old one
-- stops, so it needs a free slot.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.count_api_key_quota()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM core.assert_plan_feature(NEW.tenant_id, 'api_keys');
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.revoked_at IS NULL THEN
            v_count := 1;
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        IF OLD.revoked_at IS NULL THEN
            v_count := v_count - 1;
        END IF;
    END IF;
    PERFORM core.apply_quota_delta(COALESCE(NEW.tenant_id, OLD.tenant_id), 'api_keys', v_count, 0);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER count_api_key_quota
    AFTER INSERT OR DELETE OR UPDATE OF revoked_at ON core.api_keys
    FOR EACH ROW EXECUTE FUNCTION core.count_api_key_quota();

----------------------------------------------------------------------------------------
-- restore: a soft-deleted project or task comes back, taking its slot again
----------------------------------------------------------------------------------------

-- Restore a soft-deleted project with the tasks its deletion took along (those deleted
-- at the same instant). Over the 'projects' or 'tasks' limit: TQ001, nothing restored;
-- a live project of the same name: 23505 projects_live_name_key. A live project is
-- returned unchanged.
CREATE OR REPLACE FUNCTION api.restore_project(p_tenant_id uuid, p_project_id uuid)
RETURNS core.projects
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_project core.projects;
    v_deleted_at timestamptz;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    SELECT * INTO v_project FROM core.projects
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('project', p_project_id);
    END IF;
    IF v_project.deleted_at IS NULL THEN
        RETURN v_project;
    END IF;
    v_deleted_at := v_project.deleted_at;
    UPDATE core.projects SET deleted_at = NULL
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id
    RETURNING * INTO v_project;
    UPDATE core.tasks SET deleted_at = NULL
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at = v_deleted_at;
    RETURN v_project;
EXCEPTION WHEN unique_violation THEN
    PERFORM core.raise_duplicate_project_name(v_project.name);
END
$$;

-- Restore a soft-deleted task (its project must be live: TN010; over the limit: TQ001).
-- A live task is returned unchanged.
CREATE OR REPLACE FUNCTION api.restore_task(p_tenant_id uuid, p_task_id uuid)
RETURNS core.tasks
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_task core.tasks;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    SELECT * INTO v_task FROM core.tasks WHERE tenant_id = p_tenant_id AND task_id = p_task_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('task', p_task_id);
    END IF;
    IF v_task.deleted_at IS NULL THEN
        RETURN v_task;
    END IF;
    UPDATE core.tasks SET deleted_at = NULL
     WHERE tenant_id = p_tenant_id AND task_id = p_task_id
    RETURNING * INTO v_task;
    RETURN v_task;
END
$$;

----------------------------------------------------------------------------------------
-- metered resources: usage per billing period, reservations
----------------------------------------------------------------------------------------

-- Add p_used to a metered counter's usage and p_reserved to its reservations, in the
-- current billing period (a counter still on an earlier period starts again from 0).
-- With p_check, only within the limit: used + reserved + the increase <= max_value,
-- unless the plan bills overage. Returns whether the counter moved.
CREATE OR REPLACE FUNCTION core.meter(
    p_tenant_id uuid, p_resource text, p_used numeric, p_reserved numeric, p_check boolean
)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_period timestamptz := core.billing_period_start(p_tenant_id, now());
BEGIN
    -- the period is a plain value (docs/citus.md, fact 14)
    UPDATE core.quota_counters SET
        used = CASE WHEN period_start = v_period THEN used ELSE 0 END + p_used,
        reserved = GREATEST(reserved + p_reserved, 0),
        period_start = v_period
     WHERE tenant_id = p_tenant_id AND resource = p_resource AND period_start IS NOT NULL
       AND (NOT p_check OR overage = 'bill' OR max_value IS NULL
            OR CASE WHEN period_start = v_period THEN used ELSE 0 END + reserved + p_used + p_reserved <= max_value);
    RETURN FOUND;
END
$$;

-- Raise 22023 (COLUMN 'resource') unless p_resource is a metered resource.
CREATE OR REPLACE FUNCTION core.assert_metered_resource(p_resource text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM core.quota_resources WHERE resource = p_resource AND kind = 'metered') THEN
        RAISE EXCEPTION '% is not a metered resource', p_resource USING
            ERRCODE = '22023', COLUMN = 'resource',
            HINT = 'GET /v1/quotas lists the metered resources.';
    END IF;
END
$$;

-- Measured usage of a metric, added to the current period (the usage ingest calls it
-- for each metric): refused with TQ001 when it would pass the limit and the plan blocks
-- overage; billed beyond the limit when the plan bills it. A metric without a metered
-- quota is not counted here. With p_block false the usage is recorded even beyond a
-- blocking limit: for what has already happened and cannot be refused any more (the API
-- calls flushed from Redis, ops.record_api_calls); the tenant then shows over_limit.
CREATE OR REPLACE FUNCTION core.consume_metered(
    p_tenant_id uuid, p_resource text, p_quantity numeric, p_block boolean DEFAULT true
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_used numeric;
    v_limit numeric;
BEGIN
    IF p_quantity IS NULL OR p_quantity < 0 THEN
        RAISE EXCEPTION 'a quantity is zero or more' USING ERRCODE = '22023', COLUMN = 'quantity';
    END IF;
    IF p_quantity = 0 OR NOT EXISTS (SELECT 1 FROM core.quota_resources WHERE resource = p_resource AND kind = 'metered') THEN
        RETURN;
    END IF;
    IF NOT core.meter(p_tenant_id, p_resource, p_quantity, 0, COALESCE(p_block, true)) THEN
        PERFORM core.raise_quota_refusal(p_tenant_id, p_resource, p_quantity);
    END IF;
    -- usage that reached the warning share or the limit is an event (510_outbox.sql); the
    -- counter is this period's after core.meter, so before = used - p_quantity
    SELECT c.used, c.max_value INTO v_used, v_limit FROM core.quota_counters AS c
     WHERE c.tenant_id = p_tenant_id AND c.resource = p_resource;
    IF v_limit IS NOT NULL THEN
        PERFORM core.note_quota_change(p_tenant_id, p_resource, v_used - p_quantity, v_used, v_limit);
    END IF;
END
$$;

-- Reserve p_units of a metered resource before doing work, for p_ttl (1 second to 1
-- day). Idempotent by p_key: the same key returns the same reservation (another
-- resource or amount under that key: TQ003). Over the limit with overage blocked: TQ001.
CREATE OR REPLACE FUNCTION api.reserve_quota(
    p_tenant_id uuid, p_key text, p_resource text, p_units numeric, p_ttl interval DEFAULT '15 minutes'
)
RETURNS core.quota_reservations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_reservation core.quota_reservations;
    v_expires_at timestamptz;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'usage:write');
    IF p_key IS NULL OR length(p_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'a reservation key is 1 to 255 characters' USING ERRCODE = '22023', COLUMN = 'key';
    END IF;
    PERFORM core.assert_metered_resource(p_resource);
    IF p_units IS NULL OR p_units <= 0 THEN
        RAISE EXCEPTION 'units must be more than 0' USING ERRCODE = '22023', COLUMN = 'units';
    END IF;
    IF p_ttl IS NULL OR p_ttl < interval '1 second' OR p_ttl > interval '1 day' THEN
        RAISE EXCEPTION 'a reservation lasts 1 second to 1 day' USING ERRCODE = '22023', COLUMN = 'ttl_seconds';
    END IF;
    v_expires_at := now() + p_ttl;
    INSERT INTO core.quota_reservations (tenant_id, reservation_key, resource, units, expires_at)
    VALUES (p_tenant_id, p_key, p_resource, p_units, v_expires_at)
    ON CONFLICT (tenant_id, reservation_key) DO NOTHING
    RETURNING * INTO v_reservation;
    IF NOT FOUND THEN
        SELECT * INTO v_reservation FROM core.quota_reservations
         WHERE tenant_id = p_tenant_id AND reservation_key = p_key;
        IF v_reservation.resource <> p_resource OR v_reservation.units <> p_units THEN
            RAISE EXCEPTION 'reservation % is for % %', p_key, v_reservation.units, v_reservation.resource USING
                ERRCODE = 'TQ003',
                HINT = 'A reservation key names one reservation: use a new key for another.';
        END IF;
        RETURN v_reservation;
    END IF;
    IF NOT core.meter(p_tenant_id, p_resource, 0, p_units, true) THEN
        PERFORM core.raise_quota_refusal(p_tenant_id, p_resource, p_units);
    END IF;
    RETURN v_reservation;
END
$$;

-- Confirm a reservation with the units really used: they count towards the period
-- (even beyond the reservation or the limit: the work is done), the held units are
-- released. Idempotent (the same amount again returns the reservation; another amount:
-- TQ003). A released reservation cannot be confirmed (TQ004); an expired one can (its
-- hold is gone, its usage still counts).
CREATE OR REPLACE FUNCTION api.confirm_reservation(p_tenant_id uuid, p_key text, p_actual_units numeric)
RETURNS core.quota_reservations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_reservation core.quota_reservations;
    v_release numeric := 0;
    v_now timestamptz := now();
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'usage:write');
    IF p_actual_units IS NULL OR p_actual_units < 0 THEN
        RAISE EXCEPTION 'actual units are 0 or more' USING ERRCODE = '22023', COLUMN = 'actual_units';
    END IF;
    SELECT * INTO v_reservation FROM core.quota_reservations
     WHERE tenant_id = p_tenant_id AND reservation_key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('reservation', p_key);
    END IF;
    IF v_reservation.status = 'confirmed' THEN
        IF v_reservation.actual_units <> p_actual_units THEN
            RAISE EXCEPTION 'reservation % was confirmed with % units', p_key, v_reservation.actual_units USING
                ERRCODE = 'TQ003';
        END IF;
        RETURN v_reservation;
    ELSIF v_reservation.status = 'released' THEN
        RAISE EXCEPTION 'reservation % was released', p_key USING ERRCODE = 'TQ004';
    ELSIF v_reservation.status = 'held' THEN
        v_release := v_reservation.units;
    END IF;
    UPDATE core.quota_reservations SET status = 'confirmed', actual_units = p_actual_units, settled_at = v_now
     WHERE tenant_id = p_tenant_id AND reservation_key = p_key
    RETURNING * INTO v_reservation;
    PERFORM core.meter(p_tenant_id, v_reservation.resource, p_actual_units, -v_release, false);
    RETURN v_reservation;
END
$$;

-- Release a held reservation: its units are free again. Idempotent (released or
-- expired: returned unchanged); a confirmed one cannot be released (TQ004).
CREATE OR REPLACE FUNCTION api.release_reservation(p_tenant_id uuid, p_key text)
RETURNS core.quota_reservations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_reservation core.quota_reservations;
    v_now timestamptz := now();
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'usage:write');
    SELECT * INTO v_reservation FROM core.quota_reservations
     WHERE tenant_id = p_tenant_id AND reservation_key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('reservation', p_key);
    END IF;
    IF v_reservation.status = 'confirmed' THEN
        RAISE EXCEPTION 'reservation % was confirmed', p_key USING ERRCODE = 'TQ004';
    ELSIF v_reservation.status <> 'held' THEN
        RETURN v_reservation;
    END IF;
    UPDATE core.quota_reservations SET status = 'released', settled_at = v_now
     WHERE tenant_id = p_tenant_id AND reservation_key = p_key
    RETURNING * INTO v_reservation;
    PERFORM core.meter(p_tenant_id, v_reservation.resource, 0, -v_reservation.units, false);
    RETURN v_reservation;
END
$$;

-- For the worker (all tenants): expire the held reservations past their deadline and
-- free their units; returns how many. Safe to run concurrently with confirm/release:
-- the UPDATE takes only rows still held.
CREATE OR REPLACE FUNCTION ops.expire_quota_reservations()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_expired record;
    v_count integer := 0;
BEGIN
    FOR v_expired IN
        UPDATE core.quota_reservations SET status = 'expired', settled_at = v_now
         WHERE status = 'held' AND expires_at <= v_now
        RETURNING tenant_id, resource, units
    LOOP
        UPDATE core.quota_counters SET reserved = GREATEST(reserved - v_expired.units, 0)
         WHERE tenant_id = v_expired.tenant_id AND resource = v_expired.resource;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

----------------------------------------------------------------------------------------
-- reconciliation
----------------------------------------------------------------------------------------

-- The tenants whose counters may have drifted: an unlocked, set-based recount (each
-- part groups by tenant_id, which Citus runs on the shards) that differs from the
-- counters, and tenants missing counter rows. Candidates only: a write in flight can
-- make a tenant look drifted, so ops.reconcile_quotas recounts each one under its
-- counters' locks. This keeps a run over every tenant cheap (one pass, no locks) and
-- its transaction short (only the candidates are locked).
CREATE OR REPLACE FUNCTION core.quota_drift_candidates()
RETURNS SETOF uuid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH counted AS (
        SELECT tenant_id, 'projects'::text AS resource, count(*)::numeric AS used
          FROM core.projects WHERE deleted_at IS NULL GROUP BY tenant_id
        UNION ALL
        SELECT tenant_id, 'tasks', count(*) FROM core.tasks WHERE deleted_at IS NULL GROUP BY tenant_id
        UNION ALL
        SELECT tenant_id, 'members', count(*) FROM core.memberships GROUP BY tenant_id
        UNION ALL
        SELECT tenant_id, 'api_keys', count(*) FROM core.api_keys WHERE revoked_at IS NULL GROUP BY tenant_id
        UNION ALL
        SELECT tenant_id, 'storage_bytes', sum(octet_length(name) + octet_length(description))
          FROM core.projects WHERE deleted_at IS NULL GROUP BY tenant_id
        UNION ALL
        SELECT tenant_id, 'storage_bytes', sum(octet_length(title) + octet_length(description))
          FROM core.tasks WHERE deleted_at IS NULL GROUP BY tenant_id
    ), real AS (
        SELECT tenant_id, resource, sum(used) AS used FROM counted GROUP BY tenant_id, resource
    ), held AS (
        SELECT tenant_id, resource, sum(units) AS reserved
          FROM core.quota_reservations WHERE status = 'held' GROUP BY tenant_id, resource
    ), rows_per_tenant AS (
        SELECT tenant_id, count(*) AS n FROM core.quota_counters GROUP BY tenant_id
    )
    SELECT c.tenant_id
      FROM core.quota_counters AS c
      JOIN core.quota_resources AS r ON r.resource = c.resource
      LEFT JOIN real ON real.tenant_id = c.tenant_id AND real.resource = c.resource
      LEFT JOIN held ON held.tenant_id = c.tenant_id AND held.resource = c.resource
     WHERE (r.kind = 'counted' AND c.used IS DISTINCT FROM COALESCE(real.used, 0))
        OR (r.kind = 'metered' AND c.reserved IS DISTINCT FROM COALESCE(held.reserved, 0))
    UNION
    SELECT t.tenant_id
      FROM core.tenants AS t
      LEFT JOIN rows_per_tenant AS k ON k.tenant_id = t.tenant_id
     WHERE COALESCE(k.n, 0) < (SELECT count(*) FROM core.quota_resources)
$$;

-- For the worker: recount the counted resources (and the metered ones' held units) of
-- one tenant, or of all that look drifted (core.quota_drift_candidates), from the real
-- rows; repair what drifted and return it
-- (resource '<metered>.reserved' for held units; was NULL: a missing counter created).
-- Each counter row is locked before its count, so a concurrent write either committed
-- first (and is counted) or moves the repaired value after.
CREATE OR REPLACE FUNCTION ops.reconcile_quotas(p_tenant_id uuid DEFAULT NULL)
RETURNS TABLE (tenant_id uuid, resource text, was numeric, now numeric)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_tenants uuid[];
    v_tenant uuid;
    v_counter core.quota_counters;
    v_kind text;
    v_real numeric;
    v_created text[];
BEGIN
    IF p_tenant_id IS NULL THEN  -- every tenant: only those that look drifted are locked and recounted
        SELECT array_agg(d.candidate ORDER BY d.candidate) INTO v_tenants
          FROM core.quota_drift_candidates() AS d (candidate);
    ELSE
        v_tenants := ARRAY[p_tenant_id];
    END IF;
    FOREACH v_tenant IN ARRAY COALESCE(v_tenants, '{}') LOOP
        v_created := core.create_quota_counters(v_tenant);
        FOR v_counter IN
            SELECT c.* FROM core.quota_counters AS c
             WHERE c.tenant_id = v_tenant ORDER BY c.resource
        LOOP
            SELECT r.kind INTO v_kind FROM core.quota_resources AS r WHERE r.resource = v_counter.resource;
            -- lock, then count: the count's snapshot is taken after the lock is held
            SELECT c.* INTO v_counter FROM core.quota_counters AS c
             WHERE c.tenant_id = v_tenant AND c.resource = v_counter.resource FOR UPDATE;
            IF v_counter.resource = ANY (v_created) THEN
                tenant_id := v_tenant; resource := v_counter.resource; was := NULL; now := v_counter.used;
                RETURN NEXT;
            ELSIF v_kind = 'counted' THEN
                v_real := core.count_quota_usage(v_tenant, v_counter.resource);
                IF v_real IS DISTINCT FROM v_counter.used THEN
                    UPDATE core.quota_counters AS c SET used = v_real
                     WHERE c.tenant_id = v_tenant AND c.resource = v_counter.resource;
                    tenant_id := v_tenant; resource := v_counter.resource; was := v_counter.used; now := v_real;
                    RETURN NEXT;
                END IF;
            ELSE
                SELECT COALESCE(sum(q.units), 0) INTO v_real FROM core.quota_reservations AS q
                 WHERE q.tenant_id = v_tenant AND q.resource = v_counter.resource AND q.status = 'held';
                IF v_real IS DISTINCT FROM v_counter.reserved THEN
                    UPDATE core.quota_counters AS c SET reserved = v_real
                     WHERE c.tenant_id = v_tenant AND c.resource = v_counter.resource;
                    tenant_id := v_tenant; resource := v_counter.resource || '.reserved';
                    was := v_counter.reserved; now := v_real;
                    RETURN NEXT;
                END IF;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

----------------------------------------------------------------------------------------
-- reading quotas
----------------------------------------------------------------------------------------

-- A tenant's quotas: plan, features, and per resource the usage (metered: this
-- period's), held units, limit, remaining, whether it is at the warning threshold and
-- whether it is over its limit (after a downgrade, or billed overage).
CREATE OR REPLACE FUNCTION core.quota_report(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_plan core.plans;
    v_period timestamptz := core.billing_period_start(p_tenant_id, now());
    v_period_end timestamptz := core.billing_period_end(p_tenant_id, core.billing_period_start(p_tenant_id, now()));
    v_items jsonb;
BEGIN
    SELECT p.* INTO v_plan
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    SELECT jsonb_agg(jsonb_build_object(
               'resource', q.resource, 'kind', q.kind, 'unit', q.unit,
               'used', q.used, 'reserved', q.reserved, 'limit', q.max_value,
               'remaining', CASE WHEN q.max_value IS NOT NULL THEN GREATEST(q.max_value - q.used - q.reserved, 0) END,
               'warning', q.max_value IS NOT NULL AND q.used + q.reserved >= q.max_value * q.warn_at_percent / 100.0,
               'warn_at_percent', q.warn_at_percent,
               'over_limit', q.max_value IS NOT NULL AND q.used > q.max_value,
               'source', CASE WHEN q.overridden THEN 'override' ELSE 'plan' END,
               'overage', CASE WHEN q.kind = 'metered' THEN q.overage END,
               'period_start', CASE WHEN q.kind = 'metered' THEN v_period END,
               'period_end', CASE WHEN q.kind = 'metered' THEN v_period_end END
           ) ORDER BY q.kind, q.resource)
      INTO v_items
      FROM (SELECT c.resource, r.kind, r.unit, r.warn_at_percent, c.max_value, c.overage, c.reserved,
                   CASE WHEN r.kind = 'metered' AND c.period_start IS DISTINCT FROM v_period THEN 0
                        ELSE c.used END AS used,
                   o.tenant_id IS NOT NULL AS overridden
              FROM core.quota_counters AS c
              JOIN core.quota_resources AS r ON r.resource = c.resource
              LEFT JOIN core.quota_overrides AS o ON o.tenant_id = c.tenant_id AND o.resource = c.resource
             WHERE c.tenant_id = p_tenant_id) AS q;
    RETURN jsonb_build_object(
        'plan', v_plan.plan_id, 'plan_name', v_plan.name,
        'features', to_jsonb(v_plan.features),
        'resources', COALESCE(v_items, '[]'));
END
$$;

-- The calling tenant's quotas (core.quota_report), for any member.
CREATE OR REPLACE FUNCTION api.get_quotas(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'tenant:read');
    RETURN core.quota_report(p_tenant_id);
END
$$;

----------------------------------------------------------------------------------------
-- platform administration: plan changes and overrides (recorded like every admin.*
-- action, 300_admin.sql)
----------------------------------------------------------------------------------------

-- Record an admin action with what it was about.
CREATE OR REPLACE FUNCTION core.record_admin_action(p_tenant_id uuid, p_action text, p_details jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO core.platform_admin_actions (tenant_id, admin_user_id, action, request_id, details)
    VALUES (p_tenant_id, core.current_actor_id(), p_action, core.current_request_id(), p_details)
$$;

-- Put a tenant on another plan. Its limits change at once (trigger refresh_quota_limits).
-- A downgrade below the current usage is allowed and deletes nothing: the tenant is
-- over quota and creates of that resource are refused until it is under the limit.
CREATE OR REPLACE FUNCTION admin.set_tenant_plan(p_tenant_id uuid, p_plan_id text)
RETURNS core.tenants
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    PERFORM core.assert_platform_admin();
    UPDATE core.tenants SET plan_id = p_plan_id WHERE tenant_id = p_tenant_id
    RETURNING * INTO v_tenant;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('tenant', p_tenant_id);
    END IF;
    PERFORM core.record_admin_action(p_tenant_id, 'set_plan', jsonb_build_object('plan', p_plan_id));
    RETURN v_tenant;
END
$$;

-- Override a tenant's limit for one resource (p_max_value NULL: unlimited); the same
-- downgrade rule as a plan change. Returns the counter with the new limit.
CREATE OR REPLACE FUNCTION admin.set_quota_override(p_tenant_id uuid, p_resource text, p_max_value numeric)
RETURNS core.quota_counters
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_counter core.quota_counters;
    v_now timestamptz := now();
BEGIN
    PERFORM core.assert_platform_admin();
    IF NOT EXISTS (SELECT 1 FROM core.tenants WHERE tenant_id = p_tenant_id) THEN
        PERFORM core.raise_not_found('tenant', p_tenant_id);
    END IF;
    IF p_max_value < 0 THEN
        RAISE EXCEPTION 'a limit is 0 or more (null: unlimited)' USING ERRCODE = '22023', COLUMN = 'limit';
    END IF;
    INSERT INTO core.quota_overrides (tenant_id, resource, max_value, set_by, set_at)
    VALUES (p_tenant_id, p_resource, p_max_value, core.current_actor_id(), v_now)
    ON CONFLICT (tenant_id, resource) DO UPDATE
        SET max_value = EXCLUDED.max_value, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at;
    PERFORM core.refresh_quota_limits(p_tenant_id);
    PERFORM core.record_admin_action(p_tenant_id, 'set_quota',
                                     jsonb_build_object('resource', p_resource, 'limit', p_max_value));
    SELECT * INTO v_counter FROM core.quota_counters WHERE tenant_id = p_tenant_id AND resource = p_resource;
    RETURN v_counter;
END
$$;

-- Remove a tenant's override: the plan's limit applies again. Returns the counter.
CREATE OR REPLACE FUNCTION admin.clear_quota_override(p_tenant_id uuid, p_resource text)
RETURNS core.quota_counters
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_counter core.quota_counters;
BEGIN
    PERFORM core.assert_platform_admin();
    SELECT * INTO v_counter FROM core.quota_counters WHERE tenant_id = p_tenant_id AND resource = p_resource;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('quota', p_resource);
    END IF;
    DELETE FROM core.quota_overrides WHERE tenant_id = p_tenant_id AND resource = p_resource;
    PERFORM core.refresh_quota_limits(p_tenant_id);
    PERFORM core.record_admin_action(p_tenant_id, 'clear_quota', jsonb_build_object('resource', p_resource));
    SELECT * INTO v_counter FROM core.quota_counters WHERE tenant_id = p_tenant_id AND resource = p_resource;
    RETURN v_counter;
END
$$;

-- A tenant's quotas as its members see them (core.quota_report).
CREATE OR REPLACE FUNCTION admin.get_tenant_quotas(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_platform_admin();
    IF NOT EXISTS (SELECT 1 FROM core.tenants WHERE tenant_id = p_tenant_id) THEN
        PERFORM core.raise_not_found('tenant', p_tenant_id);
    END IF;
    RETURN core.quota_report(p_tenant_id);
END
$$;
