-- core.invoice_lines: a tenant reads its own invoice lines (api.list_invoices, api.get_invoice); only the worker's
-- definer function ops.close_billing_period writes them, and they never change.
ALTER TABLE core.invoice_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.invoice_lines FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.invoice_lines');

CREATE POLICY "tenants read their own invoice lines" ON core.invoice_lines
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());
