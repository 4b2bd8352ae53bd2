-- Who may use what. Everything starts closed: functions are EXECUTE-able by PUBLIC by
-- default in PostgreSQL, so that is revoked first, then each role gets what it needs.

----------------------------------------------------------------------------------------
-- closed by default
----------------------------------------------------------------------------------------
REVOKE ALL ON SCHEMA core, api, auth, ops, admin, analytics FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA core, api, auth, ops, admin, analytics FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA core, analytics FROM PUBLIC;

----------------------------------------------------------------------------------------
-- tenantry_api: the api.* contract; table rights for the invoker-rights functions,
-- bounded by RLS (no DELETE: rows are soft-deleted)
----------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA api, auth, core TO tenantry_api;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA api, auth TO tenantry_api;
GRANT EXECUTE ON FUNCTION
    core.current_tenant_id(), core.current_actor_id(), core.current_actor_type(),
    core.current_request_id(), core.current_scopes(), core.current_member_role(),
    core.tenant_status(uuid), core.assert_tenant_context(uuid, text),
    core.assert_tenant_allows(uuid, boolean), core.assert_scope(text),
    core.assert_may_manage_role(text), core.assert_grantable_scopes(text[]),
    core.assert_known_fields(jsonb, text[], text), core.assert_page_size(integer),
    core.max_page_size(), core.raise_not_found(text, anyelement, text), core.raise_changed(text, anyelement),
    core.raise_duplicate_project_name(text), core.open_invitation_for_update(uuid, uuid),
    core.api_key_scopes(uuid, uuid), core.assert_may_manage_key(core.api_keys)
TO tenantry_api;
-- list filters checked against the table's CHECK constraints (030_shared_checks.sql)
GRANT EXECUTE ON FUNCTION core.assert_column_allows(regclass, text, text, text) TO tenantry_api;
GRANT SELECT ON core.plans, core.tenants, core.scopes, core.roles, core.role_scopes,
                core.platform_admin_actions TO tenantry_api;
GRANT SELECT, INSERT, UPDATE ON core.projects, core.tasks TO tenantry_api;
GRANT SELECT, UPDATE, DELETE ON core.memberships TO tenantry_api;
GRANT SELECT, UPDATE ON core.invitations, core.api_keys TO tenantry_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON core.idempotency_keys TO tenantry_api;
-- quotas (070_quotas.sql): the counting triggers and reservations run with the caller's
-- rights; the api role moves usage, never a limit (admin.* sets those)
GRANT EXECUTE ON FUNCTION
    core.apply_quota_delta(uuid, text, integer, bigint), core.raise_quota_refusal(uuid, text, numeric),
    core.raise_quota_exceeded(uuid, text, numeric, numeric, numeric), core.assert_plan_feature(uuid, text),
    core.billing_period_start(uuid, timestamptz), core.billing_period_end(uuid, timestamptz),
    core.meter(uuid, text, numeric, numeric, boolean), core.assert_metered_resource(text),
    core.consume_metered(uuid, text, numeric, boolean), core.quota_report(uuid)
TO tenantry_api;
GRANT SELECT ON core.quota_resources, core.quota_overrides TO tenantry_api;
GRANT SELECT, UPDATE (used, reserved, period_start) ON core.quota_counters TO tenantry_api;
GRANT SELECT, INSERT, UPDATE ON core.quota_reservations TO tenantry_api;
-- usage metering (400_usage.sql): api.ingest_usage stores events with the caller's
-- rights; rollups are written by the worker's definer functions only
GRANT EXECUTE ON FUNCTION
    core.ingest_usage(uuid, jsonb, boolean), core.usage_lateness_window(), core.usage_clock_skew(), core.usage_max_batch()
TO tenantry_api;
GRANT SELECT ON core.metrics, core.usage_rollups TO tenantry_api;
GRANT SELECT, INSERT ON core.usage_event_ids TO tenantry_api;
GRANT INSERT ON core.usage_events, core.usage_pending TO tenantry_api;
-- audit (500_audit.sql): the api role reads its tenant's trail and records its own
-- application events (core.audit_event, invoker rights); row changes are recorded by
-- definer triggers. No UPDATE or DELETE on the log for anyone (core_audit_log.sql).
GRANT EXECUTE ON FUNCTION
    core.audit_event(uuid, text, jsonb, uuid, text), core.current_client_ip()
TO tenantry_api;
GRANT SELECT, INSERT ON core.audit_log TO tenantry_api;
GRANT USAGE ON SEQUENCE core.audit_log_audit_id_seq TO tenantry_api;
-- outbox and webhooks (510_outbox.sql, 520_webhooks.sql): writes emit their events with
-- the writer's rights; endpoints are the tenant's own (the secret only as ciphertext);
-- deliveries are read and redelivered, made and settled by the worker's definer functions
GRANT EXECUTE ON FUNCTION
    core.emit_event(uuid, text, jsonb, uuid), core.jsonb_pick(jsonb, text[]),
    core.note_quota_change(uuid, text, numeric, numeric, numeric), core.webhook_event_types(),
    core.webhook_event_type_list(text[])
TO tenantry_api;
GRANT SELECT, INSERT ON core.outbox_events TO tenantry_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON core.webhook_endpoints TO tenantry_api;
GRANT SELECT, INSERT ON core.webhook_deliveries TO tenantry_api;
GRANT SELECT ON core.webhook_attempts TO tenantry_api;
-- billing (600_billing.sql, 610_subscriptions.sql): tenants read their invoice lines,
-- subscription and its history; every change is a definer function's
GRANT EXECUTE ON FUNCTION
    core.billing_clock(), core.month_start(date), core.assert_month(date),
    core.billing_amount(numeric, numeric, text, numeric), core.current_usage_cost(uuid),
    core.subscription_json(core.subscriptions)
TO tenantry_api;
GRANT SELECT ON core.prices, core.invoice_lines, core.subscriptions, core.subscription_changes TO tenantry_api;

----------------------------------------------------------------------------------------
-- tenantry_worker: ops.* only
----------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA ops TO tenantry_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ops TO tenantry_worker;

----------------------------------------------------------------------------------------
-- tenantry_platform_admin: admin.* (definer-rights functions), and the session check
-- every request makes, so that an admin request holds one connection of this role
----------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA admin, auth TO tenantry_platform_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA admin TO tenantry_platform_admin;
GRANT EXECUTE ON FUNCTION auth.check_session() TO tenantry_platform_admin;
GRANT EXECUTE ON FUNCTION auth.touch_session() TO tenantry_platform_admin;

----------------------------------------------------------------------------------------
-- tenantry_analyst: the analytics views only
----------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA analytics TO tenantry_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO tenantry_analyst;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA analytics TO tenantry_analyst;
-- the distributed rollup tables (0012_analytics) by name as well: a grant on a named
-- distributed table is what Citus propagates to its shards, where the analyst's queries
-- run; SELECT only (the job writes them through ops.refresh_analytics, as the owner)
GRANT SELECT ON analytics.usage_daily, analytics.usage_monthly, analytics.activity_daily TO tenantry_analyst;
