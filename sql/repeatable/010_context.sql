-- Tenant context: the per-transaction settings the API and jobs SET LOCAL, read through
-- one STABLE SQL function each; every feature reads the context only through these.
-- Missing or empty settings read as NULL, so a policy comparing tenant_id to NULL
-- matches no row: no context, no rows (fail closed).
--
-- These are plain SQL functions (not SECURITY DEFINER) so PostgreSQL inlines them into
-- policies; on Citus they are also the form that works inside shard policies
-- (docs/citus.md, fact 9). The settings they read reach the workers only when set
-- with SET LOCAL, never with set_config() (facts 1 and 8).

----------------------------------------------------------------------------------------
-- readers
----------------------------------------------------------------------------------------

-- The tenant of the current transaction, or NULL.
CREATE OR REPLACE FUNCTION core.current_tenant_id()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- The user or key acting in the current transaction, or NULL.
CREATE OR REPLACE FUNCTION core.current_actor_id()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('app.actor_id', true), '')::uuid $$;

-- What kind of actor that is ('user', 'api_key', 'system', 'platform_admin'), or NULL.
CREATE OR REPLACE FUNCTION core.current_actor_type()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('app.actor_type', true), '') $$;

-- The request that opened the transaction (X-Request-ID), or NULL.
CREATE OR REPLACE FUNCTION core.current_request_id()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('app.request_id', true), '') $$;

-- The session of the user acting in the current transaction (the access token's), or
-- NULL. The after-login auth.* functions act only for the user of a live session
-- (core.context_session, 140_sessions.sql).
CREATE OR REPLACE FUNCTION core.current_session_id()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(pg_catalog.current_setting('app.session_id', true), '')::pg_catalog.uuid $$;
