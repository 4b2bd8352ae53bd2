-- 0009 usage, undone: the rollups, the events (with every partition) and the metric
-- catalog go, and the core functions of 400_usage.sql that work on them (the api and
-- ops ones that use their row types go with them: CASCADE).
DROP FUNCTION IF EXISTS core.ingest_usage(uuid, jsonb);
DROP FUNCTION IF EXISTS core.rollup_usage_tenant(uuid, integer);
DROP FUNCTION IF EXISTS core.usage_partitions();
DROP FUNCTION IF EXISTS core.usage_lateness_window();
DROP FUNCTION IF EXISTS core.usage_clock_skew();
DROP FUNCTION IF EXISTS core.usage_max_batch();
DROP TABLE core.usage_rollup_values CASCADE;
DROP TABLE core.usage_rollups CASCADE;
DROP TABLE core.usage_pending CASCADE;
DROP TABLE core.usage_event_ids CASCADE;
DROP TABLE core.usage_events CASCADE;
DROP TABLE core.metrics CASCADE;
