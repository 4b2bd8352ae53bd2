-- 0002 identity and access: users (global), memberships with roles and scopes (data),
-- invitations, sessions with rotating refresh tokens, API keys, idempotency keys and
-- the log of platform-admin actions.
--
-- Secrets never reach the database: the API generates tokens and keys and passes only
-- their SHA-256 (and argon2id password hashes, computed in Python).
--
-- Foreign keys from a tenant table to a reference table are added after the table is
-- distributed: while it is still local, such a key makes Citus turn it into a
-- Citus-managed local table, which may not also reference a distributed table.

CREATE SCHEMA auth;  -- authentication functions the API calls before a tenant context exists

----------------------------------------------------------------------------------------
-- catalogs: scopes, roles and which scopes each role grants (reference tables)
----------------------------------------------------------------------------------------
CREATE TABLE core.scopes (
    scope        text PRIMARY KEY CHECK (scope ~ '^[a-z]+:[a-z]+$'),
    description  text NOT NULL
);
COMMENT ON TABLE core.scopes IS 'Permissions an API call can require, e.g. projects:write.';
SELECT core.make_reference_table('core.scopes');

CREATE TABLE core.roles (
    role         text PRIMARY KEY CHECK (role ~ '^[a-z]+$'),
    rank         smallint NOT NULL UNIQUE,  -- higher ranks may manage lower ones
    description  text NOT NULL
);
COMMENT ON TABLE core.roles IS 'Membership roles; a role grants the scopes listed in core.role_scopes.';
SELECT core.make_reference_table('core.roles');

CREATE TABLE core.role_scopes (
    role   text NOT NULL REFERENCES core.roles (role),
    scope  text NOT NULL REFERENCES core.scopes (scope),
    PRIMARY KEY (role, scope)
);
COMMENT ON TABLE core.role_scopes IS 'The scopes each role grants: the role-to-permission mapping is data.';
SELECT core.make_reference_table('core.role_scopes');

----------------------------------------------------------------------------------------
-- users: global identities (a reference table: one user, many tenants)
----------------------------------------------------------------------------------------
CREATE TABLE core.users (
    user_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
    name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    password_hash      text CHECK (password_hash LIKE '$argon2id$%'),
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    is_platform_admin  boolean NOT NULL DEFAULT false,
    -- lockout: failures in the current 15-minute window, and until when logins are refused
    failed_logins      integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    first_failed_at    timestamptz,
    locked_until       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE core.users IS 'People: global identities; tenants reach them through memberships.';
CREATE UNIQUE INDEX users_email_key ON core.users (lower(email));
SELECT core.make_reference_table('core.users');

----------------------------------------------------------------------------------------
-- memberships: a user's role in a tenant
----------------------------------------------------------------------------------------
CREATE TABLE core.memberships (
    tenant_id   uuid NOT NULL REFERENCES core.tenants (tenant_id),
    user_id     uuid NOT NULL,
    role        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
COMMENT ON TABLE core.memberships IS 'Who belongs to a tenant, with which role. A tenant always keeps an owner.';
CREATE INDEX memberships_user_idx ON core.memberships (user_id);
SELECT core.distribute_table('core.memberships', 'core.tenants');
-- (one constraint per statement: Citus propagates ADD CONSTRAINT only alone)
ALTER TABLE core.memberships
    ADD CONSTRAINT memberships_user_id_fkey FOREIGN KEY (user_id) REFERENCES core.users (user_id);
ALTER TABLE core.memberships
    ADD CONSTRAINT memberships_role_fkey FOREIGN KEY (role) REFERENCES core.roles (role);

----------------------------------------------------------------------------------------
-- invitations: single-use, expiring, stored hashed
----------------------------------------------------------------------------------------
CREATE TABLE core.invitations (
    tenant_id      uuid NOT NULL REFERENCES core.tenants (tenant_id),
    invitation_id  uuid NOT NULL DEFAULT gen_random_uuid(),
    email          text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
    role           text NOT NULL,
    token_hash     bytea NOT NULL CHECK (length(token_hash) = 32),
    invited_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    accepted_at    timestamptz,
    accepted_by    uuid,
    revoked_at     timestamptz,
    PRIMARY KEY (tenant_id, invitation_id),
    CONSTRAINT invitations_one_outcome CHECK (accepted_at IS NULL OR revoked_at IS NULL)
);
COMMENT ON TABLE core.invitations IS 'Invitations to join a tenant; the token is single-use and expires.';
-- one open invitation per email and tenant
CREATE UNIQUE INDEX invitations_open_email_key ON core.invitations (tenant_id, lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
SELECT core.distribute_table('core.invitations', 'core.tenants');
ALTER TABLE core.invitations
    ADD CONSTRAINT invitations_role_fkey FOREIGN KEY (role) REFERENCES core.roles (role);

----------------------------------------------------------------------------------------
-- sessions and refresh tokens: a session is one login in one tenant; each refresh
-- rotates its token, and a used token presented again revokes the session
----------------------------------------------------------------------------------------
CREATE TABLE core.sessions (
    tenant_id          uuid NOT NULL,
    session_id         uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id            uuid NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz,
    revoked_reason     text CHECK (revoked_reason IN ('logout', 'revoked', 'revoked_all', 'refresh_reuse')),
    user_agent         text CHECK (length(user_agent) <= 500),
    ip                 inet,
    PRIMARY KEY (tenant_id, session_id),
    -- leaving the tenant ends the sessions in it
    FOREIGN KEY (tenant_id, user_id) REFERENCES core.memberships (tenant_id, user_id) ON DELETE CASCADE,
    CONSTRAINT sessions_revocation_has_reason CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
COMMENT ON TABLE core.sessions IS 'Logins: one per user and tenant; revoking one stops its access tokens at once.';
CREATE INDEX sessions_user_idx ON core.sessions (user_id) WHERE revoked_at IS NULL;
SELECT core.distribute_table('core.sessions', 'core.tenants');

CREATE TABLE core.refresh_tokens (
    tenant_id   uuid NOT NULL,
    token_hash  bytea NOT NULL CHECK (length(token_hash) = 32),
    session_id  uuid NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,  -- set when rotated; presenting it again is reuse
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, session_id) REFERENCES core.sessions (tenant_id, session_id) ON DELETE CASCADE
);
COMMENT ON TABLE core.refresh_tokens IS 'Refresh tokens of a session (hashed); all but the newest are used.';
SELECT core.distribute_table('core.refresh_tokens', 'core.tenants');

----------------------------------------------------------------------------------------
-- API keys: tnt_<prefix>_<secret>; the prefix finds the tenant, the hash proves the key
----------------------------------------------------------------------------------------
CREATE TABLE core.api_keys (
    tenant_id     uuid NOT NULL REFERENCES core.tenants (tenant_id),
    key_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    prefix        text NOT NULL CHECK (prefix ~ '^[a-z0-9]{12}$'),
    key_hash      bytea NOT NULL CHECK (length(key_hash) = 32),
    name          text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    scopes        text[] NOT NULL CHECK (cardinality(scopes) >= 1),
    created_by    uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    rotated_to    uuid,  -- the key that replaced this one
    last_used_at  timestamptz,
    last_used_ip  inet,
    use_count     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, key_id),
    UNIQUE (tenant_id, prefix)
);
COMMENT ON TABLE core.api_keys IS 'API keys of a tenant: SHA-256 of the key only, scopes, expiry, usage.';
SELECT core.distribute_table('core.api_keys', 'core.tenants');

-- Prefixes are globally unique and tell which tenant's shard holds the key.
CREATE TABLE core.api_key_prefixes (
    prefix     text PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    key_id     uuid NOT NULL
);
COMMENT ON TABLE core.api_key_prefixes IS '@reference Global API-key prefix -> tenant lookup.';
SELECT core.make_reference_table('core.api_key_prefixes');

----------------------------------------------------------------------------------------
-- idempotency keys: the first response to a POST, replayed for a repeated key
----------------------------------------------------------------------------------------
CREATE TABLE core.idempotency_keys (
    tenant_id     uuid NOT NULL REFERENCES core.tenants (tenant_id),
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    actor_id      uuid NOT NULL,  -- the user or API key whose request it was: only they replay it
    request_hash  bytea NOT NULL CHECK (length(request_hash) = 32),
    method        text NOT NULL,
    path          text NOT NULL,
    status        integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
COMMENT ON TABLE core.idempotency_keys IS 'Idempotency-Key of POST requests per tenant: request hash and first response.';
SELECT core.distribute_table('core.idempotency_keys', 'core.tenants');

----------------------------------------------------------------------------------------
-- platform-admin actions: who did what to which tenant
----------------------------------------------------------------------------------------
CREATE TABLE core.platform_admin_actions (
    tenant_id      uuid NOT NULL REFERENCES core.tenants (tenant_id),
    action_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    admin_user_id  uuid NOT NULL,
    action         text NOT NULL CHECK (action IN ('create', 'suspend', 'reactivate', 'delete')),
    request_id     text,
    at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, action_id)
);
COMMENT ON TABLE core.platform_admin_actions IS 'Every platform-admin action on a tenant, with the admin who took it.';
SELECT core.distribute_table('core.platform_admin_actions', 'core.tenants');
