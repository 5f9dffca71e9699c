# Log-based metrics from the jobs' structured logs, alert policies and a dashboard.
#
# Every run ends with one record {event: "run_summary", job, status, dryRun, clockShifted, durationMs,
# ...} and writes one flat {event: "table_health", job, table, dryRun, clockShifted, ...} record per
# table (shared/run/runner.ts):
# partition-manager reports futureBufferIntervals, futureBufferShortfall and defaultRows,
# rollup-hourly rollupLagSeconds.
# The Cloud Run job name is the resource label job_name; metrics carry the table as a label.

locals {
  job_names = keys(local.jobs)
  log_base  = "resource.type=\"cloud_run_job\" AND resource.labels.job_name=(${join(" OR ", [for j in local.job_names : "\"${j}\""])})"
  # Dry runs (--dry-run) and runs planned as of another instant (--now) report what would be, not
  # what is: their records carry dryRun: true / clockShifted: true and are left out of every metric.
  # "NOT field=true" (not "field!=true"): a record without the field still counts.
  real_runs   = "NOT jsonPayload.dryRun=true AND NOT jsonPayload.clockShifted=true"
  run_summary = "${local.log_base} AND jsonPayload.event=\"run_summary\" AND ${local.real_runs}"
  health      = "${local.log_base} AND jsonPayload.event=\"table_health\" AND ${local.real_runs}"

  # Threshold counters: one point per table_health record that crosses the line.
  health_thresholds = {
    # Against the table's own premake: futureBufferShortfall = premake - futureBufferIntervals
    # (0 when the buffer is full). A fixed count would fire forever for a table with premake 1.
    buffer_short_of_premake = {
      description = "table_health records of partition-manager with fewer future partitions ready than the table's premake."
      condition   = "jsonPayload.futureBufferShortfall > 0"
    }
    default_partition_has_rows = {
      description = "table_health records with rows in the DEFAULT partition."
      condition   = "jsonPayload.defaultRows > 0"
    }
    rollup_lag_exceeded = {
      description = "table_health records of rollup-hourly with rollupLagSeconds above ${var.rollup_lag_alert_seconds}."
      condition   = "jsonPayload.rollupLagSeconds > ${var.rollup_lag_alert_seconds}"
    }
  }

  # Gauges from table_health, as distributions (for the dashboard).
  health_values = {
    future_buffer_intervals = {
      field   = "futureBufferIntervals"
      unit    = "1"
      buckets = [0, 1, 2, 3, 4, 6, 8, 12, 24, 48, 96]
    }
    default_rows = {
      field   = "defaultRows"
      unit    = "1"
      buckets = [0, 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000]
    }
    rollup_lag_seconds = {
      field   = "rollupLagSeconds"
      unit    = "s"
      buckets = [0, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800]
    }
  }

  notification_channels = concat(var.notification_channels, google_monitoring_notification_channel.email[*].id)
}

resource "google_monitoring_notification_channel" "email" {
  count        = var.alert_email == null ? 0 : 1
  project      = var.project
  display_name = "telemetry-jobs (${var.environment})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
}

# --- log-based metrics ------------------------------------------------------------------------

resource "google_logging_metric" "run_summaries" {
  project     = var.project
  name        = "telemetry_jobs/run_summaries"
  description = "Job runs (run_summary records, dry runs and --now runs excluded) by status: ok, skipped, failed, interrupted, refused."
  filter      = local.run_summary
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "status"
      value_type  = "STRING"
      description = "Run status from run_summary"
    }
  }
  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "run_duration" {
  project     = var.project
  name        = "telemetry_jobs/run_duration"
  description = "Duration of job runs (run_summary.durationMs)."
  filter      = local.run_summary
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key         = "status"
      value_type  = "STRING"
      description = "Run status from run_summary"
    }
  }
  value_extractor = "EXTRACT(jsonPayload.durationMs)"
  label_extractors = {
    status = "EXTRACT(jsonPayload.status)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 10
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "table_health" {
  for_each = local.health_values

  project     = var.project
  name        = "telemetry_jobs/${each.key}"
  description = "table_health.${each.value.field} per table."
  filter      = "${local.health} AND jsonPayload.${each.value.field}:*"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = each.value.unit
    labels {
      key         = "table"
      value_type  = "STRING"
      description = "Managed table (schema.table)"
    }
  }
  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"
  label_extractors = {
    table = "EXTRACT(jsonPayload.table)"
  }
  bucket_options {
    explicit_buckets {
      bounds = each.value.buckets
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "health_threshold" {
  for_each = local.health_thresholds

  project     = var.project
  name        = "telemetry_jobs/${each.key}"
  description = each.value.description
  filter      = "${local.health} AND ${each.value.condition}"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "table"
      value_type  = "STRING"
      description = "Managed table (schema.table)"
    }
  }
  label_extractors = {
    table = "EXTRACT(jsonPayload.table)"
  }

  depends_on = [google_project_service.enabled]
}

# Cloud Monitoring accepts an alert policy on a new log-based metric only some minutes after the
# metric was created ("Cannot find metric(s)"): without this wait the first apply fails there.
# The triggers follow the metric names, so a new or renamed metric waits again.
resource "time_sleep" "log_metrics_propagation" {
  create_duration = var.log_metric_propagation_wait
  triggers = {
    metrics = join(",", concat(
      [google_logging_metric.run_summaries.name, google_logging_metric.run_duration.name],
      [for m in google_logging_metric.table_health : m.name],
      [for m in google_logging_metric.health_threshold : m.name],
    ))
  }

  depends_on = [
    google_logging_metric.run_summaries,
    google_logging_metric.run_duration,
    google_logging_metric.table_health,
    google_logging_metric.health_threshold,
  ]
}

# --- alert policies ---------------------------------------------------------------------------

# Cloud Run's own count of finished executions: also catches crashes, OOM kills and task timeouts,
# where the job never got to write its run_summary. An execution fails once a task has used up its
# retries.
resource "google_monitoring_alert_policy" "execution_failed" {
  project               = var.project
  display_name          = "telemetry-jobs (${var.environment}): job execution failed"
  combiner              = "OR"
  notification_channels = local.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "A telemetry-jobs execution failed"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\" AND metric.labels.result = \"failed\" AND resource.labels.job_name = one_of(${join(", ", [for j in local.job_names : "\"${j}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.job_name"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A telemetry-jobs Cloud Run job execution failed (all retries used). See docs/alerts.md, section \"Job execution failed\"."
  }
}

# Metric-absence conditions stop at 23.5 hours, too short for a daily job; a PromQL condition can
# look back further. A run counts when it ended ok or refused: a refusal (a guard rail said no, e.g. a
# DEFAULT rescue above maxRescueRows, with the rest of the plan made) exits 2 and pages through
# execution_failed, so counting it here would only hide an outage of the job behind it. A run that
# keeps being skipped (lock held) or interrupted is not healthy.
resource "google_monitoring_alert_policy" "no_successful_run" {
  for_each = local.scheduled_jobs

  project               = var.project
  display_name          = "telemetry-jobs (${var.environment}): no successful ${each.key} run for ${var.success_windows[each.key]}"
  combiner              = "OR"
  notification_channels = local.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "No ${each.key} run_summary with status ok or refused for ${var.success_windows[each.key]}"
    condition_prometheus_query_language {
      query               = "absent_over_time(logging_googleapis_com:user_telemetry_jobs_run_summaries{monitored_resource=\"cloud_run_job\",job_name=\"${each.key}\",status=~\"ok|refused\"}[${var.success_windows[each.key]}])"
      duration            = "0s"
      evaluation_interval = "300s"
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "No successful ${each.key} run for ${var.success_windows[each.key]}. See docs/alerts.md, section \"No successful run\"."
  }

  depends_on = [time_sleep.log_metrics_propagation]
}

resource "google_monitoring_alert_policy" "table_health" {
  for_each = {
    buffer_short_of_premake = {
      title = "future-partition buffer short of premake"
      doc   = "Future-partition buffer short of premake"
    }
    default_partition_has_rows = {
      title = "rows in a DEFAULT partition"
      doc   = "Rows in a DEFAULT partition"
    }
    rollup_lag_exceeded = {
      title = "rollup lag above ${var.rollup_lag_alert_seconds} s"
      doc   = "Rollup lag"
    }
  }

  project               = var.project
  display_name          = "telemetry-jobs (${var.environment}): ${each.value.title}"
  combiner              = "OR"
  notification_channels = local.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = each.value.title
    condition_threshold {
      filter          = "resource.type = \"cloud_run_job\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.health_threshold[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "3600s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.table", "resource.label.job_name"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "${each.value.title}. See docs/alerts.md, section \"${each.value.doc}\"."
  }

  depends_on = [time_sleep.log_metrics_propagation]
}

# --- dashboard --------------------------------------------------------------------------------

locals {
  dashboard_charts = [
    {
      title  = "Executions by job and result"
      filter = "resource.type = \"cloud_run_job\" AND metric.type = \"run.googleapis.com/job/completed_execution_count\""
      align  = "ALIGN_SUM"
      reduce = "REDUCE_SUM"
      group  = ["resource.label.job_name", "metric.label.result"]
      period = "3600s"
    },
    {
      title  = "Runs by job and status (run_summary)"
      filter = "metric.type = \"logging.googleapis.com/user/telemetry_jobs/run_summaries\""
      align  = "ALIGN_SUM"
      reduce = "REDUCE_SUM"
      group  = ["resource.label.job_name", "metric.label.status"]
      period = "3600s"
    },
    {
      title  = "Run duration p95 (ms)"
      filter = "metric.type = \"logging.googleapis.com/user/telemetry_jobs/run_duration\""
      align  = "ALIGN_DELTA"
      reduce = "REDUCE_PERCENTILE_95"
      group  = ["resource.label.job_name"]
      period = "3600s"
    },
    {
      title  = "Future partitions ready (p05 per table)"
      filter = "metric.type = \"logging.googleapis.com/user/telemetry_jobs/future_buffer_intervals\""
      align  = "ALIGN_DELTA"
      reduce = "REDUCE_PERCENTILE_05"
      group  = ["metric.label.table"]
      period = "3600s"
    },
    {
      title  = "Rows in DEFAULT partitions (p95 per table)"
      filter = "metric.type = \"logging.googleapis.com/user/telemetry_jobs/default_rows\""
      align  = "ALIGN_DELTA"
      reduce = "REDUCE_PERCENTILE_95"
      group  = ["metric.label.table"]
      period = "3600s"
    },
    {
      title  = "Rollup lag, seconds (p95 per table)"
      filter = "metric.type = \"logging.googleapis.com/user/telemetry_jobs/rollup_lag_seconds\""
      align  = "ALIGN_DELTA"
      reduce = "REDUCE_PERCENTILE_95"
      group  = ["metric.label.table"]
      period = "3600s"
    },
    {
      title  = "Task attempts by job and result"
      filter = "resource.type = \"cloud_run_job\" AND metric.type = \"run.googleapis.com/job/completed_task_attempt_count\""
      align  = "ALIGN_SUM"
      reduce = "REDUCE_SUM"
      group  = ["resource.label.job_name", "metric.label.result"]
      period = "3600s"
    },
  ]
}

resource "google_monitoring_dashboard" "jobs" {
  project = var.project
  dashboard_json = jsonencode({
    displayName = "telemetry-jobs (${var.environment})"
    mosaicLayout = {
      columns = 48
      tiles = [
        for i, chart in local.dashboard_charts : {
          xPos   = (i % 2) * 24
          yPos   = floor(i / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = chart.filter
                    aggregation = {
                      alignmentPeriod    = chart.period
                      perSeriesAligner   = chart.align
                      crossSeriesReducer = chart.reduce
                      groupByFields      = chart.group
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })

  depends_on = [google_logging_metric.run_summaries, google_logging_metric.run_duration, google_logging_metric.table_health]
}
