-- bench/quota_overhead.py: one task insert as the api role, in the transaction shape
-- the application uses (BEGIN; SET LOCAL the context; the statement; COMMIT).
-- Variables (pgbench -D): tenant, project.
BEGIN;
SET LOCAL app.tenant_id = ':tenant';
INSERT INTO core.tasks (tenant_id, project_id, title, description)
VALUES (':tenant', ':project', 'benchmark task', 'a task inserted by bench/quota_overhead.py');
COMMIT;
