-- Database settings Citus needs (nothing on single-node PostgreSQL).

-- Triggers on distributed tables need citus.enable_unsafe_triggers (architecture fact 2):
-- set it for the database (new sessions) and for this migrating session.
DO $$
BEGIN
    IF core.citus_enabled() THEN
        EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
        SET citus.enable_unsafe_triggers = on;
    END IF;
END
$$;
