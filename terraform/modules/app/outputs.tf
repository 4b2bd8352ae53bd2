output "api_url" {
  description = "Public URL of the API."
  value       = "https://${azurerm_container_app.api.ingress[0].fqdn}"
}

output "migrate_job_name" {
  description = "Name of the migration job."
  value       = azurerm_container_app_job.migrate.name
}
