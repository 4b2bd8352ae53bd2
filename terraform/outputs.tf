output "api_url" {
  description = "Public URL of the API."
  value       = module.app.api_url
}

output "coordinator_host" {
  description = "Host name of the Citus coordinator (port 5432, TLS required)."
  value       = module.citus.coordinator_host
}

output "citus_servers" {
  description = "Every node of the Citus cluster (name and host name)."
  value       = module.citus.servers
}

output "redis_host" {
  description = "Host name of Redis (TLS port 6380)."
  value       = module.redis.host
}

output "migrate_job_name" {
  description = "The Container Apps job that runs `tenantry db migrate` (start it after each image update: az containerapp job start)."
  value       = module.app.migrate_job_name
}
