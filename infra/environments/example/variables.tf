variable "project" {
  description = "Google Cloud project of this environment."
  type        = string
}

variable "region" {
  description = "Region of the jobs, triggers and image repository."
  type        = string
  default     = "europe-west1"
}

variable "image" {
  description = "Image the jobs are created with (the first Cloud Build push; later deploys are Cloud Build's)."
  type        = string
}

variable "cloud_sql_instance" {
  description = "Cloud SQL instance connection name, project:region:instance."
  type        = string
}

variable "database" {
  description = "Database holding the telemetry tables."
  type        = string
  default     = "telemetry"
}

variable "vpc_network" {
  description = "VPC network that reaches the instance's private IP (Direct VPC egress)."
  type        = string
  default     = "default"
}

variable "vpc_subnetwork" {
  description = "Subnetwork in var.region for Direct VPC egress."
  type        = string
  default     = "default"
}

variable "operators" {
  description = "Who may run jobs by hand with --args overrides, e.g. [\"group:telemetry-oncall@example.com\"]."
  type        = list(string)
  default     = []
}

variable "alert_email" {
  description = "Where alerts go (an email notification channel is created)."
  type        = string
  default     = null
}

variable "schedules_paused" {
  description = "true for the first apply of a new environment, until migrate has run once."
  type        = bool
  default     = false
}

variable "cold_tier_enabled" {
  description = "Create the cold tier (bucket mounted into retention, BigQuery dataset); see docs/cold-tier.md."
  type        = bool
  default     = false
}

variable "cold_tier_tables" {
  description = "Exported tables to query from BigQuery, e.g. [{ schema = \"public\", table = \"telemetry_points\", key_column = \"ts\" }]."
  type = list(object({
    schema     = string
    table      = string
    key_column = string
  }))
  default = []
}
