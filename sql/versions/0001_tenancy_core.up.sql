-- 0001 tenancy core: schemas, the plan catalog, tenants and the first tenant workload
-- (projects and tasks).
--
-- Versioned: applied once by migrations/versions/0001_tenancy_core.py and never edited
-- after release; a later change is a new file. Functions, triggers, policies and
-- distribution are repeatable objects in sql/repeatable/ and policies/.
--
-- Citus rules obeyed here on plain PostgreSQL too: every tenant table has tenant_id in
-- its primary key, unique constraints and foreign keys; catalogs have no tenant_id.

----------------------------------------------------------------------------------------
-- Schemas: one per concern
----------------------------------------------------------------------------------------
CREATE SCHEMA core;       -- tables (private: reached through api.* functions)
CREATE SCHEMA api;        -- the functions the API may call: its contract
CREATE SCHEMA ops;        -- narrow cross-tenant functions for jobs (SECURITY DEFINER)
CREATE SCHEMA admin;      -- platform-admin functions over tenants (SECURITY DEFINER)
CREATE SCHEMA analytics;  -- views for analysts

----------------------------------------------------------------------------------------
-- Citus distribution helpers: one code path for single-node PostgreSQL and Citus.
-- Each does nothing when the citus extension is absent, and nothing when the object is
-- already distributed. A table is distributed right after it is created, before any
-- table with a foreign key to it exists: Citus cannot distribute a table that a local
-- table references. (Versioned, not repeatable: later revisions call them.)
----------------------------------------------------------------------------------------

-- Whether this database is a Citus coordinator (the extension is installed).
CREATE OR REPLACE FUNCTION core.citus_enabled()
RETURNS boolean
LANGUAGE sql STABLE
AS $$ SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') $$;

----------------------------------------------------------------------------------------
-- distribution helpers: tables
----------------------------------------------------------------------------------------

-- Distribute a tenant table on tenant_id, colocated with p_colocate_with (NULL: this
-- table starts the colocation group, as core.tenants does).
CREATE OR REPLACE FUNCTION core.distribute_table(p_table regclass, p_colocate_with regclass DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT core.citus_enabled() THEN
        RETURN;
    END IF;
    -- (a table that is merely a Citus-managed local table, as Citus makes of a table
    -- with a foreign key to a reference table, still gets distributed)
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = p_table AND partmethod = 'h') THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT create_distributed_table(%L, %L, colocate_with => %L)',
                   p_table, 'tenant_id', COALESCE(p_colocate_with::text, 'none'));
END
$$;

-- Make a catalog or global lookup a reference table (a copy on every node).
CREATE OR REPLACE FUNCTION core.make_reference_table(p_table regclass)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT core.citus_enabled() THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = p_table AND repmodel = 't') THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT create_reference_table(%L)', p_table);
END
$$;

----------------------------------------------------------------------------------------
-- distribution helpers: functions
----------------------------------------------------------------------------------------

-- Distribute a function by its tenant argument, colocated with core.tenants, so Citus
-- can push a call down to the worker that holds the tenant's shard.
CREATE OR REPLACE FUNCTION core.distribute_function(p_function regprocedure, p_tenant_arg text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT core.citus_enabled() THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_dist_object
               WHERE classid = 'pg_catalog.pg_proc'::regclass AND objid = p_function
                 AND distribution_argument_index IS NOT NULL) THEN
        RETURN;
    END IF;
    EXECUTE format('SELECT create_distributed_function(%L, %L, colocate_with => %L)',
                   p_function::text, p_tenant_arg, 'core.tenants');
END
$$;

----------------------------------------------------------------------------------------
-- plans: the catalog of tiers (a reference table on Citus)
----------------------------------------------------------------------------------------
CREATE TABLE core.plans (
    plan_id      text PRIMARY KEY CHECK (plan_id ~ '^[a-z][a-z0-9_]{1,30}$'),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price_cents  integer NOT NULL CHECK (price_cents >= 0),
    currency     char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    -- resource -> maximum, e.g. {"projects": 3, "tasks": 200}; absent = unlimited
    limits       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object'),
    features     text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE core.plans IS 'Catalog of plans: price, limits per resource and features.';
SELECT core.make_reference_table('core.plans');

----------------------------------------------------------------------------------------
-- tenants: one row per customer organisation (distributed on tenant_id)
----------------------------------------------------------------------------------------
CREATE TABLE core.tenants (
    tenant_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug          text NOT NULL CHECK (slug ~ '^[a-z0-9](-?[a-z0-9])*$' AND length(slug) BETWEEN 3 AND 63),
    name          text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    plan_id       text NOT NULL REFERENCES core.plans (plan_id),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    settings      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    suspended_at  timestamptz,
    deleted_at    timestamptz,
    -- the timestamps tell the status's story and cannot contradict it
    CONSTRAINT tenants_suspended_at_matches_status CHECK ((status = 'suspended') = (suspended_at IS NOT NULL)),
    CONSTRAINT tenants_deleted_at_matches_status CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
COMMENT ON TABLE core.tenants IS 'Customer organisations. A suspended tenant can read but not write; a deleted one can do neither.';
-- the colocation anchor: every tenant table is colocated with it
SELECT core.distribute_table('core.tenants');

-- Slugs are globally unique, but a unique index on a distributed table must include
-- tenant_id (Citus), so uniqueness lives in this small global lookup, written in the
-- same transaction as the tenant by admin.create_tenant().
CREATE TABLE core.tenant_slugs (
    slug       text PRIMARY KEY,
    tenant_id  uuid NOT NULL UNIQUE
);
COMMENT ON TABLE core.tenant_slugs IS '@reference Global slug -> tenant lookup (slugs are unique across tenants).';
SELECT core.make_reference_table('core.tenant_slugs');

----------------------------------------------------------------------------------------
-- projects and tasks: the first tenant workload
----------------------------------------------------------------------------------------
CREATE TABLE core.projects (
    tenant_id    uuid NOT NULL REFERENCES core.tenants (tenant_id),
    project_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (tenant_id, project_id)
);
COMMENT ON TABLE core.projects IS 'Projects of a tenant; soft-deleted with their tasks.';

-- live project names are unique within a tenant (case-insensitive)
CREATE UNIQUE INDEX projects_live_name_key ON core.projects (tenant_id, lower(name)) WHERE deleted_at IS NULL;
-- keyset pagination: (created_at, project_id) within a tenant
CREATE INDEX projects_tenant_created_idx ON core.projects (tenant_id, created_at, project_id);
SELECT core.distribute_table('core.projects', 'core.tenants');

CREATE TABLE core.tasks (
    tenant_id    uuid NOT NULL,
    task_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    project_id   uuid NOT NULL,
    title        text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 500),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    status       text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'done', 'cancelled')),
    priority     text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    assignee_id  uuid,
    due_date     date,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (tenant_id, task_id),
    -- the tenant_id in the key makes a cross-tenant reference impossible
    FOREIGN KEY (tenant_id, project_id) REFERENCES core.projects (tenant_id, project_id)
);
COMMENT ON TABLE core.tasks IS 'Tasks of a project; soft-deleted alone or with their project.';

CREATE INDEX tasks_tenant_project_idx ON core.tasks (tenant_id, project_id, created_at, task_id);
CREATE INDEX tasks_tenant_created_idx ON core.tasks (tenant_id, created_at, task_id);
CREATE INDEX tasks_tenant_assignee_idx ON core.tasks (tenant_id, assignee_id) WHERE assignee_id IS NOT NULL;
SELECT core.distribute_table('core.tasks', 'core.tenants');
