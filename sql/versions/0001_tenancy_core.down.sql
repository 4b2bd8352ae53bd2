-- 0001 tenancy core, undone: drops every object of the revision (and, with CASCADE,
-- the repeatable functions, triggers, policies and views that live in its schemas).
-- Roles are cluster-wide and may serve other databases: they are left in place.
DROP SCHEMA analytics CASCADE;
DROP SCHEMA admin CASCADE;
DROP SCHEMA ops CASCADE;
DROP SCHEMA api CASCADE;
DROP SCHEMA core CASCADE;
