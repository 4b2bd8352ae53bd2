-- 0002 identity and access, undone (with CASCADE the repeatable objects on them go too).
DROP TABLE core.platform_admin_actions, core.idempotency_keys, core.api_key_prefixes, core.api_keys,
           core.refresh_tokens, core.sessions, core.invitations, core.memberships, core.users,
           core.role_scopes, core.roles, core.scopes CASCADE;
DROP SCHEMA auth CASCADE;
