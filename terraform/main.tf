# tenantry on Azure: a managed Citus cluster (Azure Cosmos DB for PostgreSQL), Redis,
# and the app (API, job worker, scheduler, and a migration job) on Container Apps.
# Secrets come in as sensitive variables (TF_VAR_* or a tfvars file kept out of git);
# none is written in these files.

resource "azurerm_resource_group" "main" {
  name     = "${var.name}-rg"
  location = var.location
  tags     = var.tags
}

module "citus" {
  source                 = "./modules/citus"
  name                   = "${var.name}-citus"
  resource_group_name    = azurerm_resource_group.main.name
  location               = azurerm_resource_group.main.location
  admin_password         = var.database_admin_password
  citus_version          = var.citus_version
  postgresql_version     = var.postgresql_version
  worker_count           = var.citus_worker_count
  coordinator_vcores     = var.citus_coordinator_vcores
  coordinator_storage_mb = var.citus_coordinator_storage_mb
  worker_vcores          = var.citus_worker_vcores
  worker_storage_mb      = var.citus_worker_storage_mb
  ha_enabled             = var.citus_ha_enabled
  allowed_ip_ranges      = var.database_allowed_ip_ranges
  alert_action_group_id  = var.alert_action_group_id
  tags                   = var.tags
}

module "redis" {
  source              = "./modules/redis"
  name                = "${var.name}-redis"
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  sku_name            = var.redis_sku_name
  family              = var.redis_family
  capacity            = var.redis_capacity
  tags                = var.tags
}

module "app" {
  source              = "./modules/app"
  name                = var.name
  resource_group_name = azurerm_resource_group.main.name
  location            = azurerm_resource_group.main.location
  image               = var.app_image
  # the owner DSN: `tenantry db migrate` runs as the cluster's administrator (citus), and
  # `serve` checks the revision with it and derives the application roles' DSNs from it
  database_url = "postgresql://citus:${urlencode(var.database_admin_password)}@${module.citus.coordinator_host}:5432/citus?sslmode=require"
  redis_url    = module.redis.url
  secrets = {
    app-role-password       = var.app_role_password
    jwt-secret              = var.jwt_secret
    webhook-encryption-keys = var.webhook_encryption_keys
    metrics-token           = var.metrics_token
  }
  api_min_replicas = var.api_min_replicas
  api_max_replicas = var.api_max_replicas
  worker_replicas  = var.worker_replicas
  smtp_host        = var.smtp_host
  app_url          = var.app_url
  tags             = var.tags
}
