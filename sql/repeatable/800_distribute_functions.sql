-- Distribution of functions: every api.* function is distributed by its tenant argument
-- (a no-op on single-node PostgreSQL), so Citus runs a call on the worker that holds
-- the tenant's shard and the function's statements there are router queries
-- (docs/citus.md, fact 6). After the feature files (1xx-3xx), so every api.* function
-- exists; re-run on every migrate, since the interface reset drops them first.

----------------------------------------------------------------------------------------
-- api.* by p_tenant_id
----------------------------------------------------------------------------------------

-- Every api.* function whose first argument is p_tenant_id, colocated with core.tenants.
SELECT core.distribute_function(p.oid::regprocedure, 'p_tenant_id')
  FROM pg_catalog.pg_proc AS p
 WHERE p.pronamespace = 'api'::regnamespace
   AND p.proargnames[1] = 'p_tenant_id';
