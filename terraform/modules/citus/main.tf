# A managed Citus cluster: Azure Cosmos DB for PostgreSQL (a coordinator and worker
# nodes), firewall rules for the coordinator, and a storage alert on every node.

resource "azurerm_cosmosdb_postgresql_cluster" "this" {
  name                = var.name
  resource_group_name = var.resource_group_name
  location            = var.location

  administrator_login_password = var.admin_password
  citus_version                = var.citus_version
  sql_version                  = var.postgresql_version

  coordinator_vcore_count         = var.coordinator_vcores
  coordinator_storage_quota_in_mb = var.coordinator_storage_mb
  # shards on the coordinator only when there is no worker (a single-node cluster)
  shards_on_coordinator_enabled = var.worker_count == 0

  node_count                    = var.worker_count
  node_vcores                   = var.worker_count > 0 ? var.worker_vcores : null
  node_storage_quota_in_mb      = var.worker_count > 0 ? var.worker_storage_mb : null
  ha_enabled                    = var.ha_enabled
  node_public_ip_access_enabled = false

  # the coordinator is reachable from the firewall rules' ranges only (none: no public access)
  coordinator_public_ip_access_enabled = length(var.allowed_ip_ranges) > 0

  maintenance_window {
    day_of_week  = var.maintenance_day_of_week
    start_hour   = var.maintenance_start_hour
    start_minute = 0
  }

  tags = var.tags
}

resource "azurerm_cosmosdb_postgresql_firewall_rule" "allowed" {
  for_each         = var.allowed_ip_ranges
  name             = each.key
  cluster_id       = azurerm_cosmosdb_postgresql_cluster.this.id
  start_ip_address = each.value[0]
  end_ip_address   = each.value[1]
}

# disk per Citus node: the service's storage_percent metric, split by server
resource "azurerm_monitor_metric_alert" "storage" {
  count               = var.alert_action_group_id == null ? 0 : 1
  name                = "${var.name}-storage"
  resource_group_name = var.resource_group_name
  scopes              = [azurerm_cosmosdb_postgresql_cluster.this.id]
  description         = "A Citus node uses more than ${var.storage_alert_percent}% of its storage: add a node and rebalance, or grow the storage."
  severity            = 2
  frequency           = "PT5M"
  window_size         = "PT15M"

  criteria {
    metric_namespace = "Microsoft.DBforPostgreSQL/serverGroupsv2"
    metric_name      = "storage_percent"
    aggregation      = "Average"
    operator         = "GreaterThan"
    threshold        = var.storage_alert_percent
    dimension {
      name     = "ServerName"
      operator = "Include"
      values   = ["*"]
    }
  }

  action {
    action_group_id = var.alert_action_group_id
  }

  tags = var.tags
}
