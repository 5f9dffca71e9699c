# telemetry-jobs on Google Cloud: one image, one Cloud Run job per job, Cloud Scheduler triggers.
#
# The job table below is the one place that says which jobs exist and how each one runs. Every job
# runs its own bundle: command = ["/nodejs/bin/node", "/app/dist/<job>.mjs"] (the distroless image's
# node and the bundles' path, see Dockerfile); args carry run options only, so
# `gcloud run jobs execute retention --args=--dry-run` replaces the options, never the entrypoint.

locals {
  jobs = {
    "partition-manager" = {
      description = "Creates partitions ahead of the clock, fills gaps, rescues DEFAULT rows."
      args        = []
      task_count  = 1
      # Idempotent; a retry finishes what a killed attempt started.
      max_retries = 2
      scheduled   = true
    }
    "retention" = {
      description = "Drops, detaches or archives expired partitions; batched deletes elsewhere."
      args        = []
      task_count  = 1
      # Guard rails (maxDropsPerRun, keep floor) hold on every attempt; one retry for transient errors.
      max_retries = 1
      scheduled   = true
    }
    "rollup-hourly" = {
      description = "Keeps telemetry_rollups_hourly correct, incrementally; sharded over tasks."
      args        = []
      task_count  = var.rollup_task_count
      max_retries = 2
      scheduled   = true
    }
    "migrate" = {
      description = "Schema migrations; run once per deploy by Cloud Build, never on a schedule."
      args        = ["up"]
      task_count  = 1
      # Never retried: a failed migration needs a person, not a second attempt.
      max_retries = 0
      scheduled   = false
    }
  }

  scheduled_jobs = { for name, job in local.jobs : name => var.schedules[name] if job.scheduled }

  labels = {
    app         = "telemetry-jobs"
    environment = var.environment
  }

  # "project:region:instance"
  sql_project  = split(":", var.cloud_sql_instance)[0]
  sql_instance = split(":", var.cloud_sql_instance)[2]

  password_auth = var.db_auth == "PASSWORD"
  # IAM database users of service accounts are named by the email without ".gserviceaccount.com".
  db_user = local.password_auth ? var.db_password_user : trimsuffix(google_service_account.jobs.email, ".gserviceaccount.com")

  # Per-environment retention applied to the policy: retention_keep[table] replaces retention.keep.
  policy = merge(var.policy, {
    tables = [
      for t in var.policy.tables : merge(t, {
        for table, keep in var.retention_keep : "retention" => merge(try(t.retention, {}), { keep = keep })
        if table == t.table
      })
    ]
  })

  # Plain environment of every job. Nothing secret here: DB_PASSWORD (PASSWORD auth only) comes from
  # Secret Manager through value_source.secret_key_ref, see the job resource.
  env = {
    TELEMETRY_JOBS_CONFIG_JSON = jsonencode(local.policy)
    INSTANCE_CONNECTION_NAME   = var.cloud_sql_instance
    DB_NAME                    = var.database
    DB_USER                    = local.db_user
    DB_IP_TYPE                 = var.db_ip_type
    DB_AUTH                    = var.db_auth
    GOOGLE_CLOUD_PROJECT       = var.project
  }
}

resource "google_project_service" "enabled" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudscheduler.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project
  location      = var.region
  repository_id = var.repository_id
  format        = "DOCKER"
  description   = "telemetry-jobs images, tagged with the commit; Cloud Build also keeps its layer cache here (tag buildcache)."
  labels        = local.labels

  # Every build pushes an image (tagged with its commit) and a new build cache (the old one loses
  # its tag). A KEEP policy wins over every DELETE policy: the most recent versions stay, whatever
  # their age, so the deployed image and the recent rollback targets are never deleted.
  cleanup_policy_dry_run = var.image_cleanup_dry_run

  cleanup_policies {
    id     = "keep-most-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_keep_count
    }
  }

  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = var.untagged_image_max_age
    }
  }

  dynamic "cleanup_policies" {
    for_each = var.tagged_image_max_age == null ? [] : [var.tagged_image_max_age]
    content {
      id     = "delete-old-tagged"
      action = "DELETE"
      condition {
        tag_state  = "TAGGED"
        older_than = cleanup_policies.value
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_cloud_run_v2_job" "job" {
  for_each = local.jobs

  project             = var.project
  location            = var.region
  name                = each.key
  deletion_protection = var.deletion_protection
  labels              = local.labels

  template {
    task_count  = each.value.task_count
    parallelism = each.value.task_count
    labels      = local.labels

    template {
      service_account = google_service_account.jobs.email
      timeout         = var.task_timeouts[each.key]
      max_retries     = each.value.max_retries
      # Jobs always run in the second generation environment, which Cloud Storage volumes need;
      # said explicitly where the cold tier mounts its bucket, left to the default elsewhere.
      execution_environment = local.cold && each.key == "retention" ? "EXECUTION_ENVIRONMENT_GEN2" : null

      containers {
        image   = var.image
        command = ["/nodejs/bin/node", "/app/dist/${each.key}.mjs"]
        args    = each.value.args

        resources {
          limits = {
            cpu    = "1"
            memory = local.cold && each.key == "retention" ? var.cold_tier.retention_memory : "512Mi"
          }
        }

        # The cold tier's bucket, in the retention job only: the export writes there through the
        # same file system code path the tests run on a local directory.
        dynamic "volume_mounts" {
          for_each = local.cold && each.key == "retention" ? [var.cold_tier.mount_path] : []
          content {
            name       = "cold-tier"
            mount_path = volume_mounts.value
          }
        }

        dynamic "env" {
          for_each = local.env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = local.password_auth ? [var.db_password_secret] : []
          content {
            name = "DB_PASSWORD"
            value_source {
              secret_key_ref {
                secret  = env.value
                version = var.db_password_secret_version
              }
            }
          }
        }
      }

      dynamic "volumes" {
        for_each = local.cold && each.key == "retention" ? [google_storage_bucket.cold[0].name] : []
        content {
          name = "cold-tier"
          gcs {
            bucket    = volumes.value
            read_only = false
          }
        }
      }

      dynamic "vpc_access" {
        for_each = var.vpc_network == null ? [] : [var.vpc_network]
        content {
          egress = "PRIVATE_RANGES_ONLY"
          network_interfaces {
            network    = vpc_access.value
            subnetwork = var.vpc_subnetwork
          }
        }
      }
    }
  }

  lifecycle {
    # Cloud Build owns the image after creation (it points every job at each new digest, after
    # migrate) and stamps the label commit-sha (gcloud --update-labels, on the job and its
    # execution template); gcloud also stamps client and client_version. Ignored, so an apply
    # after a deploy plans no change; Terraform keeps its own labels (app, environment).
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
      labels["commit-sha"],
      template[0].labels["commit-sha"],
    ]
    precondition {
      condition     = !local.password_auth || (var.db_password_user != null && var.db_password_secret != null)
      error_message = "db_auth = PASSWORD needs db_password_user and db_password_secret (a Secret Manager secret id)."
    }
    precondition {
      condition     = alltrue([for table in keys(var.retention_keep) : contains([for t in var.policy.tables : t.table], table)])
      error_message = "Every key of retention_keep must be the \"table\" of an entry in policy.tables, written the same way."
    }
    # A private IP and a Private Service Connect endpoint are both addresses in a VPC: the jobs
    # reach them only through Direct VPC egress.
    precondition {
      condition     = !contains(["PRIVATE", "PSC"], var.db_ip_type) || var.vpc_network != null
      error_message = "db_ip_type = PRIVATE or PSC needs vpc_network (and vpc_subnetwork) for Direct VPC egress: the private IP or the PSC endpoint is only reachable from the VPC."
    }
    # Without the mount, an export would write to the container's in-memory file system, verify
    # there, and let retention drop the partition: the data would be gone when the task ends.
    precondition {
      condition     = length(local.policy_export_targets) == 0 || local.cold
      error_message = "The policy exports partitions (retention.export) but cold_tier.enabled is false: the files would go to the task's in-memory disk and vanish. Enable cold_tier."
    }
    precondition {
      condition     = !local.cold || alltrue([for to in local.policy_export_targets : trimsuffix(to, "/") == trimsuffix(var.cold_tier.mount_path, "/")])
      error_message = "Every retention.export.to in the policy must be cold_tier.mount_path, where the bucket is mounted in the retention job."
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_iam_member.jobs_read_db_password,
    google_storage_bucket_iam_member.jobs_cold_writer,
  ]
}

resource "google_cloud_scheduler_job" "trigger" {
  for_each = local.scheduled_jobs

  project          = var.project
  region           = var.region
  name             = "telemetry-jobs-${each.key}"
  description      = "Starts an execution of the ${each.key} Cloud Run job."
  schedule         = each.value
  time_zone        = "Etc/UTC"
  attempt_deadline = "60s"
  paused           = var.schedules_paused

  # A retried trigger can start a second execution; the job's advisory lock makes the later one skip.
  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project}/locations/${var.region}/jobs/${google_cloud_run_v2_job.job[each.key].name}:run"

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs]
}
