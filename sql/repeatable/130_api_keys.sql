-- API keys of a tenant: created, listed, rotated, revoked, and authenticated on every
-- request that presents one. Keys look like tnt_<prefix>_<secret>; the API makes them
-- and passes the prefix and the SHA-256 of the whole key: the key itself is shown once
-- and never stored.
--
-- A key is bounded by a member of the tenant (core.api_keys.user_id: its creator, or for
-- a key made by a key, that key's member):
--   * per request, it acts with the intersection of its scopes and that member's
--     current role (core.api_key_scopes: a demoted member's keys shrink at once), and
--     not at all once the member has left: removing a member revokes their keys
--     (core.revoke_member_api_keys, a trigger on core.memberships);
--   * a key's scopes must be among its creator's (TA050), and a key made (or rotated)
--     by a key expires no later than that key (TA051; omitted: it inherits the expiry);
--   * revoking another member's key (or rotating it: TA050) needs every scope it has
--     (TA052): a developer cannot revoke an owner's wider key.

----------------------------------------------------------------------------------------
-- scopes and storage
----------------------------------------------------------------------------------------

-- The scopes a live key acts with now: its own, limited to those its member's current
-- role grants ('{}' when the key is revoked or expired, or its member has left).
-- Invoker rights, like core.current_scopes(), which calls it for every request made with
-- a key (docs/citus.md, fact 16); one router query on the tenant's shard.
CREATE OR REPLACE FUNCTION core.api_key_scopes(p_tenant_id uuid, p_key_id uuid)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(array_agg(s.scope ORDER BY s.scope), '{}')
      FROM core.api_keys AS k
      JOIN core.memberships AS m ON m.tenant_id = k.tenant_id AND m.user_id = k.user_id
      CROSS JOIN LATERAL unnest(k.scopes) AS s (scope)
     WHERE k.tenant_id = p_tenant_id AND k.key_id = p_key_id
       AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
       AND EXISTS (SELECT 1 FROM core.role_scopes AS rs WHERE rs.role = m.role AND rs.scope = s.scope)
$$;

-- The key the context's actor is, when it is one (a row of NULLs for a user).
CREATE OR REPLACE FUNCTION core.acting_api_key(p_tenant_id uuid)
RETURNS core.api_keys
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key core.api_keys;
BEGIN
    IF core.current_actor_type() = 'api_key' THEN
        SELECT * INTO v_key FROM core.api_keys WHERE tenant_id = p_tenant_id AND key_id = core.current_actor_id();
    END IF;
    RETURN v_key;
END
$$;

-- Raise unless every scope exists (22023) and the actor holds it (TA050).
CREATE OR REPLACE FUNCTION core.assert_grantable_scopes(p_scopes text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text;
    v_missing text[];
BEGIN
    IF p_scopes IS NULL OR cardinality(p_scopes) = 0 THEN
        RAISE EXCEPTION 'a key needs at least one scope' USING ERRCODE = '22023', COLUMN = 'scopes';
    END IF;
    SELECT s INTO v_unknown FROM unnest(p_scopes) AS s
     WHERE NOT EXISTS (SELECT 1 FROM core.scopes AS c WHERE c.scope = s) LIMIT 1;
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'unknown scope %', v_unknown USING ERRCODE = '22023', COLUMN = 'scopes';
    END IF;
    SELECT array_agg(s ORDER BY s) INTO v_missing FROM unnest(p_scopes) AS s
     WHERE NOT s = ANY (core.current_scopes());
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'a key cannot have scopes its creator lacks: %', array_to_string(v_missing, ', ') USING
            ERRCODE = 'TA050', COLUMN = 'scopes';
    END IF;
END
$$;

-- The expiry of a key made (or rotated) by the actor: p_expires_at, which may not be
-- later than the acting key's own expiry (TA051); omitted (NULL), the acting key's. A
-- user's keys may expire when they like.
CREATE OR REPLACE FUNCTION core.bounded_key_expiry(p_tenant_id uuid, p_expires_at timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_acting core.api_keys := core.acting_api_key(p_tenant_id);
BEGIN
    IF v_acting.expires_at IS NULL THEN
        RETURN p_expires_at;
    ELSIF p_expires_at IS NULL THEN
        RETURN v_acting.expires_at;
    ELSIF p_expires_at > v_acting.expires_at THEN
        RAISE EXCEPTION 'a key cannot outlive the key that makes it (which expires at %)', v_acting.expires_at USING
            ERRCODE = 'TA051', COLUMN = 'expires_at',
            HINT = 'Omit expires_at to get the acting key''s expiry, or ask a member for a longer-lived key.';
    END IF;
    RETURN p_expires_at;
END
$$;

-- Raise TA052 unless the actor may revoke (or rotate) p_key: a user manages their own
-- keys; anyone else, a key included, needs every scope the key has.
CREATE OR REPLACE FUNCTION core.assert_may_manage_key(p_key core.api_keys)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_missing text[];
BEGIN
    IF core.current_actor_type() = 'user' AND core.current_actor_id() = p_key.user_id THEN
        RETURN;
    END IF;
    SELECT array_agg(s ORDER BY s) INTO v_missing FROM unnest(p_key.scopes) AS s
     WHERE NOT s = ANY (core.current_scopes());
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'managing an API key that is not your own needs every scope it has; you lack: %',
            array_to_string(v_missing, ', ') USING
            ERRCODE = 'TA052',
            HINT = 'Ask the key''s member, or someone who holds all its scopes.';
    END IF;
END
$$;

-- Insert a key and its global prefix entry. The key is created by the context's actor
-- and bounded by its member: the acting user, or the acting key's member.
CREATE OR REPLACE FUNCTION core.insert_api_key(
    p_tenant_id uuid, p_prefix text, p_key_hash bytea, p_name text, p_scopes text[], p_expires_at timestamptz
)
RETURNS core.api_keys
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key core.api_keys;
    -- sorted and de-duplicated first: Citus allows no subquery in INSERT ... VALUES
    -- (docs/citus.md, fact 15)
    v_scopes text[] := ARRAY(SELECT DISTINCT s FROM unnest(p_scopes) AS s ORDER BY s);
    v_user_id uuid := COALESCE((core.acting_api_key(p_tenant_id)).user_id, core.current_actor_id());
BEGIN
    INSERT INTO core.api_keys (tenant_id, prefix, key_hash, name, scopes, created_by, user_id, expires_at)
    VALUES (p_tenant_id, p_prefix, p_key_hash, p_name, v_scopes, core.current_actor_id(), v_user_id, p_expires_at)
    RETURNING * INTO v_key;
    INSERT INTO core.api_key_prefixes (prefix, tenant_id, key_id) VALUES (p_prefix, p_tenant_id, v_key.key_id);
    RETURN v_key;
END
$$;

----------------------------------------------------------------------------------------
-- keys
----------------------------------------------------------------------------------------

-- Create a key with a subset of the creator's scopes, optionally expiring (a key made
-- by a key: no later than that key).
CREATE OR REPLACE FUNCTION api.create_api_key(
    p_tenant_id uuid, p_prefix text, p_key_hash bytea, p_name text, p_scopes text[],
    p_expires_at timestamptz DEFAULT NULL
)
RETURNS core.api_keys
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'keys:manage');
    PERFORM core.assert_grantable_scopes(p_scopes);
    IF p_expires_at <= now() THEN
        RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023', COLUMN = 'expires_at';
    END IF;
    RETURN core.insert_api_key(p_tenant_id, p_prefix, p_key_hash, p_name, p_scopes,
                               core.bounded_key_expiry(p_tenant_id, p_expires_at));
END
$$;

-- The tenant's keys, newest first (revoked and expired ones included).
CREATE OR REPLACE FUNCTION api.list_api_keys(p_tenant_id uuid)
RETURNS SETOF core.api_keys
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'keys:manage');
    RETURN QUERY SELECT * FROM core.api_keys WHERE tenant_id = p_tenant_id ORDER BY created_at DESC, key_id;
END
$$;

-- Revoke a key at once (idempotent: revoking a revoked key changes nothing). Another
-- member's key needs every scope it has (TA052).
CREATE OR REPLACE FUNCTION api.revoke_api_key(p_tenant_id uuid, p_key_id uuid)
RETURNS core.api_keys
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key core.api_keys;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'keys:manage');
    SELECT * INTO v_key FROM core.api_keys WHERE tenant_id = p_tenant_id AND key_id = p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('API key', p_key_id);
    END IF;
    IF v_key.revoked_at IS NOT NULL THEN
        RETURN v_key;
    END IF;
    PERFORM core.assert_may_manage_key(v_key);
    UPDATE core.api_keys SET revoked_at = now()
     WHERE tenant_id = p_tenant_id AND key_id = p_key_id
    RETURNING * INTO v_key;
    RETURN v_key;
END
$$;

-- Rotate a live key: a new key with the same name, scopes and expiry, created by the
-- caller (who must hold those scopes: TA050) and bounded by the caller's member; rotated
-- by a key, it expires no later than that key. The old one keeps working for p_grace
-- (0: revoked now) and then expires.
CREATE OR REPLACE FUNCTION api.rotate_api_key(
    p_tenant_id uuid, p_key_id uuid, p_new_prefix text, p_new_key_hash bytea, p_grace interval DEFAULT '0'
)
RETURNS core.api_keys
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old core.api_keys;
    v_new core.api_keys;
    v_revoked_at timestamptz;
    v_expires_at timestamptz;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'keys:manage');
    IF p_grace IS NULL OR p_grace < interval '0' OR p_grace > interval '30 days' THEN
        RAISE EXCEPTION 'the grace period must be between 0 and 30 days' USING ERRCODE = '22023', COLUMN = 'grace_seconds';
    END IF;
    SELECT * INTO v_old FROM core.api_keys
     WHERE tenant_id = p_tenant_id AND key_id = p_key_id
       AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('live API key', p_key_id);
    END IF;
    -- the new key is the rotator's: it may not carry scopes the rotator lacks (TA050)
    PERFORM core.assert_grantable_scopes(v_old.scopes);
    v_new := core.insert_api_key(p_tenant_id, p_new_prefix, p_new_key_hash, v_old.name, v_old.scopes,
                                 LEAST(v_old.expires_at, core.bounded_key_expiry(p_tenant_id, NULL)));
    IF p_grace = interval '0' THEN
        v_revoked_at := now();
        v_expires_at := v_old.expires_at;
    ELSE
        v_expires_at := LEAST(COALESCE(v_old.expires_at, 'infinity'), now() + p_grace);
    END IF;
    -- plain values: Citus allows no now() inside CASE in a modification
    -- (docs/citus.md, fact 14)
    UPDATE core.api_keys SET
        rotated_to = v_new.key_id,
        revoked_at = v_revoked_at,
        expires_at = v_expires_at
     WHERE tenant_id = p_tenant_id AND key_id = p_key_id;
    RETURN v_new;
END
$$;

----------------------------------------------------------------------------------------
-- authenticating
----------------------------------------------------------------------------------------

-- Runs before a tenant context exists: SECURITY DEFINER with search_path `pg_catalog, pg_temp` (temp last). It
-- returns an outcome instead of raising, as the login functions do (140_sessions.sql).

-- Authenticate an API key by its prefix and SHA-256. Outcomes: ok (usage recorded;
-- scopes: what the key may do now, core.api_key_scopes), invalid, revoked (also: its
-- member has left the tenant), expired. The prefix lookup finds the tenant's shard.
CREATE OR REPLACE FUNCTION auth.authenticate_api_key(p_prefix text, p_key_hash bytea, p_ip inet DEFAULT NULL)
RETURNS TABLE (outcome text, tenant_id uuid, key_id uuid, scopes text[], requests_per_minute integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key core.api_keys;
BEGIN
    -- two steps, so the key's own lookup is a router query on the tenant's shard
    SELECT p.tenant_id, p.key_id INTO tenant_id, key_id FROM core.api_key_prefixes AS p WHERE p.prefix = p_prefix;
    SELECT k.* INTO v_key FROM core.api_keys AS k
     WHERE k.tenant_id = authenticate_api_key.tenant_id AND k.key_id = authenticate_api_key.key_id;
    IF NOT FOUND OR v_key.key_hash <> p_key_hash THEN
        outcome := 'invalid'; RETURN NEXT; RETURN;
    END IF;
    tenant_id := v_key.tenant_id;
    key_id := v_key.key_id;
    IF v_key.revoked_at IS NOT NULL THEN
        outcome := 'revoked';
    ELSIF v_key.expires_at <= now() THEN
        outcome := 'expired';
    ELSIF NOT EXISTS (SELECT 1 FROM core.memberships AS m
                       WHERE m.tenant_id = v_key.tenant_id AND m.user_id = v_key.user_id) THEN
        outcome := 'revoked';
    ELSE
        scopes := core.api_key_scopes(v_key.tenant_id, v_key.key_id);
        UPDATE core.api_keys AS k
           SET last_used_at = now(), last_used_ip = p_ip, use_count = k.use_count + 1
         WHERE k.tenant_id = v_key.tenant_id AND k.key_id = v_key.key_id;
        requests_per_minute := core.plan_requests_per_minute(v_key.tenant_id);
        outcome := 'ok';
    END IF;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- members leaving
----------------------------------------------------------------------------------------

-- Row trigger on core.memberships: a member who leaves (or is removed) takes their keys
-- with them, keys made by their keys included (same user_id). Invoker rights: the api
-- role revokes its own tenant's keys through RLS (docs/citus.md, fact 16).
CREATE OR REPLACE FUNCTION core.revoke_member_api_keys()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE core.api_keys SET revoked_at = now()
     WHERE tenant_id = OLD.tenant_id AND user_id = OLD.user_id AND revoked_at IS NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER revoke_member_api_keys
    AFTER DELETE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.revoke_member_api_keys();

----------------------------------------------------------------------------------------
-- tenant status
----------------------------------------------------------------------------------------

-- no new keys for a suspended or deleted tenant (100_tenants.sql); new keys only: using
-- a key (last_used_at, use_count) is a read of the tenant's data
CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT ON core.api_keys
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();
