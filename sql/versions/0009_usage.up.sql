-- 0009 usage: metric definitions, usage events and their rollups.
--
-- Versioned: applied once by migrations/versions/0009_usage.py. The functions (ingest,
-- rollup, partition maintenance, reads) are in sql/repeatable/400_usage.sql, the
-- policies in policies/core_usage_*.sql.
--
-- The path of an event: api.ingest_usage claims its id in core.usage_event_ids (the
-- de-duplication table), stores it in core.usage_events (time-partitioned) and queues
-- it in core.usage_pending; ops.rollup_usage moves pending events into
-- core.usage_rollups (and the distinct values of unique_count metrics into
-- core.usage_rollup_values) in one transaction, so each event is counted exactly once.
-- Every table but the metric catalog is distributed on tenant_id, colocated with
-- core.tenants: one tenant's ingest and rollup are router statements on one shard.

----------------------------------------------------------------------------------------
-- metrics: the catalog of what can be metered (a reference table on Citus)
----------------------------------------------------------------------------------------
CREATE TABLE core.metrics (
    metric       text PRIMARY KEY CHECK (metric ~ '^[a-z][a-z0-9_]{1,62}$'),
    unit         text NOT NULL CHECK (length(btrim(unit)) BETWEEN 1 AND 50),
    -- how a bucket's events become its value: sum of quantities, count of events, max
    -- quantity, number of distinct values of `property`, or the quantity of the latest
    -- event (greatest occurred_at, ties broken by the greatest event_id)
    aggregation  text NOT NULL CHECK (aggregation IN ('sum', 'count', 'max', 'unique_count', 'latest')),
    property     text CHECK (property ~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$'),
    description  text NOT NULL CHECK (length(btrim(description)) BETWEEN 1 AND 500),
    CONSTRAINT metrics_property_for_unique_count CHECK ((aggregation = 'unique_count') = (property IS NOT NULL))
);
COMMENT ON TABLE core.metrics IS 'Catalog of metered metrics: unit and how events aggregate (sum, count, max, unique_count over a property, latest).';
SELECT core.make_reference_table('core.metrics');

----------------------------------------------------------------------------------------
-- usage events: time-partitioned by month, distributed on tenant_id
----------------------------------------------------------------------------------------
-- Monthly partitions, not daily: a partition is one table per shard on Citus (32 shards
-- by default), so a year and a month of daily partitions would be ~12,000 tables on the
-- cluster and ~400 partitions to prune on every plan; monthly gives 13. The billing
-- period is the calendar month, so a period's events are one partition, and retention
-- drops whole months. An ingest touches at most two partitions (the lateness window is
-- 7 days). No default partition: an event no partition takes is refused (TU005) and
-- says partition maintenance is late, instead of piling up where retention never reaches.
--
-- The primary key must include the partition column (docs/citus.md, fact 7), so it
-- cannot de-duplicate event ids across partitions: core.usage_event_ids does. No
-- foreign key to core.metrics: that is a lookup per event; api.ingest_usage checks each
-- batch's metrics against the catalog in one join.
CREATE TABLE core.usage_events (
    tenant_id    uuid NOT NULL,
    event_id     text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    metric       text NOT NULL,
    quantity     numeric NOT NULL CHECK (quantity >= 0),
    occurred_at  timestamptz NOT NULL,
    properties   jsonb NOT NULL DEFAULT '{}'::jsonb,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, occurred_at, event_id)
) PARTITION BY RANGE (occurred_at);
COMMENT ON TABLE core.usage_events IS 'Raw usage events, partitioned by month of occurred_at; retention drops whole partitions.';
SELECT core.distribute_table('core.usage_events', 'core.tenants');

-- The client's event id, once per tenant across all partitions: an ingest claims it
-- here first (INSERT ... ON CONFLICT DO NOTHING), and only the events it could claim
-- are stored and counted, so a retried event is never counted twice, whatever its
-- occurred_at. Kept for the event retention (ops.maintain_usage_partitions).
CREATE TABLE core.usage_event_ids (
    tenant_id    uuid NOT NULL,
    event_id     text NOT NULL,
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
COMMENT ON TABLE core.usage_event_ids IS 'Every usage event id a tenant sent (de-duplication across time partitions).';
SELECT core.distribute_table('core.usage_event_ids', 'core.tenants');

-- Events stored but not yet rolled up: what a rollup run takes (and deletes) in the same
-- transaction as it adds them to the rollups, so its cost follows the new events, not
-- the history. It holds what the rollup needs (the unique_count property's value as
-- text), so a run never reads core.usage_events.
CREATE TABLE core.usage_pending (
    tenant_id     uuid NOT NULL,
    event_id      text NOT NULL,
    metric        text NOT NULL,
    quantity      numeric NOT NULL,
    occurred_at   timestamptz NOT NULL,
    unique_value  text,
    PRIMARY KEY (tenant_id, event_id)
);
COMMENT ON TABLE core.usage_pending IS 'Usage events waiting for the next rollup run (ops.rollup_usage).';
SELECT core.distribute_table('core.usage_pending', 'core.tenants');

----------------------------------------------------------------------------------------
-- rollups: per tenant, metric and bucket (hour, day, billing period)
----------------------------------------------------------------------------------------
-- Distributed tables filled incrementally with INSERT ... ON CONFLICT DO UPDATE, not
-- materialized views (docs/citus.md, fact 20). Buckets are in UTC; a billing period is
-- the calendar month (UTC). `events` counts the events in the bucket; latest_at and
-- latest_event_id say which event a `latest` metric's value came from.
CREATE TABLE core.usage_rollups (
    tenant_id        uuid NOT NULL,
    metric           text NOT NULL,
    granularity      text NOT NULL CHECK (granularity IN ('hour', 'day', 'period')),
    bucket_start     timestamptz NOT NULL,
    value            numeric NOT NULL,
    events           bigint NOT NULL CHECK (events > 0),
    latest_at        timestamptz,
    latest_event_id  text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, metric, granularity, bucket_start)
);
COMMENT ON TABLE core.usage_rollups IS 'Usage per tenant, metric and hour, day or billing period (calendar month, UTC); each event counted once.';
SELECT core.distribute_table('core.usage_rollups', 'core.tenants');
-- after distribution (docs/citus.md, fact 19)
ALTER TABLE core.usage_rollups
    ADD CONSTRAINT usage_rollups_metric_fkey FOREIGN KEY (metric) REFERENCES core.metrics (metric);

-- The distinct values seen per bucket of a unique_count metric (exact counts: no HLL).
CREATE TABLE core.usage_rollup_values (
    tenant_id     uuid NOT NULL,
    metric        text NOT NULL,
    granularity   text NOT NULL CHECK (granularity IN ('hour', 'day', 'period')),
    bucket_start  timestamptz NOT NULL,
    value         text NOT NULL,
    PRIMARY KEY (tenant_id, metric, granularity, bucket_start, value)
);
COMMENT ON TABLE core.usage_rollup_values IS 'Distinct property values per bucket of unique_count metrics.';
SELECT core.distribute_table('core.usage_rollup_values', 'core.tenants');
