# An example environment. Copy this folder per environment (one project each), set the variables
# in a terraform.tfvars (see terraform.tfvars.example), and adjust the policy and retention.

module "telemetry_jobs" {
  source = "../../modules/telemetry-jobs"

  project     = var.project
  region      = var.region
  environment = "example"
  image       = var.image

  cloud_sql_instance = var.cloud_sql_instance
  database           = var.database
  db_ip_type         = "PRIVATE"
  db_auth            = "IAM"
  vpc_network        = var.vpc_network
  vpc_subnetwork     = var.vpc_subnetwork

  # The same policy file the CLI reads (validated by test/infra against the policy schema), with
  # this environment's retention on top.
  policy = jsondecode(file("${path.module}/policy.json"))
  retention_keep = {
    "public.telemetry_points"         = "90 days"
    "public.telemetry_rollups_hourly" = "3 years"
  }

  schedules = {
    "partition-manager" = "17 * * * *"
    "retention"         = "40 3 * * *"
    "rollup-hourly"     = "5 * * * *"
  }
  success_windows = {
    "partition-manager" = "3h"
    "retention"         = "26h"
    "rollup-hourly"     = "3h"
  }
  rollup_task_count = 2
  schedules_paused  = var.schedules_paused

  operators   = var.operators
  alert_email = var.alert_email

  # Cold tier (docs/cold-tier.md), off unless cold_tier_enabled: a bucket mounted into the
  # retention job at /mnt/cold, which policy.json's retention.export.to must name. List a table
  # under tables once its first partition is exported: BigQuery reads the files' schema when it
  # creates the external table.
  cold_tier = {
    enabled          = var.cold_tier_enabled
    bucket_name      = "${var.project}-telemetry-cold"
    mount_path       = "/mnt/cold"
    soft_delete_days = 14
    # No colder class: the hot-and-cold query in docs/cold-tier.md reads the whole cold history on
    # every run, and every read of a Nearline, Coldline or Archive object pays a retrieval fee per
    # GB, so run daily that query would soon cost more than the storage saved. Add NEARLINE after
    # 30 days only for history read about once a month or less; see "Costs" there.
    storage_class_transitions = []
    tables                    = var.cold_tier_tables
  }
}

output "jobs" {
  value = module.telemetry_jobs.jobs
}

output "image_repository" {
  value = module.telemetry_jobs.image_repository
}

output "database_user" {
  value = module.telemetry_jobs.database_user
}

output "build_service_account" {
  value = module.telemetry_jobs.build_service_account
}

output "cold_tier_bucket" {
  value = module.telemetry_jobs.cold_tier_bucket
}

output "cold_tier_dataset" {
  value = module.telemetry_jobs.cold_tier_dataset
}
