-- Seeds: the data the code relies on, re-applied on every migrate, so this file is its
-- single source of truth: the plan catalog (tenants reference plan ids; the features
-- read the limits) and the scopes, roles and role -> scope mapping that the access
-- checks read (050_access.sql).

----------------------------------------------------------------------------------------
-- plans
----------------------------------------------------------------------------------------

-- Prices in cents. An absent limit means unlimited.
INSERT INTO core.plans (plan_id, name, price_cents, currency, limits, features) VALUES
    ('free',       'Free',       0,     'EUR', '{"projects": 3,   "tasks": 100,   "members": 3,   "api_requests_per_minute": 60}',   '{}'),
    ('pro',        'Pro',        4900,  'EUR', '{"projects": 100, "tasks": 10000, "members": 50,  "api_requests_per_minute": 600}',  '{webhooks,audit_export}'),
    ('enterprise', 'Enterprise', 49900, 'EUR', '{"members": 1000, "api_requests_per_minute": 6000}',                             '{webhooks,audit_export,sso,dedicated_shard}')
ON CONFLICT (plan_id) DO UPDATE SET
    name = EXCLUDED.name,
    price_cents = EXCLUDED.price_cents,
    currency = EXCLUDED.currency,
    limits = EXCLUDED.limits,
    features = EXCLUDED.features;

----------------------------------------------------------------------------------------
-- scopes, roles and the role -> scope mapping
----------------------------------------------------------------------------------------

INSERT INTO core.scopes (scope, description) VALUES
    ('tenant:read',    'Read the tenant''s own record and plan'),
    ('tenant:manage',  'Change the tenant''s name and settings'),
    ('projects:read',  'Read projects and tasks'),
    ('projects:write', 'Create, change and delete projects and tasks'),
    ('members:read',   'List members and invitations'),
    ('members:manage', 'Invite, change roles, remove members'),
    ('keys:manage',    'Create, rotate and revoke API keys'),
    ('billing:read',   'Read plan, usage and invoices'),
    ('audit:read',     'Read the audit log')
ON CONFLICT (scope) DO UPDATE SET description = EXCLUDED.description;

INSERT INTO core.roles (role, rank, description) VALUES
    ('owner',     60, 'Everything, including managing owners'),
    ('admin',     50, 'Everything but managing owners'),
    ('developer', 40, 'Projects and API keys'),
    ('member',    30, 'Projects'),
    ('billing',   20, 'Billing, read-only elsewhere'),
    ('viewer',    10, 'Read-only')
ON CONFLICT (role) DO UPDATE SET rank = EXCLUDED.rank, description = EXCLUDED.description;

-- The mapping is replaced whole: migrate runs in one transaction, so readers see the
-- old mapping or the new one, never a mix.
DELETE FROM core.role_scopes;
INSERT INTO core.role_scopes (role, scope)
SELECT 'owner', scope FROM core.scopes
UNION ALL
SELECT 'admin', scope FROM core.scopes
UNION ALL
SELECT r.role, s.scope FROM (VALUES
    ('developer', ARRAY['tenant:read', 'projects:read', 'projects:write', 'members:read', 'keys:manage']),
    ('member',    ARRAY['tenant:read', 'projects:read', 'projects:write', 'members:read']),
    ('billing',   ARRAY['tenant:read', 'projects:read', 'members:read', 'billing:read']),
    ('viewer',    ARRAY['tenant:read', 'projects:read', 'members:read'])
) AS r (role, scopes), unnest(r.scopes) AS s (scope);
