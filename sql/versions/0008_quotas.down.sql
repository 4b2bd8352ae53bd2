-- 0008 quotas, undone: the quota tables, the plans' overage column and the new kinds of
-- platform-admin action go (their records with them: the old CHECK does not allow
-- them). The quota triggers that 070_quotas.sql attaches to other features' tables are
-- dropped too, so the schema left at 0007 works without the quota functions.
DROP TRIGGER IF EXISTS count_project_quota ON core.projects;
DROP TRIGGER IF EXISTS count_task_quota ON core.tasks;
DROP TRIGGER IF EXISTS count_member_quota ON core.memberships;
DROP TRIGGER IF EXISTS count_api_key_quota ON core.api_keys;
DROP TRIGGER IF EXISTS create_quota_counters ON core.tenants;
DROP TRIGGER IF EXISTS refresh_quota_limits ON core.tenants;

ALTER TABLE core.platform_admin_actions DROP COLUMN details;
DELETE FROM core.platform_admin_actions WHERE action IN ('set_plan', 'set_quota', 'clear_quota');
ALTER TABLE core.platform_admin_actions DROP CONSTRAINT platform_admin_actions_action_check;
ALTER TABLE core.platform_admin_actions ADD CONSTRAINT platform_admin_actions_action_check
    CHECK (action IN ('create', 'suspend', 'reactivate', 'delete'));

-- CASCADE: with the repeatable functions on their row types
DROP TABLE core.quota_reservations CASCADE;
DROP TABLE core.quota_counters CASCADE;
DROP TABLE core.quota_overrides CASCADE;
ALTER TABLE core.plans DROP COLUMN overage;
DROP TABLE core.quota_resources CASCADE;
