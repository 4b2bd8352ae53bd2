-- Citus settings: the database settings Citus needs before any feature file creates a
-- trigger (nothing on single-node PostgreSQL). The distribution helpers themselves
-- (core.citus_enabled, core.distribute_table, core.make_reference_table,
-- core.distribute_function) are versioned, in sql/versions/0001_tenancy_core.up.sql.

----------------------------------------------------------------------------------------
-- triggers on distributed tables
----------------------------------------------------------------------------------------

-- Triggers on distributed tables need citus.enable_unsafe_triggers (docs/citus.md,
-- fact 2): set it for the database (new sessions) and for this migrating session.
DO $$
BEGIN
    IF core.citus_enabled() THEN
        EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
        SET citus.enable_unsafe_triggers = on;
    END IF;
END
$$;
