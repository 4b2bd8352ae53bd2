-- Tenant lifecycle (issue 14): the rule for erasing a tenant for good. `tenantry tenant
-- erase` (db/lifecycle.py) deletes every row of a tenant across all tables; the first
-- thing its transaction does is ask core.assert_tenant_erasable, which refuses (TN004)
-- a tenant that is not deleted, or was deleted within the grace period (saying when it
-- becomes erasable), or was erased already, and locks the tenant's row until the erase
-- commits. The tombstones the erase leaves are sql/versions/0014_lifecycle.up.sql's.
--
-- Only the database owner (the operator's connection) calls it: no application role
-- has EXECUTE (policies/10_grants.sql revokes it from PUBLIC) or could delete the rows.

----------------------------------------------------------------------------------------
-- erasing a tenant
----------------------------------------------------------------------------------------

-- Refuse to erase p_tenant_id unless it is deleted and was deleted longer ago than
-- p_grace (the interval is added in UTC, so a day is a calendar day whatever the
-- session's time zone). Returns the tenant's row, locked FOR UPDATE: until the erase
-- commits, a concurrent status change (a platform administrator's) waits for it and
-- then finds no row, and so does any insert under the tenant (a tenant table's foreign
-- key takes a KEY SHARE lock of this row); a second erase waits, then is told the
-- tenant was erased (TN004). Unknown, never existed: P0002, as every lookup.
CREATE OR REPLACE FUNCTION core.assert_tenant_erasable(p_tenant_id uuid, p_grace interval)
RETURNS core.tenants
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
    v_tomb core.tenant_tombstones;
    v_erasable_at timestamptz;
BEGIN
    IF p_grace IS NULL OR p_grace < interval '0' THEN
        RAISE EXCEPTION 'the grace period is 0 days or more, not %', COALESCE(p_grace::text, 'NULL') USING
            ERRCODE = '22023', COLUMN = 'grace';
    END IF;
    SELECT * INTO v_tenant FROM core.tenants WHERE tenant_id = p_tenant_id FOR UPDATE;
    IF NOT FOUND THEN
        SELECT * INTO v_tomb FROM core.tenant_tombstones WHERE erased_tenant_id = p_tenant_id;
        IF FOUND THEN
            RAISE EXCEPTION 'tenant % was erased at % by %: nothing is left to erase', p_tenant_id,
                            to_char(v_tomb.erased_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                            v_tomb.erased_by USING
                ERRCODE = 'TN004';
        END IF;
        PERFORM core.raise_not_found('tenant', p_tenant_id);
    END IF;
    IF v_tenant.status <> 'deleted' THEN
        RAISE EXCEPTION 'tenant % is %: only a deleted tenant can be erased (deleted by a platform administrator, then the grace period)',
                        p_tenant_id, v_tenant.status USING
            ERRCODE = 'TN004';
    END IF;
    v_erasable_at := ((v_tenant.deleted_at AT TIME ZONE 'UTC') + p_grace) AT TIME ZONE 'UTC';
    IF v_erasable_at > now() THEN
        RAISE EXCEPTION 'tenant % was deleted at %, within the grace period (%): it can be erased from %',
                        p_tenant_id, to_char(v_tenant.deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
                        p_grace, to_char(v_erasable_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') USING
            ERRCODE = 'TN004';
    END IF;
    RETURN v_tenant;
END
$$;
