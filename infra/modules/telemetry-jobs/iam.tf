# Three identities, each with only what it needs:
#   jobs      runs the Cloud Run jobs: connects to the one Cloud SQL instance (and logs in as an IAM
#             database user), reads the DB password secret only with PASSWORD auth.
#   scheduler is the OAuth identity of the Cloud Scheduler triggers: may start the scheduled jobs, one
#             grant per job, nothing else (not migrate, no overrides).
#   build     is Cloud Build's identity: pushes the image, updates and executes the jobs, deploys them
#             as the jobs identity.
# People in var.operators run any job by hand (with overrides), read the jobs and their executions
# (on each job), and read the project's logs and Scheduler jobs.
# No project-wide Cloud Run role, nothing like owner, editor or run.admin.

resource "google_service_account" "jobs" {
  project      = var.project
  account_id   = "telemetry-jobs-run"
  display_name = "telemetry-jobs: Cloud Run jobs runtime"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "scheduler" {
  project      = var.project
  account_id   = "telemetry-jobs-scheduler"
  display_name = "telemetry-jobs: Cloud Scheduler invoker"

  depends_on = [google_project_service.enabled]
}

# Every build runs as this account, never as the project's default Cloud Build account, whose roles
# differ from project to project: the first image (docs/deploy.md step 2, which creates it with a
# -target apply in step 1) and the trigger's builds of cloudbuild.yaml (step 7).
resource "google_service_account" "build" {
  project      = var.project
  account_id   = "telemetry-jobs-build"
  display_name = "telemetry-jobs: Cloud Build deployer"

  depends_on = [google_project_service.enabled]
}

locals {
  # Cloud SQL has no instance-level IAM policy; an IAM condition narrows the project grant to the
  # one instance.
  sql_instance_condition = "resource.type == \"sqladmin.googleapis.com/Instance\" && resource.name == \"projects/${local.sql_project}/instances/${local.sql_instance}\""
}

# --- jobs -------------------------------------------------------------------------------------

resource "google_project_iam_member" "jobs_cloudsql_client" {
  project = local.sql_project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.jobs.email}"
  condition {
    title       = "telemetry-jobs-instance-only"
    description = "Only the telemetry Cloud SQL instance"
    expression  = local.sql_instance_condition
  }
}

resource "google_project_iam_member" "jobs_cloudsql_instance_user" {
  count   = local.password_auth ? 0 : 1
  project = local.sql_project
  role    = "roles/cloudsql.instanceUser"
  member  = "serviceAccount:${google_service_account.jobs.email}"
  condition {
    title       = "telemetry-jobs-instance-only"
    description = "Only the telemetry Cloud SQL instance"
    expression  = local.sql_instance_condition
  }
}

# The database user for IAM database authentication. Its privileges inside PostgreSQL (CREATE on the
# database, ownership of the managed tables) are granted in SQL: see docs/deploy.md.
resource "google_sql_user" "jobs" {
  count    = local.password_auth ? 0 : 1
  project  = local.sql_project
  instance = local.sql_instance
  name     = trimsuffix(google_service_account.jobs.email, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# PASSWORD auth only: read access to that one secret. The secret and its value are created outside
# Terraform, so the password is never in Terraform state or in the job definition.
resource "google_secret_manager_secret_iam_member" "jobs_read_db_password" {
  count     = local.password_auth ? 1 : 0
  project   = var.project
  secret_id = var.db_password_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.jobs.email}"
}

# --- scheduler --------------------------------------------------------------------------------

# roles/run.jobsExecutor: run.jobs.run on this job, without overrides. Granted per scheduled job.
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs" {
  for_each = local.scheduled_jobs
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.job[each.key].name
  role     = "roles/run.jobsExecutor"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# --- operators (manual runs with --args overrides, and the runbooks' read commands) -----------

resource "google_cloud_run_v2_job_iam_member" "operators_run" {
  for_each = {
    for pair in setproduct(keys(local.jobs), var.operators) : "${pair[0]} ${pair[1]}" => {
      job    = pair[0]
      member = pair[1]
    }
  }
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.job[each.value.job].name
  role     = "roles/run.jobsExecutorWithOverrides"
  member   = each.value.member
}

# `gcloud run jobs execute --wait` follows the execution it started, `gcloud run jobs executions
# list --job=JOB` and `executions describe` read them: run.jobs.get, run.executions.get/list,
# run.tasks.get/list, on each job only (roles/run.viewer, granted on the job, not the project).
resource "google_cloud_run_v2_job_iam_member" "operators_view" {
  for_each = {
    for pair in setproduct(keys(local.jobs), var.operators) : "${pair[0]} ${pair[1]}" => {
      job    = pair[0]
      member = pair[1]
    }
  }
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.job[each.value.job].name
  role     = "roles/run.viewer"
  member   = each.value.member
}

# `gcloud logging read`: logs can be granted on a project (or a log view of a bucket), never on a Cloud
# Run job, so roles/logging.viewer on the project is the usual minimum. It reads every log of the
# project except Data Access audit logs.
resource "google_project_iam_member" "operators_read_logs" {
  for_each = toset(var.operators)
  project  = var.project
  role     = "roles/logging.viewer"
  member   = each.value
}

# `gcloud scheduler jobs describe telemetry-jobs-JOB` (docs/alerts.md, "No successful run"): Cloud
# Scheduler grants only on the project; roles/cloudscheduler.viewer reads jobs, changes nothing.
resource "google_project_iam_member" "operators_read_schedules" {
  for_each = toset(var.operators)
  project  = var.project
  role     = "roles/cloudscheduler.viewer"
  member   = each.value
}

# --- build ------------------------------------------------------------------------------------

resource "google_artifact_registry_repository_iam_member" "build_pushes" {
  project    = var.project
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# Update the image of each job, execute migrate and wait for it. Granted on each job, not the project.
resource "google_cloud_run_v2_job_iam_member" "build_deploys" {
  for_each = local.jobs
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.job[each.key].name
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.build.email}"
}

# Deploying a job that runs as the jobs identity needs iam.serviceAccounts.actAs on that identity only.
resource "google_service_account_iam_member" "build_acts_as_jobs" {
  service_account_id = google_service_account.jobs.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.build.email}"
}

# Build logs: a build with a user-specified account cannot write to the default logs bucket, so
# cloudbuild.yaml and infra/bootstrap-image.cloudbuild.yaml set options.logging = CLOUD_LOGGING_ONLY.
resource "google_project_iam_member" "build_writes_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# `gcloud builds submit` uploads the sources to a bucket and the build reads them from there as the
# build account: a bucket of its own (--gcs-source-staging-dir), so it needs no read access to the
# project's other buckets. Uploaded sources are deleted after a week.
resource "google_storage_bucket" "build_sources" {
  project                     = var.project
  name                        = "${var.project}-telemetry-jobs-build-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true
  labels                      = local.labels

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age = 7
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket_iam_member" "build_reads_sources" {
  bucket = google_storage_bucket.build_sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}
