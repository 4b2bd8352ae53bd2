-- Revenue: what each tenant pays per month, the plan mix and the monthly recurring
-- revenue (MRR).
--
-- THE ONE PLACE that says what a tenant pays is analytics.tenant_mrr_rows() below: today
-- the list price of its plan (core.plans.price_cents) while it is active. When billing
-- has subscriptions and prices, change that function's body (same columns) and
-- analytics.tenant_mrr, analytics.plan_mix and analytics.mrr follow.
--
-- analytics.plan_mix is a materialized view: a small cross-tenant summary (one row per
-- plan and currency), rebuilt here on every migrate (one pass over core.tenants: cheap)
-- and refreshed CONCURRENTLY by ops.refresh_analytics (450_analytics.sql), so readers
-- never wait for a refresh. On Citus it lives on the coordinator, which is right for a
-- few rows (docs/citus.md, facts 5 and 20).

-- Every tenant with its plan, status and monthly amount (cents, in its currency).
CREATE OR REPLACE FUNCTION analytics.tenant_mrr_rows()
RETURNS TABLE (tenant_id uuid, plan_id text, status text, currency text, mrr_cents bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT t.tenant_id, t.plan_id, t.status, p.currency::text,
       CASE WHEN t.status = 'active' THEN p.price_cents ELSE 0 END::bigint
  FROM core.tenants AS t
  JOIN core.plans AS p ON p.plan_id = t.plan_id
$$;

CREATE OR REPLACE VIEW analytics.tenant_mrr AS
SELECT * FROM analytics.tenant_mrr_rows();

COMMENT ON VIEW analytics.tenant_mrr IS
    'Live: what each tenant pays per month. Today the list price of its plan while active (suspended and deleted tenants pay 0).';
COMMENT ON COLUMN analytics.tenant_mrr.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.tenant_mrr.plan_id IS 'Its plan.';
COMMENT ON COLUMN analytics.tenant_mrr.status IS 'Its status: active, suspended or deleted.';
COMMENT ON COLUMN analytics.tenant_mrr.currency IS 'The currency of the amount (ISO 4217).';
COMMENT ON COLUMN analytics.tenant_mrr.mrr_cents IS 'Monthly recurring revenue from the tenant, in cents.';

-- The plan catalog as analysts see it (no limits or features: those are in quota_pressure).
CREATE OR REPLACE FUNCTION analytics.plans_rows()
RETURNS TABLE (plan_id text, name text, price_cents integer, currency text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT p.plan_id, p.name, p.price_cents, p.currency::text FROM core.plans AS p
$$;

DROP MATERIALIZED VIEW IF EXISTS analytics.plan_mix;
CREATE MATERIALIZED VIEW analytics.plan_mix AS
SELECT p.plan_id, p.name AS plan_name, p.price_cents, COALESCE(m.currency, p.currency) AS currency,
       count(m.tenant_id) FILTER (WHERE m.status = 'active') AS active_tenants,
       count(m.tenant_id) FILTER (WHERE m.status = 'suspended') AS suspended_tenants,
       COALESCE(sum(m.mrr_cents), 0)::bigint AS mrr_cents,
       round(100.0 * count(m.tenant_id) FILTER (WHERE m.status = 'active')
             / NULLIF(sum(count(m.tenant_id) FILTER (WHERE m.status = 'active')) OVER (), 0), 1)
           AS share_of_active_percent,
       now() AS refreshed_at
  FROM analytics.plans_rows() AS p
  LEFT JOIN analytics.tenant_mrr_rows() AS m ON m.plan_id = p.plan_id AND m.status <> 'deleted'
 GROUP BY p.plan_id, p.name, p.price_cents, COALESCE(m.currency, p.currency);
-- REFRESH ... CONCURRENTLY needs a unique index on the materialized view
CREATE UNIQUE INDEX plan_mix_plan_currency_idx ON analytics.plan_mix (plan_id, currency);

COMMENT ON MATERIALIZED VIEW analytics.plan_mix IS
    'Refreshed by ops.refresh_analytics (every 15 min): per plan, its tenants (active, suspended) and MRR; deleted tenants are left out.';
COMMENT ON COLUMN analytics.plan_mix.plan_id IS 'The plan.';
COMMENT ON COLUMN analytics.plan_mix.plan_name IS 'The plan''s display name.';
COMMENT ON COLUMN analytics.plan_mix.price_cents IS 'The plan''s list price per month, in cents.';
COMMENT ON COLUMN analytics.plan_mix.currency IS 'The currency of price_cents and mrr_cents.';
COMMENT ON COLUMN analytics.plan_mix.active_tenants IS 'Active tenants on the plan.';
COMMENT ON COLUMN analytics.plan_mix.suspended_tenants IS 'Suspended tenants on the plan (they pay nothing).';
COMMENT ON COLUMN analytics.plan_mix.mrr_cents IS 'Monthly recurring revenue from the plan''s tenants, in cents (analytics.tenant_mrr).';
COMMENT ON COLUMN analytics.plan_mix.share_of_active_percent IS 'The plan''s share of all active tenants, in percent.';
COMMENT ON COLUMN analytics.plan_mix.refreshed_at IS 'When the materialized view was last refreshed.';

CREATE OR REPLACE VIEW analytics.mrr AS
SELECT x.currency, sum(x.mrr_cents)::bigint AS mrr_cents,
       sum(x.active_tenants)::bigint AS active_tenants,
       sum(x.active_tenants) FILTER (WHERE x.mrr_cents > 0)::bigint AS paying_tenants,
       (sum(x.mrr_cents) / NULLIF(sum(x.active_tenants) FILTER (WHERE x.mrr_cents > 0), 0))::bigint
           AS arpa_cents,
       max(x.refreshed_at) AS refreshed_at
  FROM analytics.plan_mix AS x
 GROUP BY x.currency;

COMMENT ON VIEW analytics.mrr IS
    'Monthly recurring revenue per currency, from analytics.plan_mix (as fresh as its last refresh).';
COMMENT ON COLUMN analytics.mrr.currency IS 'The currency.';
COMMENT ON COLUMN analytics.mrr.mrr_cents IS 'Monthly recurring revenue, in cents.';
COMMENT ON COLUMN analytics.mrr.active_tenants IS 'Active tenants (paying or on a free plan).';
COMMENT ON COLUMN analytics.mrr.paying_tenants IS 'Active tenants on a plan with a price.';
COMMENT ON COLUMN analytics.mrr.arpa_cents IS 'Average revenue per paying tenant (account), in cents.';
COMMENT ON COLUMN analytics.mrr.refreshed_at IS 'When analytics.plan_mix was last refreshed.';
