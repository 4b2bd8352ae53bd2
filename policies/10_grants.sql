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
