variable "project" {
  description = "Google Cloud project that runs the jobs (one project per environment)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run jobs, the Scheduler triggers and the Artifact Registry repository."
  type        = string
}

variable "environment" {
  description = "Environment name (dev, staging, prod...): a label on every resource."
  type        = string
}

variable "image" {
  description = <<-EOT
    Container image the jobs are created with, e.g.
    REGION-docker.pkg.dev/PROJECT/telemetry-jobs/telemetry-jobs@sha256:... After creation Cloud Build
    owns the image (cloudbuild.yaml points every job at each new digest) and Terraform ignores it.
  EOT
  type        = string
}

variable "repository_id" {
  description = "Artifact Registry Docker repository that Cloud Build pushes the image to."
  type        = string
  default     = "telemetry-jobs"
}

variable "image_keep_count" {
  description = "Artifact Registry cleanup: the most recent versions of the image kept whatever their age (the deployed image, rollback targets; each build adds an image and a build-cache version)."
  type        = number
  default     = 20
  validation {
    condition     = var.image_keep_count >= 2
    error_message = "image_keep_count must be at least 2: the deployed image and the build cache."
  }
}

variable "untagged_image_max_age" {
  description = "Artifact Registry cleanup: untagged versions (earlier build caches, re-pushed tags) older than this are deleted, unless among the image_keep_count most recent. Seconds, e.g. \"1209600s\" (14 days)."
  type        = string
  default     = "1209600s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.untagged_image_max_age))
    error_message = "untagged_image_max_age must be a number of seconds, e.g. \"1209600s\"."
  }
}

variable "tagged_image_max_age" {
  description = "Artifact Registry cleanup: tagged images older than this are deleted, unless among the image_keep_count most recent. Seconds, e.g. \"7776000s\" (90 days); null keeps every tagged image."
  type        = string
  default     = "7776000s"
  validation {
    condition     = var.tagged_image_max_age == null || can(regex("^[0-9]+s$", var.tagged_image_max_age))
    error_message = "tagged_image_max_age must be a number of seconds, e.g. \"7776000s\", or null."
  }
}

variable "image_cleanup_dry_run" {
  description = "true: Artifact Registry only reports what the cleanup policies would delete."
  type        = bool
  default     = false
}

variable "cloud_sql_instance" {
  description = "Cloud SQL instance connection name, \"project:region:instance\" (INSTANCE_CONNECTION_NAME)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9.:-]+:[a-z0-9-]+:[a-z0-9-]+$", var.cloud_sql_instance))
    error_message = "cloud_sql_instance must look like \"project:region:instance\"."
  }
}

variable "database" {
  description = "PostgreSQL database that holds the telemetry tables (DB_NAME)."
  type        = string
}

variable "db_ip_type" {
  description = "How the Cloud SQL connector reaches the instance: PRIVATE (needs vpc_network), PUBLIC or PSC (needs vpc_network, with the PSC endpoint and its DNS name in that network)."
  type        = string
  default     = "PRIVATE"
  validation {
    condition     = contains(["PRIVATE", "PUBLIC", "PSC"], var.db_ip_type)
    error_message = "db_ip_type must be PRIVATE, PUBLIC or PSC."
  }
}

variable "db_auth" {
  description = <<-EOT
    IAM (default): IAM database authentication as the jobs' service account, no password anywhere.
    PASSWORD: a built-in database user (db_password_user) whose password is read from Secret Manager
    (db_password_secret) when the task starts; Terraform never sees the password.
  EOT
  type        = string
  default     = "IAM"
  validation {
    condition     = contains(["IAM", "PASSWORD"], var.db_auth)
    error_message = "db_auth must be IAM or PASSWORD."
  }
}

variable "db_password_user" {
  description = "Database user with db_auth = PASSWORD."
  type        = string
  default     = null
}

variable "db_password_secret" {
  description = "Secret Manager secret id (in var.project) holding the password, with db_auth = PASSWORD. Create and fill it outside Terraform."
  type        = string
  default     = null
}

variable "db_password_secret_version" {
  description = "Secret version injected into DB_PASSWORD."
  type        = string
  default     = "latest"
}

variable "vpc_network" {
  description = "VPC network for Direct VPC egress (needed with db_ip_type = PRIVATE). null: no VPC access."
  type        = string
  default     = null
}

variable "vpc_subnetwork" {
  description = "Subnetwork for Direct VPC egress."
  type        = string
  default     = null
}

variable "policy" {
  description = <<-EOT
    The policy file as an object ({ tables = [...] }, see docs/policy.schema.json). It is rendered with
    jsonencode into TELEMETRY_JOBS_CONFIG_JSON after retention_keep is applied.
  EOT
  type        = any
}

variable "retention_keep" {
  description = <<-EOT
    Per-environment retention: table => keep ("90 days", "24 months"...). Overrides retention.keep of
    that table in var.policy (a table without a retention block gets { keep = ... }).
  EOT
  type        = map(string)
  default     = {}
}

variable "schedules" {
  description = "Cron schedule (UTC) of each scheduled job. migrate is not scheduled: Cloud Build runs it once per deploy."
  type        = map(string)
  default = {
    "partition-manager" = "17 * * * *"
    "retention"         = "40 3 * * *"
    "rollup-hourly"     = "5 * * * *"
  }
  validation {
    condition     = !contains(keys(var.schedules), "migrate")
    error_message = "migrate must not be scheduled: Cloud Build runs it on each deploy, before the jobs get the new image."
  }
}

variable "schedules_paused" {
  description = "Create or keep the Scheduler triggers paused (deploy from zero: until the first migrate has run)."
  type        = bool
  default     = false
}

variable "success_windows" {
  description = "Alert when a scheduled job has had no successful (status ok) run for this long. PromQL durations."
  type        = map(string)
  default = {
    "partition-manager" = "3h"
    "retention"         = "26h"
    "rollup-hourly"     = "3h"
  }
}

variable "task_timeouts" {
  description = "Task timeout of each job (per attempt). Cloud Run's default (10 min) is too short for migrate's conversions."
  type        = map(string)
  default = {
    "partition-manager" = "900s"
    "retention"         = "3600s"
    "rollup-hourly"     = "1800s"
    "migrate"           = "7200s"
  }
}

variable "rollup_task_count" {
  description = "Tasks per rollup-hourly execution; each task takes its shard by CLOUD_RUN_TASK_INDEX / CLOUD_RUN_TASK_COUNT."
  type        = number
  default     = 2
  validation {
    condition     = var.rollup_task_count >= 1 && var.rollup_task_count <= 100
    error_message = "rollup_task_count must be between 1 and 100."
  }
}

variable "rollup_lag_alert_seconds" {
  description = "Alert when rollup-hourly reports a rollup lag above this many seconds."
  type        = number
  default     = 7200
}

variable "log_metric_propagation_wait" {
  description = "How long the first apply waits between creating the log-based metrics and the alert policies on them (Cloud Monitoring needs minutes to accept a new metric). Waits again only when a metric is added or renamed."
  type        = string
  default     = "240s"
}

variable "operators" {
  description = "Members (user:..., group:...) allowed to execute any job by hand, with --args overrides, and to follow it: roles/run.jobsExecutorWithOverrides and roles/run.viewer on each job, roles/logging.viewer and roles/cloudscheduler.viewer on the project."
  type        = list(string)
  default     = []
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids for every alert policy."
  type        = list(string)
  default     = []
}

variable "alert_email" {
  description = "If set, an email notification channel for this address is created and added to every alert policy."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the Cloud Run jobs from terraform destroy."
  type        = bool
  default     = true
}

variable "cold_tier" {
  description = <<-EOT
    The cold tier (docs/cold-tier.md), off by default. enabled = true creates a Cloud Storage bucket
    (bucket_name, in location, default var.region) mounted read-write into the retention job only, at
    mount_path, which must be the retention.export.to of every exporting table in the policy; soft
    delete keeps deleted objects soft_delete_days (7 to 90); storage_class_transitions move objects to
    a colder class after age_days. BigQuery: a dataset (bigquery_dataset, same location) and one
    external table per entry of tables ({ schema, table, key_column }, names of [A-Za-z0-9_-] only;
    the BigQuery table is schema_table unless bigquery_table says otherwise),
    read through a BigLake connection unless biglake = false. retention_memory is the retention job's
    memory: Cloud Storage FUSE stages each file in memory before the upload. cloud_sql_connection =
    true grants the BigQuery Connection service agent access to the instance, for a Cloud SQL
    connection made with bq mk (EXTERNAL_QUERY over the hot data); set it only once that connection
    exists: the service agent is created with the project's first Cloud SQL connection.
  EOT
  type = object({
    enabled          = optional(bool, false)
    bucket_name      = optional(string)
    location         = optional(string)
    mount_path       = optional(string, "/mnt/cold")
    soft_delete_days = optional(number, 7)
    storage_class_transitions = optional(list(object({
      storage_class = string
      age_days      = number
      from_classes  = optional(list(string), ["STANDARD"])
    })), [])
    retention_memory         = optional(string, "2Gi")
    bigquery_dataset         = optional(string, "telemetry_cold")
    biglake                  = optional(bool, true)
    require_partition_filter = optional(bool, false)
    cloud_sql_connection     = optional(bool, false)
    tables = optional(list(object({
      schema         = string
      table          = string
      key_column     = string
      bigquery_table = optional(string)
    })), [])
  })
  default = {}

  validation {
    condition     = !var.cold_tier.enabled || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.cold_tier.bucket_name))
    error_message = "cold_tier.enabled needs cold_tier.bucket_name, a valid bucket name (lowercase letters, digits, -, _ and .)."
  }
  validation {
    condition     = can(regex("^/[A-Za-z0-9_./-]+$", var.cold_tier.mount_path)) && !can(regex("^/(dev|proc|sys)(/|$)", var.cold_tier.mount_path))
    error_message = "cold_tier.mount_path must be an absolute path outside /dev, /proc and /sys (Cloud Run refuses those)."
  }
  validation {
    condition     = var.cold_tier.soft_delete_days >= 7 && var.cold_tier.soft_delete_days <= 90
    error_message = "cold_tier.soft_delete_days must be between 7 and 90 (Cloud Storage's soft-delete range)."
  }
  validation {
    condition = alltrue([
      for t in var.cold_tier.storage_class_transitions :
      contains(["NEARLINE", "COLDLINE", "ARCHIVE"], t.storage_class) && t.age_days >= 1
    ])
    error_message = "cold_tier.storage_class_transitions: storage_class NEARLINE, COLDLINE or ARCHIVE, age_days at least 1."
  }
  # The exporter writes a name unchanged only when it is made of [A-Za-z0-9_-] (shared/cold/layout.ts
  # percent-encodes every other byte); the external tables' URIs are built from the names as given.
  validation {
    condition = alltrue(flatten([
      for t in var.cold_tier.tables : [
        for name in [t.schema, t.table, t.key_column] : can(regex("^[A-Za-z0-9_-]{1,63}$", name))
      ]
    ]))
    error_message = "cold_tier.tables: schema, table and key_column must be made of letters, digits, _ and - (the exporter encodes any other character in directory names)."
  }
  validation {
    condition = length(distinct([
      for t in var.cold_tier.tables : coalesce(t.bigquery_table, "${t.schema}_${t.table}")
    ])) == length(var.cold_tier.tables)
    error_message = "cold_tier.tables: two tables would get the same BigQuery table id; set bigquery_table on one of them."
  }
  validation {
    condition     = can(regex("^[A-Za-z0-9_]+$", var.cold_tier.bigquery_dataset)) && length(var.cold_tier.bigquery_dataset) <= 1024
    error_message = "cold_tier.bigquery_dataset must be a BigQuery dataset id (letters, digits, _)."
  }
}
