-- Distribute every api.* function by its tenant argument (no-op on single-node
-- PostgreSQL), so Citus can run a call on the worker that holds the tenant's shard.
SELECT core.distribute_function(p.oid::regprocedure, 'p_tenant_id')
  FROM pg_catalog.pg_proc AS p
 WHERE p.pronamespace = 'api'::regnamespace
   AND p.proargnames[1] = 'p_tenant_id';
