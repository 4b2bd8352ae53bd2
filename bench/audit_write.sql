-- bench/audit_overhead.py: tenant-scoped writes as the api role, in the transaction
-- shape the application uses: a task insert, then an update of the client's own task.
-- Variables (pgbench -D): tenant, project, task.
BEGIN;
SET LOCAL app.tenant_id = ':tenant';
SET LOCAL app.actor_type = 'system';
SET LOCAL app.request_id = 'bench';
INSERT INTO core.tasks (tenant_id, project_id, title, description)
VALUES (':tenant', ':project', 'benchmark task', 'a task inserted by bench/audit_overhead.py');
UPDATE core.tasks SET priority = CASE priority WHEN 'low' THEN 'high' ELSE 'low' END
 WHERE tenant_id = ':tenant' AND task_id = ':task';
COMMIT;
