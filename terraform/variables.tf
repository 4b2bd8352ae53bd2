variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "name" {
  description = "Prefix of every resource's name (lowercase letters, digits and dashes)."
  type        = string
  default     = "tenantry"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "Use 3 to 21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "location" {
  description = "Azure region of every resource."
  type        = string
  default     = "westeurope"
}

variable "tags" {
  description = "Tags set on every resource."
  type        = map(string)
  default     = { app = "tenantry" }
}

# -- the database ---------------------------------------------------------------------

variable "database_admin_password" {
  description = "Password of the cluster's administrator (`citus`), the role `tenantry db migrate` runs as."
  type        = string
  sensitive   = true
}

variable "citus_version" {
  description = "Citus major.minor version of the managed cluster (the project is verified on Citus 14, PostgreSQL 18: pick the newest the service offers)."
  type        = string
  default     = "12.1"
}

variable "postgresql_version" {
  description = "PostgreSQL major version of the managed cluster."
  type        = string
  default     = "16"
}

variable "citus_worker_count" {
  description = "Worker nodes (0: a single node that holds the shards; 2 or more for a distributed cluster)."
  type        = number
  default     = 2
}

variable "citus_coordinator_vcores" {
  description = "vCores of the coordinator."
  type        = number
  default     = 4
}

variable "citus_coordinator_storage_mb" {
  description = "Storage of the coordinator in MiB (the service's sizes: 131072, 262144, 524288, ...)."
  type        = number
  default     = 131072
}

variable "citus_worker_vcores" {
  description = "vCores of each worker node."
  type        = number
  default     = 4
}

variable "citus_worker_storage_mb" {
  description = "Storage of each worker node in MiB."
  type        = number
  default     = 524288
}

variable "citus_ha_enabled" {
  description = "High availability: a standby for every node."
  type        = bool
  default     = true
}

variable "database_allowed_ip_ranges" {
  description = "Firewall rules of the coordinator: name => [first IP, last IP] (the app's outbound addresses, operators' networks). Empty: no public access."
  type        = map(tuple([string, string]))
  default     = {}
}

variable "alert_action_group_id" {
  description = "Azure Monitor action group notified by the storage alert of every Citus node (null: no alert)."
  type        = string
  default     = null
}

# -- Redis ----------------------------------------------------------------------------

variable "redis_sku_name" {
  description = "Azure Cache for Redis tier: Basic (no replica: dev only), Standard or Premium."
  type        = string
  default     = "Standard"
}

variable "redis_family" {
  description = "Redis family: C for Basic/Standard, P for Premium."
  type        = string
  default     = "C"
}

variable "redis_capacity" {
  description = "Redis size within the family (C: 0-6, P: 1-5)."
  type        = number
  default     = 1
}

# -- the app --------------------------------------------------------------------------

variable "app_image" {
  description = "The tenantry image (deploy/Dockerfile) with its tag, e.g. myregistry.azurecr.io/tenantry:1.2.3."
  type        = string
}

variable "app_role_password" {
  description = "Password `tenantry db migrate` sets on the application login roles (TENANTRY_APP_ROLE_PASSWORD)."
  type        = string
  sensitive   = true
}

variable "jwt_secret" {
  description = "HS256 key for access tokens, 32 bytes or more (TENANTRY_JWT_SECRET), shared by every API replica."
  type        = string
  sensitive   = true
}

variable "webhook_encryption_keys" {
  description = "Keys of the webhook signing secrets at rest: `<key id>:<base64 of 32 bytes>`, comma-separated (TENANTRY_WEBHOOK_ENCRYPTION_KEYS)."
  type        = string
  sensitive   = true
}

variable "metrics_token" {
  description = "Bearer token the API's /metrics requires (TENANTRY_METRICS_TOKEN)."
  type        = string
  sensitive   = true
}

variable "smtp_host" {
  description = "SMTP server for the platform's mail (empty: mail is written to files in the container, i.e. lost)."
  type        = string
  default     = ""
}

variable "app_url" {
  description = "Base URL of the application that links in mail point to (TENANTRY_APP_URL)."
  type        = string
  default     = "https://app.example.com"
}

variable "api_min_replicas" {
  description = "Fewest API replicas."
  type        = number
  default     = 2
}

variable "api_max_replicas" {
  description = "Most API replicas (scaled on concurrent requests)."
  type        = number
  default     = 10
}

variable "worker_replicas" {
  description = "Job worker replicas."
  type        = number
  default     = 2
}
