-- Tenants: creating a tenant with its globally unique slug, the limits of its plan, the
-- tenant's own record as its members see it, and the status rules every feature obeys:
-- an active tenant reads and writes; a suspended tenant reads but cannot write (TN001);
-- a deleted tenant can do neither (TN002). Status changes keep the status timestamps
-- right, and 'deleted' is final (TN003); platform administrators make them
-- (300_admin.sql).

----------------------------------------------------------------------------------------
-- status lookups and assertions
----------------------------------------------------------------------------------------

-- The status of a tenant (NULL if unknown or not visible). Invoker rights: the api role
-- sees its own tenant's row through RLS, which is the only tenant it acts for. (On
-- Citus, a definer-rights read after the caller's own writes in the same transaction
-- fails: "cannot perform query on placements that were modified in this transaction
-- by a different user"; docs/citus.md, fact 16.)
CREATE OR REPLACE FUNCTION core.tenant_status(p_tenant_id uuid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT status FROM core.tenants WHERE tenant_id = p_tenant_id $$;

-- Raise TN002 if the tenant is deleted and, for a write, TN001 if it is suspended.
CREATE OR REPLACE FUNCTION core.assert_tenant_allows(p_tenant_id uuid, p_write boolean)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status text := core.tenant_status(p_tenant_id);
BEGIN
    IF v_status = 'deleted' THEN
        RAISE EXCEPTION 'tenant is deleted' USING
            ERRCODE = 'TN002',
            DETAIL = 'A deleted tenant can neither read nor change its data.';
    ELSIF v_status = 'suspended' AND p_write THEN
        RAISE EXCEPTION 'tenant is suspended' USING
            ERRCODE = 'TN001',
            DETAIL = 'A suspended tenant can read its data but not change it.',
            HINT = 'Ask a platform administrator to reactivate the tenant.';
    END IF;
END
$$;

----------------------------------------------------------------------------------------
-- creation and plan
----------------------------------------------------------------------------------------

-- Create a tenant and its slug lookup (23505 on tenant_slugs_pkey if the slug is taken).
CREATE OR REPLACE FUNCTION core.create_tenant(p_slug text, p_name text, p_plan_id text)
RETURNS core.tenants
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    INSERT INTO core.tenants (slug, name, plan_id) VALUES (p_slug, p_name, COALESCE(p_plan_id, 'free'))
    RETURNING * INTO v_tenant;
    INSERT INTO core.tenant_slugs (slug, tenant_id) VALUES (v_tenant.slug, v_tenant.tenant_id);
    RETURN v_tenant;
EXCEPTION WHEN unique_violation THEN
    -- re-raised with a stable constraint name: on Citus the error names a shard
    RAISE EXCEPTION 'the slug "%" is taken', p_slug USING
        ERRCODE = '23505', CONSTRAINT = 'tenant_slugs_pkey', COLUMN = 'slug';
END
$$;

-- The API request rate the tenant's plan allows per minute (NULL: unlimited).
CREATE OR REPLACE FUNCTION core.plan_requests_per_minute(p_tenant_id uuid)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (p.limits ->> 'api_requests_per_minute')::integer
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id
$$;

----------------------------------------------------------------------------------------
-- the tenant's own record
----------------------------------------------------------------------------------------

-- The calling tenant, as its members may see it.
CREATE OR REPLACE FUNCTION api.get_tenant(p_tenant_id uuid)
RETURNS core.tenants
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'tenant:read');
    SELECT * INTO v_tenant FROM core.tenants WHERE tenant_id = p_tenant_id;
    RETURN v_tenant;
END
$$;

----------------------------------------------------------------------------------------
-- triggers
----------------------------------------------------------------------------------------

-- The status checks read core.tenants, so they cannot live in RLS policies
-- (docs/citus.md, fact 11): writes are refused by core.guard_tenant_writes, which each
-- feature's file attaches to its tenant tables, and reads by the api.* functions
-- through core.assert_tenant_context() (050_access.sql).

-- Row trigger on tenant tables: refuse writes of a suspended or deleted tenant.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.guard_tenant_writes()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- NEW is NULL for DELETE, OLD for INSERT
    PERFORM core.assert_tenant_allows(COALESCE(NEW.tenant_id, OLD.tenant_id), true);
    RETURN COALESCE(NEW, OLD);
END
$$;

-- Row trigger on core.tenants: 'deleted' is final, and the status timestamps follow
-- the status (the table's CHECK constraints hold them to it).
CREATE OR REPLACE FUNCTION core.track_tenant_status()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF OLD.status = 'deleted' THEN
        RAISE EXCEPTION 'a deleted tenant cannot change status' USING
            ERRCODE = 'TN003',
            DETAIL = format('Tenant %s was deleted at %s.', OLD.tenant_id, OLD.deleted_at);
    END IF;
    NEW.suspended_at := CASE WHEN NEW.status = 'suspended' THEN now() END;
    NEW.deleted_at := CASE WHEN NEW.status = 'deleted' THEN now() END;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER track_tenant_status
    BEFORE UPDATE OF status ON core.tenants
    FOR EACH ROW EXECUTE FUNCTION core.track_tenant_status();

-- stamp updated_at (040_timestamps.sql)
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.tenants
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();
