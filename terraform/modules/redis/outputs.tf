output "host" {
  description = "Host name of the cache."
  value       = azurerm_redis_cache.this.hostname
}

output "url" {
  description = "TENANTRY_REDIS_URL: TLS port, primary access key."
  value       = "rediss://:${urlencode(azurerm_redis_cache.this.primary_access_key)}@${azurerm_redis_cache.this.hostname}:${azurerm_redis_cache.this.ssl_port}/0"
  sensitive   = true
}
