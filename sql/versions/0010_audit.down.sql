-- 0010 audit, undone: the audit triggers that 500_audit.sql attaches to every tenant
-- table go first (so the schema left at 0009 works without the audit functions), then
-- the tables (with every partition) and the plans' retention column, and the core
-- functions of 500_audit.sql (the api and ops ones are dropped by the interface reset).
DO $$
DECLARE
    v_trigger record;
BEGIN
    FOR v_trigger IN
        SELECT t.tgname, t.tgrelid::regclass AS rel
          FROM pg_catalog.pg_trigger AS t
          JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = 'core' AND t.tgname IN ('audit_row_change', 'audit_admin_action') AND NOT t.tgisinternal AND NOT c.relispartition
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_trigger.tgname, v_trigger.rel);
    END LOOP;
END
$$;
DROP TABLE core.audit_seals CASCADE;
DROP TABLE core.audit_heads CASCADE;
DROP TABLE core.audit_log CASCADE;
ALTER TABLE core.plans DROP COLUMN audit_retention_days;
DROP FUNCTION IF EXISTS core.audit_row_change() CASCADE;
DROP FUNCTION IF EXISTS core.stamp_audit_row() CASCADE;
DROP FUNCTION IF EXISTS core.lock_audit_head() CASCADE;
DROP FUNCTION IF EXISTS core.refuse_audit_change() CASCADE;
DROP FUNCTION IF EXISTS core.audit_event(uuid, text, jsonb, uuid, text);
DROP FUNCTION IF EXISTS core.audit_redacts(text);
DROP FUNCTION IF EXISTS core.audit_excluded_tables();
DROP FUNCTION IF EXISTS core.audit_lock_key(uuid);
DROP FUNCTION IF EXISTS core.audit_partitions();
DROP FUNCTION IF EXISTS core.seal_audit_tenant(uuid, integer, integer);
DROP FUNCTION IF EXISTS core.verify_audit(uuid);
DROP FUNCTION IF EXISTS core.audit_admin_action() CASCADE;
DROP FUNCTION IF EXISTS core.audit_ignored_columns();
DROP FUNCTION IF EXISTS core.audit_seal_hash(bytea, uuid, bigint, integer, bytea);
DROP FUNCTION IF EXISTS core.audit_canonical(uuid, bigint, bigint, timestamptz, uuid, text, text, inet, text, text, jsonb, jsonb, jsonb);
DROP FUNCTION IF EXISTS core.audit_retention();
DROP FUNCTION IF EXISTS core.protect_audit_partition(regclass);
DROP FUNCTION IF EXISTS core.create_audit_partitions(interval);
DROP FUNCTION IF EXISTS core.current_client_ip();
-- the authentication hook goes back to doing nothing (140_sessions.sql's body)
CREATE OR REPLACE FUNCTION core.on_auth_event(p_event text, p_user_id uuid, p_tenant_id uuid, p_detail jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NULL;
END
$$;
