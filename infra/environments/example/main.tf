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
