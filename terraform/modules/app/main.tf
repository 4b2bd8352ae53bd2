# The tenantry processes on Azure Container Apps, one image (deploy/Dockerfile):
# the API (`tenantry serve`, public ingress, /ready as readiness probe), the job worker
# (`tenantry worker`), the scheduler (`tenantry scheduler`, one replica is enough: two
# would not double-enqueue, jobs/scheduler.py) and a manual job for `tenantry db migrate`.

locals {
  # every secret the processes read, by Container Apps secret name
  secrets = merge(var.secrets, {
    database-url = var.database_url
    redis-url    = var.redis_url
  })
  secret_env = {
    TENANTRY_DATABASE_URL = "database-url"
    TENANTRY_REDIS_URL    = "redis-url"
    #checkov:skip=CKV_SECRET_6: the name of a Container Apps secret, not a secret
    TENANTRY_APP_ROLE_PASSWORD       = "app-role-password"
    TENANTRY_JWT_SECRET              = "jwt-secret"
    TENANTRY_WEBHOOK_ENCRYPTION_KEYS = "webhook-encryption-keys"
    #checkov:skip=CKV_SECRET_6: the name of a Container Apps secret, not a secret
    TENANTRY_METRICS_TOKEN = "metrics-token"
  }
  plain_env = {
    TENANTRY_SMTP_HOST = var.smtp_host
    TENANTRY_APP_URL   = var.app_url
  }
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name}-logs"
  resource_group_name = var.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

resource "azurerm_container_app_environment" "this" {
  name                       = "${var.name}-env"
  resource_group_name        = var.resource_group_name
  location                   = var.location
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
  tags                       = var.tags
}

resource "azurerm_container_app" "api" {
  name                         = "${var.name}-api"
  resource_group_name          = var.resource_group_name
  container_app_environment_id = azurerm_container_app_environment.this.id
  revision_mode                = "Single"

  dynamic "secret" {
    for_each = nonsensitive(toset(keys(local.secrets)))
    content {
      name  = secret.value
      value = local.secrets[secret.value]
    }
  }

  ingress {
    external_enabled = true
    target_port      = 8000
    transport        = "http"
    traffic_weight {
      percentage      = 100
      latest_revision = true
    }
  }

  template {
    min_replicas = var.api_min_replicas
    max_replicas = var.api_max_replicas
    container {
      name   = "api"
      image  = var.image
      cpu    = var.api_cpu
      memory = var.api_memory
      args   = ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--threads", "8"]
      dynamic "env" {
        for_each = local.secret_env
        content {
          name        = env.key
          secret_name = env.value
        }
      }
      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }
      readiness_probe {
        transport = "HTTP"
        port      = 8000
        path      = "/ready"
      }
      liveness_probe {
        transport = "HTTP"
        port      = 8000
        path      = "/health"
      }
    }
  }

  tags = var.tags
}

resource "azurerm_container_app" "worker" {
  for_each = {
    worker    = { args = ["worker", "--processes", "2", "--threads", "4", "--metrics-host", "0.0.0.0"], replicas = var.worker_replicas }
    scheduler = { args = ["scheduler"], replicas = 1 }
  }
  name                         = "${var.name}-${each.key}"
  resource_group_name          = var.resource_group_name
  container_app_environment_id = azurerm_container_app_environment.this.id
  revision_mode                = "Single"

  dynamic "secret" {
    for_each = nonsensitive(toset(keys(local.secrets)))
    content {
      name  = secret.value
      value = local.secrets[secret.value]
    }
  }

  template {
    min_replicas = each.value.replicas
    max_replicas = each.value.replicas
    container {
      name   = each.key
      image  = var.image
      cpu    = var.worker_cpu
      memory = var.worker_memory
      args   = each.value.args
      dynamic "env" {
        for_each = local.secret_env
        content {
          name        = env.key
          secret_name = env.value
        }
      }
      dynamic "env" {
        for_each = local.plain_env
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  tags = var.tags
}

# `tenantry db migrate`, started by hand (or by the release pipeline) after an image update
resource "azurerm_container_app_job" "migrate" {
  name                         = "${var.name}-migrate"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  container_app_environment_id = azurerm_container_app_environment.this.id
  replica_timeout_in_seconds   = 1800
  replica_retry_limit          = 0

  manual_trigger_config {
    parallelism              = 1
    replica_completion_count = 1
  }

  dynamic "secret" {
    for_each = nonsensitive(toset(keys(local.secrets)))
    content {
      name  = secret.value
      value = local.secrets[secret.value]
    }
  }

  template {
    container {
      name   = "migrate"
      image  = var.image
      cpu    = var.worker_cpu
      memory = var.worker_memory
      args   = ["db", "migrate"]
      dynamic "env" {
        for_each = local.secret_env
        content {
          name        = env.key
          secret_name = env.value
        }
      }
    }
  }

  tags = var.tags
}
