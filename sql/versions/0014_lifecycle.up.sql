-- 0014 lifecycle: what an erased tenant leaves behind. `tenantry tenant erase`
-- (db/lifecycle.py) deletes every row of a tenant from every tenant table, then records
-- here who erased it, when, and the anonymised billing totals of its closed months
-- (copied from core.invoice_lines, which are erased with the tenant: they hold its id
-- under a foreign key to core.tenants, so they cannot outlive it).
--
-- The column is erased_tenant_id (not tenant_id) because the tenant is gone: a global
-- record, a reference table on Citus, that RLS does not scope to a tenant.
CREATE TABLE core.tenant_tombstones (
    erased_tenant_id uuid PRIMARY KEY,
    erased_at        timestamptz NOT NULL DEFAULT now(),
    erased_by        text NOT NULL,
    deleted_at       timestamptz,
    plan_id          text,
    billing          jsonb NOT NULL DEFAULT '[]'::jsonb
);
COMMENT ON TABLE core.tenant_tombstones IS
    '@reference Erased tenants: who erased them, when, and anonymised billing totals per month.';
SELECT core.make_reference_table('core.tenant_tombstones');
