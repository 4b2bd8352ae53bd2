-- core.audit_log: a tenant reads only its own audit trail, and records only its own
-- application events (core.audit_event with the caller's rights); row changes are
-- recorded by the definer trigger core.audit_row_change. Nobody updates, deletes or
-- truncates it (sql/repeatable/500_audit.sql): no policy for UPDATE or DELETE, and the
-- privileges below are revoked from every role, its owner included. This file runs
-- after 90_ownership.sql (name order), so the owner's own privileges are the ones
-- revoked; a superuser, who bypasses privileges, meets the TL001 triggers.
ALTER TABLE core.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.audit_log FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.audit_log');

CREATE POLICY "tenants read their own audit trail" ON core.audit_log
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants record audit events only for themselves" ON core.audit_log
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

-- The owner keeps DELETE for the erase hook only (core.refuse_audit_change lets a
-- DELETE through only for the tenant being erased); UPDATE and TRUNCATE nobody has,
-- on the table and on each monthly partition (which has privileges of its own).
REVOKE UPDATE, TRUNCATE ON core.audit_log, core.audit_seals FROM PUBLIC, tenantry_owner;
DO $$
DECLARE
    v_name text;
BEGIN
    FOR v_name IN SELECT p.partition_name FROM core.audit_partitions() AS p LOOP
        PERFORM core.protect_audit_partition(v_name::regclass);
    END LOOP;
END
$$;
