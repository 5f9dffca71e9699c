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
