-- Registers the compose file's Citus workers with the coordinator. The one-shot
-- `cluster-init` service runs it on every `docker compose up`, so it is idempotent: a
-- node already in pg_dist_node is left alone. The nodes reach the coordinator as
-- `coordinator-citus`, its name on the internal network (compose.yaml), whose
-- connections it trusts (trust-citus-network.sh).
SELECT citus_set_coordinator_host('coordinator-citus', 5432);
SELECT citus_add_node('worker1', 5432)
 WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodename = 'worker1' AND nodeport = 5432);
SELECT citus_add_node('worker2', 5432)
 WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node WHERE nodename = 'worker2' AND nodeport = 5432);
SELECT nodename, nodeport, isactive FROM pg_dist_node ORDER BY nodeid;
