-- The plan catalog. Kept here as data the code relies on (plan ids are referenced by
-- tenants); prices in cents. An absent limit means unlimited.
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
