# The cold tier (optional, off by default): expired partitions exported to Parquet on Cloud Storage,
# queried from BigQuery. See docs/cold-tier.md and docs/adr/0006-cold-tier-bucket-access.md.
#
#   bucket   one Cloud Storage bucket, uniform bucket-level access, public access prevention
#            enforced, soft delete (every delete recoverable for soft_delete_days), optional lifecycle
#            transitions to colder classes;
#   mount    the bucket mounted read-write into the retention job only (Cloud Storage FUSE), at
#            mount_path: the policy's retention.export.to;
#   access   a custom role with the object permissions a FUSE writer needs on that bucket only
#            (create, get, list, update, delete; nothing on the bucket itself or its IAM);
#   BigQuery a dataset and one external table per exported table, over the Hive layout the exporter
#            writes (shared/cold/layout.ts): gs://BUCKET/<schema>.<table>/<key>_start=<ISO>/part-NNNNN.parquet,
#            through a BigLake connection unless biglake = false; optionally, what a Cloud SQL
#            connection for EXTERNAL_QUERY over the hot data needs.

locals {
  cold = var.cold_tier.enabled

  cold_location = coalesce(var.cold_tier.location, var.region)
  cold_bucket   = local.cold ? google_storage_bucket.cold[0].name : null

  # Only names the exporter writes unchanged: layout.ts keeps [A-Za-z0-9_-] and percent-encodes any
  # other byte, so for these names the directory is the name itself (variables.tf checks them).
  cold_tables = {
    for t in var.cold_tier.tables : "${t.schema}.${t.table}" => {
      directory = "${t.schema}.${t.table}"
      hive_key  = "${t.key_column}_start"
      table_id  = coalesce(t.bigquery_table, "${t.schema}_${t.table}")
    }
  }

  # What the policy asks of the cold tier: every retention.export.to, which must be the mount.
  policy_export_targets = distinct(compact([for t in var.policy.tables : try(t.retention.export.to, null)]))
}

resource "google_project_service" "cold_tier" {
  for_each           = toset(local.cold ? ["bigquery.googleapis.com", "bigqueryconnection.googleapis.com"] : [])
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# --- bucket -----------------------------------------------------------------------------------

resource "google_storage_bucket" "cold" {
  count = local.cold ? 1 : 0

  project                     = var.project
  name                        = var.cold_tier.bucket_name
  location                    = local.cold_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Exported history may be the only copy once retention dropped the partition.
  force_destroy = false
  labels        = local.labels

  # Every delete (a re-export clearing a partition's directory, the copy-and-delete of a rename on
  # the FUSE mount, a person's mistake) stays restorable this long.
  soft_delete_policy {
    retention_duration_seconds = var.cold_tier.soft_delete_days * 86400
  }

  dynamic "lifecycle_rule" {
    for_each = var.cold_tier.storage_class_transitions
    content {
      action {
        type          = "SetStorageClass"
        storage_class = lifecycle_rule.value.storage_class
      }
      condition {
        age                   = lifecycle_rule.value.age_days
        matches_storage_class = lifecycle_rule.value.from_classes
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

# The FUSE writer's permissions and nothing else: objects.create/get/list (write and read back,
# list the directories), objects.update (the object metadata Cloud Storage FUSE keeps, e.g. mtime),
# objects.delete (a rename is a copy then a delete, replacing an object counts as a delete, and a
# re-export clears what a killed export left). No storage.buckets.*, no IAM permissions.
resource "google_project_iam_custom_role" "cold_writer" {
  count = local.cold ? 1 : 0

  project     = var.project
  role_id     = "telemetryJobsColdWriter"
  title       = "telemetry-jobs cold-tier writer"
  description = "Objects of the cold-tier bucket through Cloud Storage FUSE: create, read, list, update metadata, delete (recoverable by soft delete). Granted on that bucket only."
  permissions = [
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.update",
  ]

  depends_on = [google_project_service.enabled]
}

# Granted on the bucket, never on the project. The jobs share one identity (it is also their
# database user), so the grant reaches that identity; only the retention job mounts the bucket.
resource "google_storage_bucket_iam_member" "jobs_cold_writer" {
  count = local.cold ? 1 : 0

  bucket = google_storage_bucket.cold[0].name
  role   = google_project_iam_custom_role.cold_writer[0].id
  member = "serviceAccount:${google_service_account.jobs.email}"
}

# Operators read the exported files (`telemetry-jobs restore --root` on a copy, checking a
# manifest); they cannot write or delete them.
resource "google_storage_bucket_iam_member" "operators_read_cold" {
  for_each = local.cold ? toset(var.operators) : toset([])

  bucket = google_storage_bucket.cold[0].name
  role   = "roles/storage.objectViewer"
  member = each.value
}

# --- BigQuery ---------------------------------------------------------------------------------

resource "google_bigquery_dataset" "cold" {
  count = local.cold ? 1 : 0

  project     = var.project
  dataset_id  = var.cold_tier.bigquery_dataset
  location    = local.cold_location
  description = "telemetry-jobs cold tier: external tables over the exported Parquet files in gs://${var.cold_tier.bucket_name}."
  labels      = local.labels

  depends_on = [google_project_service.cold_tier]
}

# BigLake: queries read the bucket as this connection's service account, so people need rights on
# the tables only, not on the bucket.
resource "google_bigquery_connection" "cold_biglake" {
  count = local.cold && var.cold_tier.biglake ? 1 : 0

  project       = var.project
  connection_id = "telemetry-jobs-cold"
  location      = local.cold_location
  friendly_name = "telemetry-jobs cold tier (BigLake)"
  cloud_resource {}

  depends_on = [google_project_service.cold_tier]
}

resource "google_storage_bucket_iam_member" "biglake_reads_cold" {
  count = local.cold && var.cold_tier.biglake ? 1 : 0

  bucket = google_storage_bucket.cold[0].name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_bigquery_connection.cold_biglake[0].cloud_resource[0].service_account_id}"
}

# One table per exported table. The key column is in the files; the directories carry
# <key>_start (the partition's lower bound), typed TIMESTAMP: the exporter writes it as ISO 8601
# in UTC with a Z (2026-01-01T00:00:00Z), a form BigQuery's timestamp literals accept ("T" between
# date and time, "Z" as the zone). That a Hive key in this form parses as TIMESTAMP has not been
# checked against a live BigQuery project here: docs/cold-tier.md ("Layout") gives the query that
# shows it. If a ts_start value does not parse, type the key STRING instead (the fixed-width ISO
# text sorts in time order, so filters on it still prune).
#
# Only part files are read: `*.parquet` leaves out _manifest.json, and a file the exporter is still
# writing (or a kill left) is named .part-NNNNN.parquet.inprogress, ending in .inprogress, so it
# never matches.
# Finished parts of an export that is not verified yet do match: the hot-and-cold query takes that
# partition's rows from PostgreSQL while it is live (docs/cold-tier.md, "Hot and cold in one query").
resource "google_bigquery_table" "cold" {
  for_each = local.cold ? local.cold_tables : {}

  project             = var.project
  dataset_id          = google_bigquery_dataset.cold[0].dataset_id
  table_id            = each.value.table_id
  description         = "Exported partitions of ${each.key} (gs://${local.cold_bucket}/${each.value.directory}/)."
  deletion_protection = var.deletion_protection
  labels              = local.labels

  external_data_configuration {
    source_format = "PARQUET"
    autodetect    = true
    source_uris   = ["gs://${local.cold_bucket}/${each.value.directory}/*.parquet"]
    connection_id = var.cold_tier.biglake ? google_bigquery_connection.cold_biglake[0].name : null
    # numeric(p,s) is exported as DECIMAL(p,s), p <= 38: NUMERIC holds scale <= 9, BIGNUMERIC the
    # rest, so no exported DECIMAL falls back to a string (or fails).
    decimal_target_types = ["NUMERIC", "BIGNUMERIC", "STRING"]

    hive_partitioning_options {
      mode                     = "CUSTOM"
      source_uri_prefix        = "gs://${local.cold_bucket}/${each.value.directory}/{${each.value.hive_key}:TIMESTAMP}"
      require_partition_filter = var.cold_tier.require_partition_filter
    }
  }

  depends_on = [google_storage_bucket_iam_member.biglake_reads_cold]
}

# --- Cloud SQL connection (optional): EXTERNAL_QUERY over the hot tables --------------------------

# The connection itself is made with `bq mk --connection` (docs/cold-tier.md): it logs in with a
# PostgreSQL user and password, and a password never goes through Terraform (it would sit in
# state). Terraform grants what the connection then needs: BigQuery connects to Cloud SQL as the
# project's BigQuery Connection service agent, allowed to connect to the one instance, as the jobs.
# That agent exists only once the project has a Cloud SQL connection, so cloud_sql_connection is
# set after `bq mk --connection`; before, on a fresh project, this grant fails (its member does not
# exist). google_project_service_identity, which could create it first, is google-beta only.
data "google_project" "cold" {
  count = local.cold && var.cold_tier.cloud_sql_connection ? 1 : 0

  project_id = var.project
}

resource "google_project_iam_member" "cold_sql_connection_client" {
  count = local.cold && var.cold_tier.cloud_sql_connection ? 1 : 0

  project = local.sql_project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:service-${data.google_project.cold[0].number}@gcp-sa-bigqueryconnection.iam.gserviceaccount.com"
  condition {
    title       = "telemetry-jobs-instance-only"
    description = "Only the telemetry Cloud SQL instance"
    expression  = local.sql_instance_condition
  }

  depends_on = [google_project_service.cold_tier]
}
