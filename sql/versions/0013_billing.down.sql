-- 0013 billing, undone: the billing tables go, with their rows (CASCADE: with the
-- repeatable functions on their row types). The triggers that 610_subscriptions.sql
-- attaches to core.tenants are dropped first, so the schema left at 0012 works
-- without the billing functions.
DROP TRIGGER IF EXISTS start_subscription ON core.tenants;
DROP TRIGGER IF EXISTS follow_tenant_plan ON core.tenants;
DROP FUNCTION IF EXISTS core.follow_tenant_plan();

DROP TABLE core.provider_events CASCADE;
DROP TABLE core.subscription_changes CASCADE;
DROP TABLE core.subscriptions CASCADE;
DROP TABLE core.billing_exports CASCADE;
DROP TABLE core.invoice_lines CASCADE;
DROP TABLE core.billing_periods CASCADE;
DROP TABLE core.prices CASCADE;
