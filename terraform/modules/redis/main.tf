# Azure Cache for Redis: the job queues (Dramatiq), rate limits and API-call counters.
# TLS only; `noeviction`, because `tenantry worker` and `scheduler` refuse a Redis that
# may evict queued jobs (jobs/runtime.py, check_redis_policy).

resource "azurerm_redis_cache" "this" {
  #checkov:skip=CKV_AZURE_89: public access is a variable; the default Container Apps environment has no virtual network to put a private endpoint in (terraform/README.md, "Hardening"); TLS 1.2 and the access key are required either way
  name                          = var.name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  sku_name                      = var.sku_name
  family                        = var.family
  capacity                      = var.capacity
  non_ssl_port_enabled          = false
  minimum_tls_version           = "1.2"
  public_network_access_enabled = var.public_network_access_enabled

  redis_configuration {
    maxmemory_policy = "noeviction"
  }

  tags = var.tags
}
