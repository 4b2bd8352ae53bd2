-- Tenant status rules: an active tenant reads and writes; a suspended tenant reads but
-- cannot write (TN001); a deleted tenant can do neither (TN002). Status changes keep
-- the status timestamps right, and 'deleted' is final (TN003).
--
-- The checks read core.tenants, so they cannot live in RLS policies (architecture fact
-- 11): writes are refused by row triggers on every tenant table, reads by the api.*
-- functions through core.assert_tenant_context() (070_access.sql).

----------------------------------------------------------------------------------------
-- lookups and assertions
----------------------------------------------------------------------------------------

-- The status of a tenant (NULL if unknown or not visible). Invoker rights: the api role
-- sees its own tenant's row through RLS, which is the only tenant it acts for. (On
-- Citus, a definer-rights read after the caller's own writes in the same transaction
-- fails: "cannot perform query on placements that were modified in this transaction
-- by a different user".)
CREATE OR REPLACE FUNCTION core.tenant_status(p_tenant_id uuid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$ SELECT status FROM core.tenants WHERE tenant_id = p_tenant_id $$;

-- Raise TN002 if the tenant is deleted and, for a write, TN001 if it is suspended.
CREATE OR REPLACE FUNCTION core.assert_tenant_allows(p_tenant_id uuid, p_write boolean)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
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
-- triggers
----------------------------------------------------------------------------------------

-- Row trigger on tenant tables: refuse writes of a suspended or deleted tenant.
CREATE OR REPLACE FUNCTION core.guard_tenant_writes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    -- NEW is NULL for DELETE, OLD for INSERT
    PERFORM core.assert_tenant_allows(COALESCE(NEW.tenant_id, OLD.tenant_id), true);
    RETURN COALESCE(NEW, OLD);
END
$$;

CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.projects
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

-- Row trigger on core.tenants: 'deleted' is final, and the status timestamps follow
-- the status (the table's CHECK constraints hold them to it).
CREATE OR REPLACE FUNCTION core.track_tenant_status()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
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
