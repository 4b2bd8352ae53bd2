variable "name" {
  description = "Name of the cluster (globally unique: it is part of the host names)."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the cluster."
  type        = string
}

variable "location" {
  description = "Azure region of the cluster."
  type        = string
}

variable "admin_password" {
  description = "Password of the administrator role `citus`."
  type        = string
  sensitive   = true
}

variable "citus_version" {
  description = "Citus major.minor version."
  type        = string
}

variable "postgresql_version" {
  description = "PostgreSQL major version."
  type        = string
}

variable "worker_count" {
  description = "Worker nodes (0: a single node; the service accepts 0 or 2 and more)."
  type        = number
  validation {
    condition     = var.worker_count == 0 || var.worker_count >= 2
    error_message = "A Cosmos DB for PostgreSQL cluster has 0 worker nodes or at least 2."
  }
}

variable "coordinator_vcores" {
  description = "vCores of the coordinator."
  type        = number
}

variable "coordinator_storage_mb" {
  description = "Storage of the coordinator in MiB."
  type        = number
}

variable "worker_vcores" {
  description = "vCores of each worker node."
  type        = number
}

variable "worker_storage_mb" {
  description = "Storage of each worker node in MiB."
  type        = number
}

variable "ha_enabled" {
  description = "A standby for every node."
  type        = bool
}

variable "allowed_ip_ranges" {
  description = "Coordinator firewall rules: name => [first IP, last IP]. Empty: public access off."
  type        = map(tuple([string, string]))
  default     = {}
}

variable "maintenance_day_of_week" {
  description = "Day of the planned maintenance window (0 = Sunday)."
  type        = number
  default     = 0
}

variable "maintenance_start_hour" {
  description = "UTC hour the maintenance window starts."
  type        = number
  default     = 3
}

variable "alert_action_group_id" {
  description = "Action group notified when a node's storage passes the threshold (null: no alert)."
  type        = string
  default     = null
}

variable "storage_alert_percent" {
  description = "Storage use of a node, in percent, above which the alert fires."
  type        = number
  default     = 85
}

variable "tags" {
  description = "Tags of every resource of the module."
  type        = map(string)
  default     = {}
}
