-- The transactional outbox: domain events written in the transaction of the change that
-- causes them, so a committed change always has its event and a rolled-back one never
-- has (a refused write, TQ001 or any error, leaves nothing). Row triggers on projects,
-- tasks, memberships, invitations and API keys emit them here; the quota functions of
-- 070_quotas.sql emit quota.exceeded and usage.threshold_reached through
-- core.note_quota_change. 520_webhooks.sql fans the events out to webhook deliveries.
-- Table: sql/versions/0011_webhooks.up.sql.
--
-- An event is (event_id, event_type, occurred_at, payload): the payload is the
-- resource's public JSON, picked by an allowlist of columns (never a hash, a token or a
-- secret: a column added later is not published until it is listed here). The
-- receiver sees {id, type, timestamp, tenant_id, data} (jobs/webhook_delivery.py).
--
-- Invoker rights throughout: a trigger runs as the writer (the api role, through RLS:
-- it may INSERT its own tenant's events and nothing else on the table), and a definer
-- function here would follow the caller's writes to the same shard (docs/citus.md,
-- fact 16). The triggers run on the shard of the changed row and write a colocated
-- row of the same tenant (fact 2); the INSERT has plain values only (facts 14, 15).

----------------------------------------------------------------------------------------
-- emitting
----------------------------------------------------------------------------------------

-- The event types there are, in one place: endpoints subscribe to these (or '*').
CREATE OR REPLACE FUNCTION core.webhook_event_types()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY[
        'project.created', 'project.updated', 'project.deleted', 'project.restored',
        'task.created', 'task.updated', 'task.deleted', 'task.restored',
        'member.added', 'member.role_changed', 'member.removed',
        'member.invited', 'invitation.accepted', 'invitation.revoked',
        'api_key.created', 'api_key.revoked',
        'quota.exceeded', 'usage.threshold_reached',
        'webhook.test'
    ]::text[]
$$;

-- The members of p_row named in p_keys (an allowlist: what a payload may publish).
CREATE OR REPLACE FUNCTION core.jsonb_pick(p_row jsonb, p_keys text[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT COALESCE(pg_catalog.jsonb_object_agg(e.key, e.value), '{}'::jsonb)
      FROM pg_catalog.jsonb_each(p_row) AS e
     WHERE e.key = ANY (p_keys)
$$;

-- Write one event of p_tenant_id to the outbox, in the caller's transaction; its id.
-- occurred_at is the clock, not the transaction's start, so the events of one
-- transaction keep their order (deliveries to an endpoint follow it). p_endpoint_id
-- names the one endpoint of a test event (NULL: every subscribed endpoint).
CREATE OR REPLACE FUNCTION core.emit_event(
    p_tenant_id uuid, p_event_type text, p_payload jsonb, p_endpoint_id uuid DEFAULT NULL
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_event_id uuid := gen_random_uuid();
    v_at timestamptz := clock_timestamp();
BEGIN
    INSERT INTO core.outbox_events (tenant_id, event_id, event_type, payload, occurred_at, endpoint_id)
    VALUES (p_tenant_id, v_event_id, p_event_type, p_payload, v_at, p_endpoint_id);
    RETURN v_event_id;
END
$$;

----------------------------------------------------------------------------------------
-- quota events (called by core.apply_quota_delta and core.consume_metered,
-- 070_quotas.sql, after a counter moved)
----------------------------------------------------------------------------------------

-- A counter of p_resource went from p_before to p_after under p_limit: emit
-- usage.threshold_reached when it crossed the resource's warning share
-- (warn_at_percent, 80 by default) and quota.exceeded when it reached or passed the
-- limit. Crossings only, so a tenant over its limit (billed overage) gets one event, not
-- one per change. A refused change rolls back with its events: quota.exceeded means
-- "a committed change took the counter to its limit or beyond".
CREATE OR REPLACE FUNCTION core.note_quota_change(
    p_tenant_id uuid, p_resource text, p_before numeric, p_after numeric, p_limit numeric
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_warn smallint;
    v_threshold numeric;
BEGIN
    IF p_limit IS NULL OR p_after <= p_before THEN
        RETURN;
    END IF;
    SELECT r.warn_at_percent INTO v_warn FROM core.quota_resources AS r WHERE r.resource = p_resource;
    v_threshold := p_limit * COALESCE(v_warn, 80) / 100.0;
    IF p_before < v_threshold AND p_after >= v_threshold THEN
        PERFORM core.emit_event(p_tenant_id, 'usage.threshold_reached', jsonb_build_object(
            'resource', p_resource, 'used', p_after, 'limit', p_limit, 'warn_at_percent', COALESCE(v_warn, 80)));
    END IF;
    IF p_before < p_limit AND p_after >= p_limit THEN
        PERFORM core.emit_event(p_tenant_id, 'quota.exceeded', jsonb_build_object(
            'resource', p_resource, 'used', p_after, 'limit', p_limit, 'over_limit', p_after > p_limit));
    END IF;
END
$$;

----------------------------------------------------------------------------------------
-- row triggers on the tenant's resources (other features' tables: the rule is this file's)
----------------------------------------------------------------------------------------

-- core.projects: project.created, project.updated (name, description), project.deleted
-- (the soft delete), project.restored. AFTER: only rows really written count.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.emit_project_events()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_type := 'project.created';
    ELSIF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        v_type := 'project.deleted';
    ELSIF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
        v_type := 'project.restored';
    ELSIF (OLD.name, OLD.description) IS DISTINCT FROM (NEW.name, NEW.description) THEN
        v_type := 'project.updated';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM core.emit_event(NEW.tenant_id, v_type, core.jsonb_pick(to_jsonb(NEW), ARRAY[
        'project_id', 'name', 'description', 'created_by', 'created_at', 'updated_at', 'deleted_at']));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER emit_project_events
    AFTER INSERT OR UPDATE ON core.projects
    FOR EACH ROW EXECUTE FUNCTION core.emit_project_events();

-- core.tasks: task.created, task.updated, task.deleted (alone or with its project),
-- task.restored.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.emit_task_events()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_type := 'task.created';
    ELSIF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        v_type := 'task.deleted';
    ELSIF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL THEN
        v_type := 'task.restored';
    ELSIF (OLD.project_id, OLD.title, OLD.description, OLD.status, OLD.priority, OLD.assignee_id, OLD.due_date)
          IS DISTINCT FROM
          (NEW.project_id, NEW.title, NEW.description, NEW.status, NEW.priority, NEW.assignee_id, NEW.due_date) THEN
        v_type := 'task.updated';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM core.emit_event(NEW.tenant_id, v_type, core.jsonb_pick(to_jsonb(NEW), ARRAY[
        'task_id', 'project_id', 'title', 'description', 'status', 'priority', 'assignee_id', 'due_date',
        'created_by', 'created_at', 'updated_at', 'deleted_at']));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER emit_task_events
    AFTER INSERT OR UPDATE ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.emit_task_events();

-- core.memberships: member.added, member.role_changed, member.removed.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.emit_member_events()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys text[] := ARRAY['user_id', 'role', 'created_at'];
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM core.emit_event(NEW.tenant_id, 'member.added', core.jsonb_pick(to_jsonb(NEW), v_keys));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM core.emit_event(OLD.tenant_id, 'member.removed', core.jsonb_pick(to_jsonb(OLD), v_keys));
    ELSIF OLD.role IS DISTINCT FROM NEW.role THEN
        PERFORM core.emit_event(NEW.tenant_id, 'member.role_changed',
                                core.jsonb_pick(to_jsonb(NEW), v_keys) || jsonb_build_object('previous_role', OLD.role));
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER emit_member_events
    AFTER INSERT OR DELETE OR UPDATE OF role ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.emit_member_events();

-- core.invitations: member.invited, invitation.accepted, invitation.revoked (the token's
-- hash is never published).
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.emit_invitation_events()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_type := 'member.invited';
    ELSIF OLD.accepted_at IS NULL AND NEW.accepted_at IS NOT NULL THEN
        v_type := 'invitation.accepted';
    ELSIF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
        v_type := 'invitation.revoked';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM core.emit_event(NEW.tenant_id, v_type, core.jsonb_pick(to_jsonb(NEW), ARRAY[
        'invitation_id', 'email', 'role', 'invited_by', 'created_at', 'expires_at', 'accepted_at', 'revoked_at']));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER emit_invitation_events
    AFTER INSERT OR UPDATE OF accepted_at, revoked_at ON core.invitations
    FOR EACH ROW EXECUTE FUNCTION core.emit_invitation_events();

-- core.api_keys: api_key.created, api_key.revoked (also the old key of a rotation, with
-- rotated_to). Not on a key's use (last_used_at, use_count): the trigger names its columns.
-- Definer: bookkeeping for the row that fired it (docs/citus.md, fact 38).
CREATE OR REPLACE FUNCTION core.emit_api_key_events()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_type text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        v_type := 'api_key.created';
    ELSIF OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL THEN
        v_type := 'api_key.revoked';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM core.emit_event(NEW.tenant_id, v_type, core.jsonb_pick(to_jsonb(NEW), ARRAY[
        'key_id', 'prefix', 'name', 'scopes', 'created_by', 'created_at', 'expires_at', 'revoked_at', 'rotated_to']));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER emit_api_key_events
    AFTER INSERT OR UPDATE OF revoked_at ON core.api_keys
    FOR EACH ROW EXECUTE FUNCTION core.emit_api_key_events();
