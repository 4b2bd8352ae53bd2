-- Billing: prices of metered usage, closing a calendar month into invoice lines, the
-- tenant's invoices and the current month's projected cost, and the export ledger the
-- exporter (jobs/billing_export.py) writes through. Tables: sql/versions/0013_billing.up.sql.
--
-- * A month is closed once (ops.close_billing_period): core.billing_periods gets its row
--   (the reference write first: docs/citus.md, fact 17), then one INSERT ... SELECT
--   turns the month's 'period' rollups into usage lines: a join of colocated tables on
--   tenant_id (core.usage_rollups, core.tenants, core.subscription_changes) with the
--   reference table core.prices, which Citus runs on each worker for its shards
--   (bench/billing_export.py shows the plan). The lines of a closed month never change.
-- * Late events: a closed month's rollups may still grow (the lateness window is 7
--   days). Closing a later month adds an adjustment line (usage_period = the earlier
--   month) for every tenant and metric whose rollup differs from what its lines billed
--   so far, priced as the month's own line was. So an export never changes: the next
--   one carries the difference.
-- * Amounts: billable = max(quantity - included, 0); per_unit: billable x unit_price;
--   per_package: started packages x unit_price; none: 0. Rounded to 6 decimals.
-- * Only the worker (ops.*) closes months and exports, across tenants; tenants read
--   their own lines through api.* with billing:read.

----------------------------------------------------------------------------------------
-- the clock, periods and amounts
----------------------------------------------------------------------------------------

-- The billing clock: now(). One function, so that a test (in a scratch database) can
-- move it forward to close the month it has just filled with events.
CREATE OR REPLACE FUNCTION core.billing_clock()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_catalog.now() $$;

-- The first instant (UTC) of the calendar month p_period (a date on its first day).
CREATE OR REPLACE FUNCTION core.month_start(p_period date)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT p_period::timestamp AT TIME ZONE 'UTC' $$;

-- Refuse anything but the first day of a month (22023, COLUMN period).
CREATE OR REPLACE FUNCTION core.assert_month(p_period date)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_period IS NULL OR p_period <> pg_catalog.date_trunc('month', p_period)::date THEN
        RAISE EXCEPTION 'a billing period is a calendar month (YYYY-MM), not %', p_period USING
            ERRCODE = '22023', COLUMN = 'period';
    END IF;
END
$$;

-- The amount for p_billable units under a price (see the file's header), 6 decimals.
CREATE OR REPLACE FUNCTION core.billing_amount(
    p_billable numeric, p_unit_price numeric, p_overage text, p_package_size numeric
)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.round(CASE p_overage
                                WHEN 'per_unit' THEN p_billable * p_unit_price
                                WHEN 'per_package' THEN pg_catalog.ceil(p_billable / p_package_size) * p_unit_price
                                ELSE 0
                            END, 6)
$$;

----------------------------------------------------------------------------------------
-- closing a month: usage lines, and adjustments for earlier months
----------------------------------------------------------------------------------------

-- Close the calendar month p_period once: its usage lines, and adjustment lines for the
-- closed months before it whose usage changed since (late events). Refuses a month
-- that has not ended (TB010). Returns whether this call closed it and the lines it
-- wrote (a month closed before: false, 0). Concurrent calls: the second waits for the
-- first's billing_periods row and then finds it.
CREATE OR REPLACE FUNCTION ops.close_billing_period(p_period date)
RETURNS TABLE (closed boolean, usage_lines integer, adjustment_lines integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_start timestamptz;
    v_end timestamptz;
    v_now timestamptz := core.billing_clock();
    v_earlier date;
    v_count integer;
BEGIN
    PERFORM core.assert_month(p_period);
    v_start := core.month_start(p_period);
    v_end := ((p_period::timestamp + interval '1 month') AT TIME ZONE 'UTC');
    IF v_end > v_now THEN
        RAISE EXCEPTION 'the billing period % has not ended yet', to_char(p_period, 'YYYY-MM') USING
            ERRCODE = 'TB010',
            DETAIL = format('It ends at %s.', v_end),
            HINT = 'Close and export a month after it has ended.';
    END IF;
    closed := false;
    usage_lines := 0;
    adjustment_lines := 0;
    -- the reference write first (docs/citus.md, fact 17); a month closed before: nothing
    INSERT INTO core.billing_periods (period, closed_at) VALUES (p_period, v_now)
    ON CONFLICT (period) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NEXT;
        RETURN;
    END IF;
    closed := true;

    -- usage lines: the month's rollup per tenant and priced metric, at the plan in force
    -- at the month's end (the latest plan change effective before it, else the tenant's
    -- plan). Colocated tables joined on tenant_id: pushed down to the workers.
    INSERT INTO core.invoice_lines AS l
        (tenant_id, period, usage_period, metric, plan_id, quantity, included, billable, unit_price, amount,
         currency, overage, package_size, created_at)
    SELECT r.tenant_id, p_period, p_period, r.metric, pr.plan_id, r.value, pr.included_units,
           GREATEST(r.value - pr.included_units, 0), pr.unit_price,
           core.billing_amount(GREATEST(r.value - pr.included_units, 0), pr.unit_price, pr.overage, pr.package_size),
           pr.currency, pr.overage, pr.package_size, v_now
      FROM core.usage_rollups AS r
      JOIN core.tenants AS t ON t.tenant_id = r.tenant_id
      LEFT JOIN (SELECT DISTINCT ON (c.tenant_id) c.tenant_id, c.to_plan
                   FROM core.subscription_changes AS c
                  WHERE c.to_plan IS NOT NULL AND c.effective_at < v_end
                  ORDER BY c.tenant_id, c.effective_at DESC, c.recorded_at DESC) AS pe
             ON pe.tenant_id = r.tenant_id
      JOIN core.prices AS pr ON pr.plan_id = COALESCE(pe.to_plan, t.plan_id) AND pr.metric = r.metric
     WHERE r.granularity = 'period' AND r.bucket_start = v_start
    ON CONFLICT (tenant_id, period, usage_period, metric) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    usage_lines := v_count;

    -- adjustments: the closed months of the lateness reach before this one (events are at
    -- most 7 days late; three months leave room for a close that ran late)
    FOR v_earlier IN
        SELECT b.period FROM core.billing_periods AS b
         WHERE b.period < p_period AND b.period >= (p_period - interval '3 months')::date
         ORDER BY b.period
    LOOP
        adjustment_lines := adjustment_lines + core.adjust_billing_period(p_period, v_earlier, v_now);
    END LOOP;
    RETURN NEXT;
END
$$;

-- Adjustment lines in month p_period for the closed month p_usage_period: per tenant and
-- metric, the month's rollup now minus what its lines billed so far (quantity, billable,
-- amount), priced as the month's own usage line (or, with none, at the plan in force at
-- that month's end). Returns the lines written.
CREATE OR REPLACE FUNCTION core.adjust_billing_period(p_period date, p_usage_period date, p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_start timestamptz := core.month_start(p_usage_period);
    v_end timestamptz := ((p_usage_period::timestamp + interval '1 month') AT TIME ZONE 'UTC');
    v_count integer;
BEGIN
    INSERT INTO core.invoice_lines AS l
        (tenant_id, period, usage_period, metric, plan_id, quantity, included, billable, unit_price, amount,
         currency, overage, package_size, created_at)
    SELECT x.tenant_id, p_period, p_usage_period, x.metric, x.plan_id, x.value - x.billed_quantity, x.included,
           GREATEST(x.value - x.included, 0) - x.billed_billable, x.unit_price,
           core.billing_amount(GREATEST(x.value - x.included, 0), x.unit_price, x.overage, x.package_size)
               - x.billed_amount,
           x.currency, x.overage, x.package_size, p_now
      FROM (SELECT r.tenant_id, r.metric, r.value,
                   COALESCE(b.quantity, 0) AS billed_quantity, COALESCE(b.billable, 0) AS billed_billable,
                   COALESCE(b.amount, 0) AS billed_amount,
                   COALESCE(u.plan_id, pr.plan_id) AS plan_id, COALESCE(u.included, pr.included_units) AS included,
                   COALESCE(u.unit_price, pr.unit_price) AS unit_price, COALESCE(u.currency, pr.currency) AS currency,
                   COALESCE(u.overage, pr.overage) AS overage, COALESCE(u.package_size, pr.package_size) AS package_size
              FROM core.usage_rollups AS r
              JOIN core.tenants AS t ON t.tenant_id = r.tenant_id
              LEFT JOIN core.invoice_lines AS u
                     ON u.tenant_id = r.tenant_id AND u.period = p_usage_period
                    AND u.usage_period = p_usage_period AND u.metric = r.metric
              LEFT JOIN (SELECT i.tenant_id, i.metric, sum(i.quantity) AS quantity, sum(i.billable) AS billable,
                                sum(i.amount) AS amount
                           FROM core.invoice_lines AS i
                          WHERE i.usage_period = p_usage_period
                          GROUP BY i.tenant_id, i.metric) AS b
                     ON b.tenant_id = r.tenant_id AND b.metric = r.metric
              LEFT JOIN (SELECT DISTINCT ON (c.tenant_id) c.tenant_id, c.to_plan
                           FROM core.subscription_changes AS c
                          WHERE c.to_plan IS NOT NULL AND c.effective_at < v_end
                          ORDER BY c.tenant_id, c.effective_at DESC, c.recorded_at DESC) AS pe
                     ON pe.tenant_id = r.tenant_id
              LEFT JOIN core.prices AS pr ON pr.plan_id = COALESCE(pe.to_plan, t.plan_id) AND pr.metric = r.metric
             WHERE r.granularity = 'period' AND r.bucket_start = v_start) AS x
     WHERE x.unit_price IS NOT NULL AND x.value <> x.billed_quantity
    ON CONFLICT (tenant_id, period, usage_period, metric) DO NOTHING;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

----------------------------------------------------------------------------------------
-- export: the lines of a closed month, and the ledger
----------------------------------------------------------------------------------------

-- The invoice lines of the closed month p_period (usage and adjustments), in a stable
-- order, for the exporter. Refuses a month not closed (TB010).
CREATE OR REPLACE FUNCTION ops.billing_export_lines(p_period date)
RETURNS TABLE (
    tenant_id uuid, tenant_slug text, period date, usage_period date, metric text, plan_id text,
    quantity numeric, included numeric, billable numeric, unit_price numeric, amount numeric, currency text
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_month(p_period);
    IF NOT EXISTS (SELECT 1 FROM core.billing_periods AS b WHERE b.period = p_period) THEN
        RAISE EXCEPTION 'the billing period % is not closed', to_char(p_period, 'YYYY-MM') USING
            ERRCODE = 'TB010',
            HINT = 'Close it first (ops.close_billing_period; the export does).';
    END IF;
    RETURN QUERY
        SELECT l.tenant_id, t.slug, l.period, l.usage_period, l.metric, l.plan_id, l.quantity, l.included,
               l.billable, l.unit_price, l.amount, l.currency::text
          FROM core.invoice_lines AS l
          JOIN core.tenants AS t ON t.tenant_id = l.tenant_id
         WHERE l.period = p_period
         ORDER BY l.tenant_id, l.usage_period, l.metric;
END
$$;

-- The ledger's newest entry for a period, format and destination (no row: never exported).
CREATE OR REPLACE FUNCTION ops.latest_billing_export(p_period date, p_format text, p_destination text)
RETURNS SETOF core.billing_exports
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM core.billing_exports
     WHERE period = p_period AND format = p_format AND destination = p_destination
     ORDER BY version DESC
     LIMIT 1
$$;

-- Record a written export file (after it was renamed into place). A concurrent exporter
-- that recorded the same version first makes this 23505 (billing_exports_pkey).
CREATE OR REPLACE FUNCTION ops.record_billing_export(
    p_period date, p_format text, p_destination text, p_version integer, p_file_name text,
    p_sha256 text, p_row_count integer, p_forced boolean
)
RETURNS core.billing_exports
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row core.billing_exports;
BEGIN
    INSERT INTO core.billing_exports (period, format, destination, version, file_name, sha256, row_count, forced)
    VALUES (p_period, p_format, p_destination, p_version, p_file_name, p_sha256, p_row_count, p_forced)
    RETURNING * INTO v_row;
    RETURN v_row;
END
$$;

----------------------------------------------------------------------------------------
-- the tenant's view: invoices and the current month
----------------------------------------------------------------------------------------

-- The tenant's invoices: one per closed month with lines, with totals per currency,
-- newest first.
CREATE OR REPLACE FUNCTION api.list_invoices(p_tenant_id uuid)
RETURNS TABLE (period date, lines integer, amount numeric, currency text, closed_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:read');
    RETURN QUERY
        SELECT l.period, count(*)::integer, sum(l.amount), l.currency::text, min(l.created_at)
          FROM core.invoice_lines AS l
         WHERE l.tenant_id = p_tenant_id
         GROUP BY l.period, l.currency
         ORDER BY l.period DESC, l.currency;
END
$$;

-- One invoice of the tenant: the lines of a closed month (P0002 when it has none).
CREATE OR REPLACE FUNCTION api.get_invoice(p_tenant_id uuid, p_period date)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_lines jsonb;
    v_totals jsonb;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:read');
    PERFORM core.assert_month(p_period);
    SELECT jsonb_agg(jsonb_build_object(
               'usage_period', to_char(l.usage_period, 'YYYY-MM'), 'metric', l.metric, 'plan', l.plan_id,
               'kind', CASE WHEN l.usage_period = l.period THEN 'usage' ELSE 'adjustment' END,
               'quantity', l.quantity, 'included', l.included, 'billable', l.billable,
               'unit_price', l.unit_price, 'amount', l.amount, 'currency', l.currency)
               ORDER BY l.usage_period DESC, l.metric)
      INTO v_lines
      FROM core.invoice_lines AS l
     WHERE l.tenant_id = p_tenant_id AND l.period = p_period;
    IF v_lines IS NULL THEN
        PERFORM core.raise_not_found('invoice', to_char(p_period, 'YYYY-MM'));
    END IF;
    SELECT jsonb_agg(jsonb_build_object('currency', s.currency, 'amount', s.amount) ORDER BY s.currency)
      INTO v_totals
      FROM (SELECT l.currency::text AS currency, sum(l.amount) AS amount
              FROM core.invoice_lines AS l
             WHERE l.tenant_id = p_tenant_id AND l.period = p_period
             GROUP BY l.currency) AS s;
    RETURN jsonb_build_object('period', to_char(p_period, 'YYYY-MM'), 'lines', v_lines, 'totals', v_totals);
END
$$;

-- The current calendar month so far, priced at the tenant's plan now: per priced metric
-- the usage, included, billable and amount, and a projection to the month's end (the
-- usage so far scaled by the share of the month that has passed), plus the plan's base
-- price.
CREATE OR REPLACE FUNCTION core.current_usage_cost(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := core.billing_clock();
    v_start timestamptz := pg_catalog.date_trunc('month', v_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_end timestamptz := ((v_start AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    v_share numeric;
    v_plan core.plans;
    v_lines jsonb;
BEGIN
    v_share := GREATEST(extract(epoch FROM v_now - v_start), 1) / extract(epoch FROM v_end - v_start);
    SELECT p.* INTO v_plan FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    SELECT jsonb_agg(jsonb_build_object(
               'metric', x.metric, 'quantity', x.quantity, 'included', x.included_units,
               'billable', GREATEST(x.quantity - x.included_units, 0), 'unit_price', x.unit_price,
               'amount', core.billing_amount(GREATEST(x.quantity - x.included_units, 0), x.unit_price, x.overage,
                                             x.package_size),
               'projected_quantity', round(x.quantity / v_share, 6),
               'projected_amount', core.billing_amount(GREATEST(round(x.quantity / v_share, 6) - x.included_units, 0),
                                                       x.unit_price, x.overage, x.package_size),
               'currency', x.currency) ORDER BY x.metric)
      INTO v_lines
      FROM (SELECT pr.metric, COALESCE(r.value, 0) AS quantity, pr.included_units, pr.unit_price, pr.overage,
                   pr.package_size, pr.currency
              FROM core.prices AS pr
              LEFT JOIN core.usage_rollups AS r
                     ON r.tenant_id = p_tenant_id AND r.metric = pr.metric
                    AND r.granularity = 'period' AND r.bucket_start = v_start
             WHERE pr.plan_id = v_plan.plan_id) AS x;
    RETURN jsonb_build_object(
        'period', to_char(v_start AT TIME ZONE 'UTC', 'YYYY-MM'),
        'period_start', v_start, 'period_end', v_end, 'plan', v_plan.plan_id,
        'base_price', round(v_plan.price_cents / 100.0, 2), 'currency', v_plan.currency,
        'lines', COALESCE(v_lines, '[]'::jsonb),
        'usage_amount', COALESCE((SELECT sum((e ->> 'amount')::numeric) FROM jsonb_array_elements(v_lines) AS e), 0),
        'projected_usage_amount',
            COALESCE((SELECT sum((e ->> 'projected_amount')::numeric) FROM jsonb_array_elements(v_lines) AS e), 0));
END
$$;

-- The tenant's current month: usage so far, its cost and the projection (billing:read).
CREATE OR REPLACE FUNCTION api.get_current_usage_cost(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:read');
    RETURN core.current_usage_cost(p_tenant_id);
END
$$;
