variable "name" {
  description = "Prefix of the apps' names."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the apps."
  type        = string
}

variable "location" {
  description = "Azure region of the apps."
  type        = string
}

variable "image" {
  description = "The tenantry image with its tag."
  type        = string
}

variable "database_url" {
  description = "Owner DSN of the Citus coordinator (TENANTRY_DATABASE_URL)."
  type        = string
  sensitive   = true
}

variable "redis_url" {
  description = "Redis URL with its access key (TENANTRY_REDIS_URL)."
  type        = string
  sensitive   = true
}

variable "secrets" {
  description = "The other secrets, by name: app-role-password, jwt-secret, webhook-encryption-keys, metrics-token."
  type        = map(string)
  sensitive   = true
}

variable "smtp_host" {
  description = "TENANTRY_SMTP_HOST (empty: no SMTP)."
  type        = string
  default     = ""
}

variable "app_url" {
  description = "TENANTRY_APP_URL: the base of the links in mail."
  type        = string
}

variable "api_min_replicas" {
  description = "Fewest API replicas."
  type        = number
}

variable "api_max_replicas" {
  description = "Most API replicas."
  type        = number
}

variable "worker_replicas" {
  description = "Job worker replicas."
  type        = number
}

variable "api_cpu" {
  description = "vCPU of an API replica."
  type        = number
  default     = 1
}

variable "api_memory" {
  description = "Memory of an API replica (Container Apps pairs it with the CPU: 1 vCPU, 2Gi)."
  type        = string
  default     = "2Gi"
}

variable "worker_cpu" {
  description = "vCPU of a worker, scheduler or migration replica."
  type        = number
  default     = 0.5
}

variable "worker_memory" {
  description = "Memory of a worker, scheduler or migration replica."
  type        = string
  default     = "1Gi"
}

variable "log_retention_days" {
  description = "Days the apps' logs are kept."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags of every resource of the module."
  type        = map(string)
  default     = {}
}
