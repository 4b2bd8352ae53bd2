-- 0011 webhooks, undone: the outbox, endpoints, deliveries and attempts go, and the
-- event triggers that 510_outbox.sql attaches to other features' tables, so the schema
-- left at 0010 works without the outbox functions.
DROP TRIGGER IF EXISTS emit_project_events ON core.projects;
DROP TRIGGER IF EXISTS emit_task_events ON core.tasks;
DROP TRIGGER IF EXISTS emit_member_events ON core.memberships;
DROP TRIGGER IF EXISTS emit_invitation_events ON core.invitations;
DROP TRIGGER IF EXISTS emit_api_key_events ON core.api_keys;

-- CASCADE: with the repeatable functions on their row types
DROP TABLE core.webhook_attempts CASCADE;
DROP TABLE core.webhook_deliveries CASCADE;
DROP TABLE core.webhook_endpoints CASCADE;
DROP TABLE core.outbox_events CASCADE;
