-- Seeds: the data the code relies on, re-applied on every migrate, so this file is its
-- single source of truth: the plan catalog (tenants reference plan ids; the features
-- read the limits) and the scopes, roles and role -> scope mapping that the access
-- checks read (050_access.sql).

----------------------------------------------------------------------------------------
-- plans
----------------------------------------------------------------------------------------

-- Prices in cents. An absent limit means unlimited. The limits are the quotas
-- (core.quota_resources below: counted ones, and metered ones per billing period) and
-- the API request rate; overage says whether metered units beyond the limit are
-- blocked or billed (070_quotas.sql).
INSERT INTO core.plans (plan_id, name, price_cents, currency, limits, features, overage) VALUES
    ('free',       'Free',       0,     'EUR', '{"projects": 3,   "tasks": 100,   "members": 3,   "api_keys": 5,   "storage_bytes": 10000000,
                                                 "api_calls": 10000,   "tokens": 100000,   "compute_minutes": 600,   "api_requests_per_minute": 60}',
     '{api_keys}', 'block'),
    ('pro',        'Pro',        4900,  'EUR', '{"projects": 100, "tasks": 10000, "members": 50,  "api_keys": 100, "storage_bytes": 1000000000,
                                                 "api_calls": 1000000, "tokens": 10000000, "compute_minutes": 60000, "api_requests_per_minute": 600}',
     '{api_keys,webhooks,audit_export}', 'bill'),
    ('enterprise', 'Enterprise', 49900, 'EUR', '{"members": 1000, "api_requests_per_minute": 6000}',
     '{api_keys,webhooks,audit_export,sso,dedicated_shard}', 'bill')
ON CONFLICT (plan_id) DO UPDATE SET
    name = EXCLUDED.name,
    price_cents = EXCLUDED.price_cents,
    currency = EXCLUDED.currency,
    limits = EXCLUDED.limits,
    features = EXCLUDED.features,
    overage = EXCLUDED.overage;

----------------------------------------------------------------------------------------
-- quota resources (070_quotas.sql): what the plans' limits may name
----------------------------------------------------------------------------------------

INSERT INTO core.quota_resources (resource, kind, unit, warn_at_percent, description) VALUES
    ('members',         'counted', 'members',  80, 'Members of the tenant'),
    ('projects',        'counted', 'projects', 80, 'Live projects (soft-deleted ones free their slot)'),
    ('tasks',           'counted', 'tasks',    80, 'Live tasks (soft-deleted ones free their slot)'),
    ('api_keys',        'counted', 'keys',     80, 'API keys not revoked'),
    ('storage_bytes',   'counted', 'bytes',    80, 'UTF-8 bytes of the live projects'' names and descriptions and the live tasks'' titles and descriptions'),
    ('api_calls',       'metered', 'calls',    80, 'API requests per billing period'),
    ('tokens',          'metered', 'tokens',   80, 'Tokens processed per billing period'),
    ('compute_minutes', 'metered', 'minutes',  80, 'Compute minutes per billing period')
ON CONFLICT (resource) DO UPDATE SET
    kind = EXCLUDED.kind,
    unit = EXCLUDED.unit,
    warn_at_percent = EXCLUDED.warn_at_percent,
    description = EXCLUDED.description;

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
    ('billing:manage', 'Upgrade, downgrade or cancel the subscription'),
    ('audit:read',     'Read the audit log'),
    ('usage:read',     'Read usage, the metric catalog and quotas'),
    ('usage:write',    'Record usage events and reserve metered quota'),
    ('webhooks:read',  'List webhook endpoints and their deliveries'),
    ('webhooks:write', 'Register, change and delete webhook endpoints; redeliver and test')
ON CONFLICT (scope) DO UPDATE SET description = EXCLUDED.description;

----------------------------------------------------------------------------------------
-- metrics: what usage events may meter (400_usage.sql)
----------------------------------------------------------------------------------------

-- api_calls is written by ops.record_api_calls (the API's request counters); the others
-- by clients through POST /v1/usage/events.
INSERT INTO core.metrics (metric, unit, aggregation, property, description) VALUES
    ('api_calls',       'calls',   'sum',          NULL,      'API requests, counted per key or user and flushed from Redis'),
    ('tokens',          'tokens',  'sum',          NULL,      'Tokens processed'),
    ('compute_minutes', 'minutes', 'sum',          NULL,      'Compute time'),
    ('active_users',    'users',   'unique_count', 'user_id', 'Distinct users seen (property user_id)'),
    ('storage_gb',      'GB',      'latest',       NULL,      'Storage in use: the latest reading'),
    ('peak_storage_gb', 'GB',      'max',          NULL,      'Storage in use: the highest reading'),
    ('jobs_run',        'jobs',    'count',        NULL,      'Jobs run (each event counts one, whatever its quantity)')
ON CONFLICT (metric) DO UPDATE SET
    unit = EXCLUDED.unit,
    aggregation = EXCLUDED.aggregation,
    property = EXCLUDED.property,
    description = EXCLUDED.description;

----------------------------------------------------------------------------------------
-- prices of metered usage per plan and metric (600_billing.sql): included units, the
-- unit price beyond them and the overage rule. The free plan charges nothing (its
-- quotas block); rows are replaced whole, like the role mapping below.
----------------------------------------------------------------------------------------

DELETE FROM core.prices;
INSERT INTO core.prices (plan_id, metric, included_units, unit_price, currency, overage, package_size) VALUES
    ('free',       'api_calls',       10000,    0,        'EUR', 'none',        1),
    ('free',       'tokens',          100000,   0,        'EUR', 'none',        1),
    ('free',       'compute_minutes', 600,      0,        'EUR', 'none',        1),
    ('pro',        'api_calls',       1000000,  0.0001,   'EUR', 'per_unit',    1),
    ('pro',        'tokens',          10000000, 2.000000, 'EUR', 'per_package', 1000000),
    ('pro',        'compute_minutes', 60000,    0.02,     'EUR', 'per_unit',    1),
    ('pro',        'active_users',    50,       1.50,     'EUR', 'per_unit',    1),
    ('pro',        'storage_gb',      100,      0.10,     'EUR', 'per_unit',    1),
    ('pro',        'jobs_run',        10000,    0.001,    'EUR', 'per_unit',    1),
    ('enterprise', 'api_calls',       50000000, 0.00005,  'EUR', 'per_unit',    1),
    ('enterprise', 'tokens',          0,        1.500000, 'EUR', 'per_package', 1000000),
    ('enterprise', 'compute_minutes', 0,        0.015,    'EUR', 'per_unit',    1),
    ('enterprise', 'active_users',    1000,     1.00,     'EUR', 'per_unit',    1),
    ('enterprise', 'storage_gb',      1000,     0.08,     'EUR', 'per_unit',    1),
    ('enterprise', 'jobs_run',        0,        0.0005,   'EUR', 'per_unit',    1);

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
    ('developer', ARRAY['tenant:read', 'projects:read', 'projects:write', 'members:read', 'keys:manage', 'usage:read', 'usage:write',
                        'webhooks:read', 'webhooks:write']),
    ('member',    ARRAY['tenant:read', 'projects:read', 'projects:write', 'members:read', 'usage:read']),
    ('billing',   ARRAY['tenant:read', 'projects:read', 'members:read', 'billing:read', 'billing:manage', 'usage:read']),
    ('viewer',    ARRAY['tenant:read', 'projects:read', 'members:read'])
) AS r (role, scopes), unnest(r.scopes) AS s (scope);

----------------------------------------------------------------------------------------
-- quota counters follow the plans above (070_quotas.sql): rows for every tenant and
-- resource, counted from the real rows where new, limits as seeded
----------------------------------------------------------------------------------------

SELECT core.sync_quota_counters();
