-- analytics.metrics: the catalog of metered metrics (unit, how events aggregate), so that
-- analysts can read analytics.usage_daily / usage_monthly with their units. The rows come
-- from a SECURITY DEFINER function (as analytics.tenant_overview's do): on Citus a view's
-- shard and reference-table reads run as the querying role, which has no rights on core.

-- Every metric of the catalog (core.metrics): small, no tenant data.
CREATE OR REPLACE FUNCTION analytics.metrics_rows()
RETURNS TABLE (metric text, unit text, aggregation text, property text, description text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT m.metric, m.unit, m.aggregation, m.property, m.description FROM core.metrics AS m
$$;

CREATE OR REPLACE VIEW analytics.metrics AS
SELECT * FROM analytics.metrics_rows();

COMMENT ON VIEW analytics.metrics IS 'The metered metrics: unit and how a bucket''s events become its value.';
COMMENT ON COLUMN analytics.metrics.metric IS 'The metric''s name (as in analytics.usage_daily.metric).';
COMMENT ON COLUMN analytics.metrics.unit IS 'The unit of its values (requests, bytes, ...).';
COMMENT ON COLUMN analytics.metrics.aggregation IS 'How events aggregate: sum, count, max, unique_count (of property) or latest.';
COMMENT ON COLUMN analytics.metrics.property IS 'For unique_count: the event property whose distinct values are counted.';
COMMENT ON COLUMN analytics.metrics.description IS 'What the metric measures.';
