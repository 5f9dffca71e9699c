output "jobs" {
  description = "Cloud Run job names (also the names cloudbuild.yaml deploys)."
  value       = { for name, job in google_cloud_run_v2_job.job : name => job.id }
}

output "scheduled_jobs" {
  description = "Scheduled job => cron schedule (UTC)."
  value       = local.scheduled_jobs
}

output "image_repository" {
  description = "Where Cloud Build pushes the image (cloudbuild.yaml: _REGION, _REPOSITORY)."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}/telemetry-jobs"
}

output "jobs_service_account" {
  description = "Identity of the jobs; with IAM auth also the database user (see database_user)."
  value       = google_service_account.jobs.email
}

output "database_user" {
  description = "PostgreSQL user the jobs log in as (grant it CREATE on the database and ownership of the managed tables, see docs/deploy.md)."
  value       = local.db_user
}

output "scheduler_service_account" {
  description = "OAuth identity of the Cloud Scheduler triggers."
  value       = google_service_account.scheduler.email
}

output "build_service_account" {
  description = "Service account to run cloudbuild.yaml with (trigger --service-account)."
  value       = google_service_account.build.id
}

output "cold_tier_bucket" {
  description = "Cold tier: the bucket the retention job writes Parquet exports to (null when cold_tier is off)."
  value       = local.cold ? google_storage_bucket.cold[0].name : null
}

output "cold_tier_mount_path" {
  description = "Cold tier: where the bucket is mounted in the retention job; the policy's retention.export.to."
  value       = local.cold ? var.cold_tier.mount_path : null
}

output "cold_tier_dataset" {
  description = "Cold tier: the BigQuery dataset of the external tables, as project:dataset (null when off)."
  value       = local.cold ? "${var.project}:${google_bigquery_dataset.cold[0].dataset_id}" : null
}

output "cold_tier_tables" {
  description = "Cold tier: policy table => BigQuery external table (project.dataset.table)."
  value       = { for name, t in google_bigquery_table.cold : name => "${var.project}.${t.dataset_id}.${t.table_id}" }
}

output "cold_tier_biglake_connection" {
  description = "Cold tier: the BigLake connection the external tables read through (null when off or biglake = false)."
  value       = local.cold && var.cold_tier.biglake ? google_bigquery_connection.cold_biglake[0].name : null
}
