-- Subscriptions: one per tenant (core.subscriptions), every change recorded with its
-- effective date (core.subscription_changes); plan changes by the tenant itself
-- (api.*, billing:manage: owners, admins and billing members) and by platform
-- administrators (admin.*) through the same core functions; the payment provider's
-- events (auth.apply_provider_event); the worker's period roll-over and past_due
-- suspension (ops.*).
--
-- * A new tenant starts on its plan: the free plan 'active', a paid plan 'trialing' for
--   core.billing_trial_period() (14 days). Periods are monthly from the start (anchor).
-- * Upgrade (a dearer plan): now. Proration: the old plan's base price for the unused
--   share of the current period is credited and the new plan's charged for it, both
--   recorded in the change's details (credit_cents, charge_cents, unused_share). A
--   paid plan needs a payment method on file (TB001), unless the subscription is
--   trialing.
-- * Downgrade (a cheaper plan): at the end of the current period (pending_plan_id);
--   cancel: at the end of the period (cancel_at_period_end), then the free plan.
--   ops.advance_subscriptions applies them when the period ends.
-- * The plan is core.tenants.plan_id, so a change updates that column and the quota
--   trigger of 070_quotas.sql (refresh_quota_limits) applies the new limits at once, as
--   it does for admin.set_tenant_plan.
-- * invoice.payment_failed -> past_due; after TENANTRY_BILLING_PAST_DUE_GRACE_DAYS the
--   worker suspends the tenant (TN001 on writes, reads kept); invoice.paid -> active,
--   and a tenant that billing suspended is reactivated.
--
-- The changing functions are SECURITY DEFINER: the quota limits are columns only the
-- owner writes. They run before any write of the caller's in the request (the routes
-- take no Idempotency-Key), so no definer access follows an invoker write to the same
-- shards (docs/citus.md, fact 16).

----------------------------------------------------------------------------------------
-- settings and helpers
----------------------------------------------------------------------------------------

-- How long a new tenant on a paid plan tries it before paying: 14 days.
CREATE OR REPLACE FUNCTION core.billing_trial_period()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT interval '14 days' $$;

-- The end of the monthly period that starts at p_start, n months after the anchor:
-- anchored months, so a period that started on the 31st does not drift.
CREATE OR REPLACE FUNCTION core.subscription_period_bound(p_anchor timestamptz, p_months integer)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ((p_anchor AT TIME ZONE 'UTC') + interval '1 month' * p_months) AT TIME ZONE 'UTC' $$;

-- Record a change of the tenant's subscription, by the context's actor.
CREATE OR REPLACE FUNCTION core.record_subscription_change(
    p_tenant_id uuid, p_kind text, p_from_plan text, p_to_plan text, p_from_status text, p_to_status text,
    p_effective_at timestamptz, p_details jsonb DEFAULT '{}'::jsonb
)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO core.subscription_changes
        (tenant_id, kind, from_plan, to_plan, from_status, to_status, effective_at, actor_type, actor_id, details)
    VALUES (p_tenant_id, p_kind, p_from_plan, p_to_plan, p_from_status, p_to_status, p_effective_at,
            core.current_actor_type(), core.current_actor_id(), p_details)
$$;

-- The subscription as the API shows it. Volatile, not STABLE: called on the result of a
-- change, it must see the change's own history row (a STABLE function reads the
-- snapshot of the statement that called it).
CREATE OR REPLACE FUNCTION core.subscription_json(p_subscription core.subscriptions)
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'tenant_id', p_subscription.tenant_id, 'plan', p_subscription.plan_id, 'status', p_subscription.status,
        'current_period_start', p_subscription.current_period_start,
        'current_period_end', p_subscription.current_period_end,
        'trial_end', p_subscription.trial_end,
        'payment_method_on_file', p_subscription.payment_method_on_file,
        'cancel_at_period_end', p_subscription.cancel_at_period_end,
        'pending_plan', p_subscription.pending_plan_id,
        'past_due_since', p_subscription.past_due_since,
        'base_price', (SELECT round(p.price_cents / 100.0, 2) FROM core.plans AS p WHERE p.plan_id = p_subscription.plan_id),
        'currency', (SELECT p.currency FROM core.plans AS p WHERE p.plan_id = p_subscription.plan_id),
        'changes', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'kind', c.kind, 'from_plan', c.from_plan, 'to_plan', c.to_plan, 'from_status', c.from_status,
                       'to_status', c.to_status, 'effective_at', c.effective_at, 'recorded_at', c.recorded_at,
                       'actor_type', c.actor_type, 'details', c.details) ORDER BY c.recorded_at DESC, c.change_id)
              FROM (SELECT * FROM core.subscription_changes AS x
                     WHERE x.tenant_id = p_subscription.tenant_id
                     ORDER BY x.recorded_at DESC LIMIT 20) AS c), '[]'::jsonb))
$$;

----------------------------------------------------------------------------------------
-- a new tenant's subscription
----------------------------------------------------------------------------------------

-- Row trigger on core.tenants (AFTER INSERT): the free plan active, a paid plan on trial.
CREATE OR REPLACE FUNCTION core.start_subscription()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_paid boolean;
    v_status text;
    v_trial_end timestamptz;
BEGIN
    SELECT p.price_cents > 0 INTO v_paid FROM core.plans AS p WHERE p.plan_id = NEW.plan_id;
    v_status := CASE WHEN v_paid THEN 'trialing' ELSE 'active' END;
    v_trial_end := CASE WHEN v_paid THEN v_now + core.billing_trial_period() END;
    INSERT INTO core.subscriptions
        (tenant_id, plan_id, status, anchor_at, current_period_start, current_period_end, trial_end)
    VALUES (NEW.tenant_id, NEW.plan_id, v_status, v_now, v_now, core.subscription_period_bound(v_now, 1), v_trial_end)
    ON CONFLICT (tenant_id) DO NOTHING;
    PERFORM core.record_subscription_change(NEW.tenant_id, 'start', NULL, NEW.plan_id, NULL, v_status, v_now,
                                            jsonb_build_object('trial_end', v_trial_end));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER start_subscription
    AFTER INSERT ON core.tenants
    FOR EACH ROW EXECUTE FUNCTION core.start_subscription();

-- Row trigger on core.tenants (AFTER UPDATE OF plan_id): the subscription follows the
-- tenant's plan, whoever changed it (a platform admin's admin.set_tenant_plan sets the
-- plan at once, without proration; the subscription functions set both), so the two
-- never disagree. A pending downgrade is dropped: the plan was just decided.
CREATE OR REPLACE FUNCTION core.follow_tenant_plan()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE core.subscriptions SET plan_id = NEW.plan_id, pending_plan_id = NULL
     WHERE tenant_id = NEW.tenant_id AND plan_id IS DISTINCT FROM NEW.plan_id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER follow_tenant_plan
    AFTER UPDATE OF plan_id ON core.tenants
    FOR EACH ROW WHEN (OLD.plan_id IS DISTINCT FROM NEW.plan_id)
    EXECUTE FUNCTION core.follow_tenant_plan();

----------------------------------------------------------------------------------------
-- plan changes: the rules, shared by the tenant's and the admin's entry points
----------------------------------------------------------------------------------------

-- The tenant's subscription, locked for a change (P0002 when it has none). The tenant's
-- row is locked first (FOR NO KEY UPDATE, as an UPDATE of it would): a plan change
-- writes core.tenants, then core.subscriptions (trigger follow_tenant_plan), as
-- admin.set_tenant_plan and ops.advance_subscriptions do, so every path takes the two
-- locks in one order. Locking the subscription first deadlocked an upgrade against a
-- platform administrator's plan change (tests/test_billing_concurrency.py).
CREATE OR REPLACE FUNCTION core.lock_subscription(p_tenant_id uuid)
RETURNS core.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions;
BEGIN
    PERFORM 1 FROM core.tenants WHERE tenant_id = p_tenant_id FOR NO KEY UPDATE;
    SELECT * INTO v_sub FROM core.subscriptions WHERE tenant_id = p_tenant_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('subscription', p_tenant_id);
    END IF;
    RETURN v_sub;
END
$$;

-- Change the tenant's plan: an upgrade now (prorated), a downgrade at the period's end.
-- p_direction 'upgrade' or 'downgrade' says what the caller asked for (TB002 when the
-- plans' prices say otherwise); NULL: whichever it is (the platform admin's call).
CREATE OR REPLACE FUNCTION core.change_subscription_plan(p_tenant_id uuid, p_plan_id text, p_direction text)
RETURNS core.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions := core.lock_subscription(p_tenant_id);
    v_old core.plans;
    v_new core.plans;
    v_now timestamptz := now();
    v_share numeric;
    v_credit integer;
    v_charge integer;
    v_kind text;
BEGIN
    SELECT * INTO v_old FROM core.plans WHERE plan_id = v_sub.plan_id;
    SELECT * INTO v_new FROM core.plans WHERE plan_id = p_plan_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no plan %', p_plan_id USING
            ERRCODE = '23503', CONSTRAINT = 'subscriptions_plan_id_fkey', COLUMN = 'plan';
    END IF;
    v_kind := CASE WHEN v_new.price_cents > v_old.price_cents THEN 'upgrade'
                   WHEN v_new.price_cents < v_old.price_cents THEN 'downgrade' END;
    IF v_kind IS NULL OR v_kind IS DISTINCT FROM COALESCE(p_direction, v_kind) THEN
        RAISE EXCEPTION 'from % to % is not %', v_old.plan_id, v_new.plan_id,
                        COALESCE('an ' || p_direction, 'a change of price') USING
            ERRCODE = 'TB002',
            HINT = 'An upgrade goes to a dearer plan (now), a downgrade to a cheaper one (at the end of the period).';
    END IF;

    IF v_kind = 'upgrade' THEN
        IF NOT v_sub.payment_method_on_file AND v_sub.status <> 'trialing' THEN
            RAISE EXCEPTION 'the % plan needs a payment method on file', v_new.plan_id USING
                ERRCODE = 'TB001',
                HINT = 'Add a payment method with the payment provider first.';
        END IF;
        v_share := GREATEST(extract(epoch FROM v_sub.current_period_end - v_now), 0)
                   / extract(epoch FROM v_sub.current_period_end - v_sub.current_period_start);
        v_credit := round(v_old.price_cents * v_share);
        v_charge := round(v_new.price_cents * v_share);
        -- the tenant's plan: its quota limits follow (trigger refresh_quota_limits)
        UPDATE core.tenants SET plan_id = v_new.plan_id WHERE tenant_id = p_tenant_id;
        UPDATE core.subscriptions
           SET plan_id = v_new.plan_id, pending_plan_id = NULL, cancel_at_period_end = false,
               status = CASE WHEN status = 'canceled' THEN 'active' ELSE status END
         WHERE tenant_id = p_tenant_id
        RETURNING * INTO v_sub;
        PERFORM core.record_subscription_change(
            p_tenant_id, 'upgrade', v_old.plan_id, v_new.plan_id, v_sub.status, v_sub.status, v_now,
            jsonb_build_object('unused_share', round(v_share, 6), 'credit_cents', v_credit,
                               'charge_cents', v_charge, 'currency', v_new.currency));
    ELSE
        UPDATE core.subscriptions SET pending_plan_id = v_new.plan_id, cancel_at_period_end = false
         WHERE tenant_id = p_tenant_id
        RETURNING * INTO v_sub;
        PERFORM core.record_subscription_change(
            p_tenant_id, 'downgrade', v_old.plan_id, v_new.plan_id, v_sub.status, v_sub.status,
            v_sub.current_period_end);
    END IF;
    RETURN v_sub;
END
$$;

-- Cancel at the end of the current period (then the free plan, status canceled).
CREATE OR REPLACE FUNCTION core.cancel_subscription(p_tenant_id uuid)
RETURNS core.subscriptions
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions := core.lock_subscription(p_tenant_id);
BEGIN
    IF v_sub.status = 'canceled' OR v_sub.cancel_at_period_end THEN
        RETURN v_sub;  -- idempotent
    END IF;
    UPDATE core.subscriptions SET cancel_at_period_end = true, pending_plan_id = NULL
     WHERE tenant_id = p_tenant_id
    RETURNING * INTO v_sub;
    PERFORM core.record_subscription_change(p_tenant_id, 'cancel', v_sub.plan_id, 'free', v_sub.status, 'canceled',
                                            v_sub.current_period_end);
    RETURN v_sub;
END
$$;

----------------------------------------------------------------------------------------
-- the tenant's own entry points (billing:read, billing:manage)
----------------------------------------------------------------------------------------

-- The tenant's subscription with its recent history.
CREATE OR REPLACE FUNCTION api.get_subscription(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:read');
    SELECT * INTO v_sub FROM core.subscriptions WHERE tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('subscription', p_tenant_id);
    END IF;
    RETURN core.subscription_json(v_sub);
END
$$;

-- Upgrade now, to a dearer plan (prorated; a payment method on file unless trialing).
CREATE OR REPLACE FUNCTION api.upgrade_subscription(p_tenant_id uuid, p_plan_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:manage');
    PERFORM core.assert_tenant_allows(p_tenant_id, true);
    RETURN core.subscription_json(core.change_subscription_plan(p_tenant_id, p_plan_id, 'upgrade'));
END
$$;

-- Downgrade at the end of the current period, to a cheaper plan.
CREATE OR REPLACE FUNCTION api.downgrade_subscription(p_tenant_id uuid, p_plan_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:manage');
    PERFORM core.assert_tenant_allows(p_tenant_id, true);
    RETURN core.subscription_json(core.change_subscription_plan(p_tenant_id, p_plan_id, 'downgrade'));
END
$$;

-- Cancel at the end of the current period.
CREATE OR REPLACE FUNCTION api.cancel_subscription(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'billing:manage');
    PERFORM core.assert_tenant_allows(p_tenant_id, true);
    RETURN core.subscription_json(core.cancel_subscription(p_tenant_id));
END
$$;

----------------------------------------------------------------------------------------
-- the platform administrator's entry points (the same rules)
----------------------------------------------------------------------------------------

-- A tenant's subscription with its recent history.
CREATE OR REPLACE FUNCTION admin.get_subscription(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions;
BEGIN
    PERFORM core.assert_platform_admin();
    SELECT * INTO v_sub FROM core.subscriptions WHERE tenant_id = p_tenant_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('subscription', p_tenant_id);
    END IF;
    RETURN core.subscription_json(v_sub);
END
$$;

-- Change a tenant's plan: a dearer one now (prorated), a cheaper one at the period's end.
CREATE OR REPLACE FUNCTION admin.change_subscription_plan(p_tenant_id uuid, p_plan_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_platform_admin();
    RETURN core.subscription_json(core.change_subscription_plan(p_tenant_id, p_plan_id, NULL));
END
$$;

-- Cancel a tenant's subscription at the end of its period.
CREATE OR REPLACE FUNCTION admin.cancel_subscription(p_tenant_id uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_platform_admin();
    RETURN core.subscription_json(core.cancel_subscription(p_tenant_id));
END
$$;

-- Record whether the tenant has a payment method on file (normally the provider's events).
CREATE OR REPLACE FUNCTION admin.set_payment_method(p_tenant_id uuid, p_on_file boolean)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions;
BEGIN
    PERFORM core.assert_platform_admin();
    v_sub := core.lock_subscription(p_tenant_id);
    UPDATE core.subscriptions SET payment_method_on_file = p_on_file WHERE tenant_id = p_tenant_id
    RETURNING * INTO v_sub;
    PERFORM core.record_subscription_change(p_tenant_id, 'payment_method', v_sub.plan_id, v_sub.plan_id,
                                            v_sub.status, v_sub.status, now(),
                                            jsonb_build_object('on_file', p_on_file));
    RETURN core.subscription_json(v_sub);
END
$$;

----------------------------------------------------------------------------------------
-- the payment provider's events (POST /v1/billing/provider-events)
----------------------------------------------------------------------------------------

-- Apply one provider event, once per event id. The API has verified its signature (the
-- secret is the credential, as a password is for auth.open_session) and read the
-- tenant from the event's metadata. Returns the outcome: 'duplicate' (seen before),
-- 'ignored' (a type or tenant we do not act on), or what it did.
CREATE OR REPLACE FUNCTION auth.apply_provider_event(p_event_id text, p_type text, p_tenant_id uuid)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sub core.subscriptions;
    v_now timestamptz := now();
    v_outcome text;
    v_suspended_by_billing boolean;
BEGIN
    -- router reads first, then the reference write, then the tenant's shard (fact 17)
    IF p_tenant_id IS NOT NULL THEN
        SELECT * INTO v_sub FROM core.subscriptions WHERE tenant_id = p_tenant_id;
    END IF;
    v_outcome := CASE
        WHEN v_sub.tenant_id IS NULL THEN 'ignored'
        WHEN p_type = 'invoice.payment_failed' THEN 'past_due'
        WHEN p_type IN ('invoice.paid', 'invoice.payment_succeeded') THEN 'active'
        WHEN p_type = 'payment_method.attached' THEN 'payment_method'
        ELSE 'ignored' END;
    INSERT INTO core.provider_events (event_id, type, for_tenant, outcome, received_at)
    VALUES (p_event_id, p_type, v_sub.tenant_id, v_outcome, v_now)
    ON CONFLICT (event_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;
    IF v_outcome = 'ignored' THEN
        RETURN v_outcome;
    END IF;
    v_sub := core.lock_subscription(p_tenant_id);
    IF v_outcome = 'past_due' THEN
        UPDATE core.subscriptions SET status = 'past_due', past_due_since = COALESCE(past_due_since, v_now)
         WHERE tenant_id = p_tenant_id;
        PERFORM core.record_subscription_change(p_tenant_id, 'payment_failed', v_sub.plan_id, v_sub.plan_id,
                                                v_sub.status, 'past_due', v_now, jsonb_build_object('event', p_event_id));
    ELSIF v_outcome = 'active' THEN
        UPDATE core.subscriptions SET status = 'active', past_due_since = NULL, trial_end = NULL
         WHERE tenant_id = p_tenant_id;
        PERFORM core.record_subscription_change(p_tenant_id, 'payment_succeeded', v_sub.plan_id, v_sub.plan_id,
                                                v_sub.status, 'active', v_now, jsonb_build_object('event', p_event_id));
        -- reactivate a tenant that billing suspended (not one an administrator suspended)
        SELECT c.kind = 'suspend' INTO v_suspended_by_billing
          FROM core.subscription_changes AS c
         WHERE c.tenant_id = p_tenant_id AND c.kind IN ('suspend', 'reactivate')
         ORDER BY c.recorded_at DESC LIMIT 1;
        IF v_suspended_by_billing AND core.tenant_status(p_tenant_id) = 'suspended' THEN
            UPDATE core.tenants SET status = 'active' WHERE tenant_id = p_tenant_id;
            PERFORM core.record_subscription_change(p_tenant_id, 'reactivate', v_sub.plan_id, v_sub.plan_id,
                                                    'past_due', 'active', v_now, jsonb_build_object('event', p_event_id));
            v_outcome := 'reactivated';
        END IF;
    ELSE
        UPDATE core.subscriptions SET payment_method_on_file = true WHERE tenant_id = p_tenant_id;
        PERFORM core.record_subscription_change(p_tenant_id, 'payment_method', v_sub.plan_id, v_sub.plan_id,
                                                v_sub.status, v_sub.status, v_now,
                                                jsonb_build_object('on_file', true, 'event', p_event_id));
    END IF;
    RETURN v_outcome;
END
$$;

----------------------------------------------------------------------------------------
-- the worker: suspension after the grace period, and period roll-over
----------------------------------------------------------------------------------------

-- Suspend the tenants whose subscription has been past_due longer than p_grace (writes
-- refused with TN001, reads kept). Returns the tenants suspended.
CREATE OR REPLACE FUNCTION ops.suspend_past_due(p_grace interval)
RETURNS TABLE (tenant_id uuid)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_cutoff timestamptz := now() - p_grace;
    v_tenant uuid;
    v_plan text;
BEGIN
    FOR v_tenant, v_plan IN
        SELECT s.tenant_id, s.plan_id FROM core.subscriptions AS s
          JOIN core.tenants AS t ON t.tenant_id = s.tenant_id
         WHERE s.status = 'past_due' AND s.past_due_since <= v_cutoff AND t.status = 'active'
         ORDER BY s.tenant_id
    LOOP
        UPDATE core.tenants AS t SET status = 'suspended' WHERE t.tenant_id = v_tenant AND t.status = 'active';
        CONTINUE WHEN NOT FOUND;
        PERFORM core.record_subscription_change(v_tenant, 'suspend', v_plan, v_plan, 'past_due', 'past_due', v_now,
                                                jsonb_build_object('grace', p_grace::text));
        tenant_id := v_tenant;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Roll over the subscriptions whose period has ended: a pending downgrade or a
-- cancellation takes effect (the plan through core.tenants, so the quota limits
-- follow), a trial without a payment method falls back to the free plan, and the next
-- monthly period starts. Returns how many subscriptions it moved.
CREATE OR REPLACE FUNCTION ops.advance_subscriptions()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_tenant uuid;
    v_sub core.subscriptions;
    v_plan text;
    v_status text;
    v_months integer;
    v_moved integer := 0;
BEGIN
    FOR v_tenant IN
        SELECT s.tenant_id FROM core.subscriptions AS s
         WHERE s.current_period_end <= v_now OR (s.status = 'trialing' AND s.trial_end <= v_now)
         ORDER BY s.tenant_id
    LOOP
        -- locked (the tenant first, as core.lock_subscription does) and read again: a change
        -- committed since the scan (a cancellation at the period's end) is applied, not
        -- overwritten with what the scan read; gone (erased) or no longer due: skipped
        PERFORM 1 FROM core.tenants WHERE tenant_id = v_tenant FOR NO KEY UPDATE;
        SELECT * INTO v_sub FROM core.subscriptions WHERE tenant_id = v_tenant FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        CONTINUE WHEN NOT (v_sub.current_period_end <= v_now OR (v_sub.status = 'trialing' AND v_sub.trial_end <= v_now));
        v_plan := v_sub.plan_id;
        v_status := v_sub.status;
        IF v_sub.status = 'trialing' AND v_sub.trial_end <= v_now THEN
            IF v_sub.payment_method_on_file THEN
                v_status := 'active';
            ELSE
                v_plan := 'free';
                v_status := 'active';
            END IF;
        END IF;
        IF v_sub.current_period_end <= v_now THEN
            IF v_sub.cancel_at_period_end THEN
                v_plan := 'free';
                v_status := 'canceled';
            ELSIF v_sub.pending_plan_id IS NOT NULL THEN
                v_plan := v_sub.pending_plan_id;
            END IF;
        END IF;
        -- the first period bound after now, counted in months from the anchor
        v_months := 1;
        WHILE core.subscription_period_bound(v_sub.anchor_at, v_months) <= v_now LOOP
            v_months := v_months + 1;
        END LOOP;
        IF v_plan IS DISTINCT FROM v_sub.plan_id THEN
            UPDATE core.tenants SET plan_id = v_plan WHERE tenant_id = v_sub.tenant_id;
        END IF;
        UPDATE core.subscriptions
           SET plan_id = v_plan, status = v_status, pending_plan_id = NULL, cancel_at_period_end = false,
               trial_end = CASE WHEN v_status = 'trialing' THEN trial_end END,
               current_period_start = core.subscription_period_bound(anchor_at, v_months - 1),
               current_period_end = core.subscription_period_bound(anchor_at, v_months)
         WHERE tenant_id = v_sub.tenant_id;
        PERFORM core.record_subscription_change(
            v_sub.tenant_id, 'renew', v_sub.plan_id, v_plan, v_sub.status, v_status,
            LEAST(v_sub.current_period_end, COALESCE(v_sub.trial_end, v_sub.current_period_end)));
        v_moved := v_moved + 1;
    END LOOP;
    RETURN v_moved;
END
$$;

----------------------------------------------------------------------------------------
-- triggers
----------------------------------------------------------------------------------------

-- stamp updated_at and raise row_version (040_timestamps.sql). No guard_tenant_writes:
-- a suspended tenant's subscription must still take the provider's events (a payment
-- reactivates it); the tenant's own entry points check the status themselves.
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.subscriptions
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();
