output "id" {
  description = "Resource id of the cluster."
  value       = azurerm_cosmosdb_postgresql_cluster.this.id
}

output "coordinator_host" {
  # the coordinator is the server named <cluster>-c (host name c-<cluster>.…); the first
  # server otherwise (not verified against a live cluster: check `terraform output`)
  description = "Host name of the coordinator."
  value = try(
    [for s in azurerm_cosmosdb_postgresql_cluster.this.servers : s.fqdn if endswith(s.name, "-c") || startswith(s.fqdn, "c-")][0],
    azurerm_cosmosdb_postgresql_cluster.this.servers[0].fqdn,
  )
}

output "servers" {
  description = "Every node: name and host name."
  value       = azurerm_cosmosdb_postgresql_cluster.this.servers
}
