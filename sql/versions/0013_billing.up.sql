-- 0013 billing: prices, closed billing periods and their invoice lines, the export
-- ledger, subscriptions with their history, and the payment provider's events.
--
-- Versioned: applied once by migrations/versions/0013_billing.py. The functions are in
-- sql/repeatable/600_billing.sql (prices, periods, invoice lines, export ledger) and
-- 610_subscriptions.sql (subscriptions, plan changes, provider events, suspension); the
-- policies in policies/core_invoice_lines.sql, core_subscriptions.sql and
-- core_subscription_changes.sql.
--
-- Usage is billed per calendar month (UTC), the bucket of core.usage_rollups'
-- 'period' rows: a month is *closed* once (core.billing_periods) and its invoice lines
-- are written then and never change. Events that arrive late for a closed month become
-- adjustment lines of the next month closed. A subscription's own period (its base
-- price, trial and plan changes) is monthly from its start.

----------------------------------------------------------------------------------------
-- prices: per plan and metric (a reference table)
----------------------------------------------------------------------------------------
CREATE TABLE core.prices (
    plan_id         text NOT NULL REFERENCES core.plans (plan_id),
    metric          text NOT NULL REFERENCES core.metrics (metric),
    -- units of the month's quantity that the plan's base price covers
    included_units  numeric NOT NULL DEFAULT 0 CHECK (included_units >= 0),
    -- the price of one unit (per_unit) or of one package (per_package) beyond them
    unit_price      numeric(20, 6) NOT NULL CHECK (unit_price >= 0),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- per_unit: billable x unit_price; per_package: whole packages of package_size
    -- started, x unit_price; none: nothing beyond the included units is charged
    overage         text NOT NULL CHECK (overage IN ('per_unit', 'per_package', 'none')),
    package_size    numeric NOT NULL DEFAULT 1 CHECK (package_size > 0),
    PRIMARY KEY (plan_id, metric)
);
COMMENT ON TABLE core.prices IS 'Prices of metered usage per plan and metric: included units, unit price, overage rule.';
SELECT core.make_reference_table('core.prices');

----------------------------------------------------------------------------------------
-- closed months: a month's invoice lines are written once, when it is closed
----------------------------------------------------------------------------------------
CREATE TABLE core.billing_periods (
    period     date PRIMARY KEY CHECK (period = date_trunc('month', period)::date),
    closed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE core.billing_periods IS 'Calendar months (UTC) whose invoice lines are written; closed once, never reopened.';
SELECT core.make_reference_table('core.billing_periods');

----------------------------------------------------------------------------------------
-- invoice lines: per tenant, month and metric (distributed)
----------------------------------------------------------------------------------------
-- A usage line counts the month's own usage (usage_period = period); an adjustment line
-- (usage_period < period) is the difference that late events made to an earlier,
-- already closed month, billed with that month's price: the lines of a closed month
-- never change, and the sum of a month's lines over all periods is its usage now.
CREATE TABLE core.invoice_lines (
    tenant_id     uuid NOT NULL REFERENCES core.tenants (tenant_id),
    period        date NOT NULL,
    usage_period  date NOT NULL,
    metric        text NOT NULL,
    plan_id       text NOT NULL,
    quantity      numeric NOT NULL,
    included      numeric NOT NULL,
    billable      numeric NOT NULL,
    unit_price    numeric(20, 6) NOT NULL,
    amount        numeric(20, 6) NOT NULL,
    currency      char(3) NOT NULL,
    -- the price's rule, frozen with the line: an adjustment is billed as its month was
    overage       text NOT NULL,
    package_size  numeric NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, period, usage_period, metric),
    CONSTRAINT invoice_lines_usage_period_check CHECK (usage_period <= period)
);
COMMENT ON TABLE core.invoice_lines IS 'Invoice lines of closed months: usage per tenant and metric, and adjustments for late events.';
SELECT core.distribute_table('core.invoice_lines', 'core.tenants');

----------------------------------------------------------------------------------------
-- the export ledger: what was written where, once per period, format, destination
----------------------------------------------------------------------------------------
CREATE TABLE core.billing_exports (
    period       date NOT NULL,
    format       text NOT NULL CHECK (format IN ('csv', 'json', 'parquet')),
    destination  text NOT NULL CHECK (length(destination) BETWEEN 1 AND 4096),
    version      integer NOT NULL CHECK (version >= 1),
    file_name    text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    row_count    integer NOT NULL CHECK (row_count >= 0),
    forced       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period, format, destination, version)
);
COMMENT ON TABLE core.billing_exports IS 'Export ledger: one row per written export file (checksum, rows); re-exports are new versions.';
SELECT core.make_reference_table('core.billing_exports');

----------------------------------------------------------------------------------------
-- subscriptions: one per tenant (distributed), and their history
----------------------------------------------------------------------------------------
CREATE TABLE core.subscriptions (
    tenant_id               uuid PRIMARY KEY REFERENCES core.tenants (tenant_id),
    plan_id                 text NOT NULL,
    status                  text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
    -- monthly periods from the subscription's start (its anchor)
    anchor_at               timestamptz NOT NULL,
    current_period_start    timestamptz NOT NULL,
    current_period_end      timestamptz NOT NULL,
    trial_end               timestamptz,
    payment_method_on_file  boolean NOT NULL DEFAULT false,
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    pending_plan_id         text,
    past_due_since          timestamptz,
    provider_customer_id    text CHECK (length(provider_customer_id) BETWEEN 1 AND 255),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    row_version             bigint NOT NULL DEFAULT 1,
    CONSTRAINT subscriptions_period_check CHECK (current_period_start < current_period_end),
    CONSTRAINT subscriptions_past_due_check CHECK ((status = 'past_due') = (past_due_since IS NOT NULL))
);
COMMENT ON TABLE core.subscriptions IS 'A tenant''s subscription: plan, status, current period (monthly from its start), trial, pending changes.';
SELECT core.distribute_table('core.subscriptions', 'core.tenants');
-- after distribution (docs/citus.md, fact 19)
ALTER TABLE core.subscriptions
    ADD CONSTRAINT subscriptions_plan_id_fkey FOREIGN KEY (plan_id) REFERENCES core.plans (plan_id);
ALTER TABLE core.subscriptions
    ADD CONSTRAINT subscriptions_pending_plan_id_fkey FOREIGN KEY (pending_plan_id) REFERENCES core.plans (plan_id);

CREATE TABLE core.subscription_changes (
    tenant_id     uuid NOT NULL,
    change_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    kind          text NOT NULL CHECK (kind IN ('start', 'upgrade', 'downgrade', 'cancel', 'renew',
                                                'payment_failed', 'payment_succeeded', 'suspend', 'reactivate',
                                                'payment_method')),
    from_plan     text,
    to_plan       text,
    from_status   text,
    to_status     text,
    -- when the change takes (or took) effect: now, or the end of the period
    effective_at  timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    actor_type    text,
    actor_id      uuid,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (tenant_id, change_id)
);
COMMENT ON TABLE core.subscription_changes IS 'History of subscription changes with their effective dates (proration in details).';
CREATE INDEX subscription_changes_tenant_effective_idx ON core.subscription_changes (tenant_id, effective_at);
SELECT core.distribute_table('core.subscription_changes', 'core.tenants');

----------------------------------------------------------------------------------------
-- the payment provider's events, once each by event id (a reference table)
----------------------------------------------------------------------------------------
CREATE TABLE core.provider_events (
    event_id     text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    type         text NOT NULL CHECK (length(type) BETWEEN 1 AND 255),
    for_tenant   uuid,
    outcome      text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE core.provider_events IS 'Payment provider webhook events processed (idempotency by event id) and what each did.';
SELECT core.make_reference_table('core.provider_events');

-- every tenant has a subscription: the existing ones on their plan, active, from now
INSERT INTO core.subscriptions (tenant_id, plan_id, status, anchor_at, current_period_start, current_period_end)
SELECT t.tenant_id, t.plan_id, 'active', t.created_at,
       ((t.created_at AT TIME ZONE 'UTC') + interval '1 month' * n.months) AT TIME ZONE 'UTC',
       ((t.created_at AT TIME ZONE 'UTC') + interval '1 month' * (n.months + 1)) AT TIME ZONE 'UTC'
  FROM core.tenants AS t
 CROSS JOIN LATERAL (SELECT (extract(year FROM age(now() AT TIME ZONE 'UTC', t.created_at AT TIME ZONE 'UTC')) * 12
                             + extract(month FROM age(now() AT TIME ZONE 'UTC', t.created_at AT TIME ZONE 'UTC')))::integer
                             AS months) AS n
 WHERE t.status <> 'deleted';
