variable "name" {
  description = "Name of the cache (globally unique: it is part of the host name)."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group of the cache."
  type        = string
}

variable "location" {
  description = "Azure region of the cache."
  type        = string
}

variable "sku_name" {
  description = "Tier: Basic, Standard or Premium."
  type        = string
}

variable "family" {
  description = "C (Basic, Standard) or P (Premium)."
  type        = string
}

variable "capacity" {
  description = "Size within the family."
  type        = number
}

variable "public_network_access_enabled" {
  description = "Reachable from public networks (with TLS and the access key). Off needs a private endpoint in the app's network."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags of the cache."
  type        = map(string)
  default     = {}
}
