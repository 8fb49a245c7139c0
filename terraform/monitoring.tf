# Log-based metrics read the JSON lines the code writes (common/log.py: fields land in jsonPayload).
# Events: usage_settled (cost_usd, tier, model, provider, task_type, latency_ms, ok),
# phase_completed (phase, duration_ms), budget_warning, run_failed.

locals {
  usage_filter = "jsonPayload.event=\"usage_settled\""

  # PromQL names of the log-based metrics (user metrics map to logging_googleapis_com:user_<name>).
  promql_cost   = "logging_googleapis_com:user_${google_logging_metric.llm_cost_usd.name}_sum"
  promql_calls  = "logging_googleapis_com:user_${google_logging_metric.model_calls.name}"
  promql_errors = "logging_googleapis_com:user_${google_logging_metric.model_errors.name}"
  metric_type   = "logging.googleapis.com/user"
  # The monitored resource of the functions' log entries, hence of the log-based metrics built from
  # them: a Cloud Run function (Cloud Functions v2 API) writes its logs as its Cloud Run revision.
  function_resource = "resource.type=\"cloud_run_revision\""
  notification_ids  = google_monitoring_notification_channel.email[*].id
  alert_doc_runbook = "See docs/deploy.md (Operations) in the RaptorFlow repository."
}

resource "google_logging_metric" "llm_cost_usd" {
  name        = "raptorflow_llm_cost_usd"
  description = "Cost of each settled model call in USD, by tier, model, provider and task type (daily cost by tier on the dashboard)."
  filter      = local.usage_filter

  value_extractor = "EXTRACT(jsonPayload.cost_usd)"
  label_extractors = {
    tier      = "EXTRACT(jsonPayload.tier)"
    model     = "EXTRACT(jsonPayload.model)"
    provider  = "EXTRACT(jsonPayload.provider)"
    task_type = "EXTRACT(jsonPayload.task_type)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    # An annotation alone ("{USD}") is a dimensionless unit; the grammar has no currency units.
    unit         = "{USD}"
    display_name = "RaptorFlow model call cost"

    labels {
      key         = "tier"
      description = "Subscription tier of the business (basic, pro, enterprise)."
    }
    labels {
      key         = "model"
      description = "Model that answered."
    }
    labels {
      key         = "provider"
      description = "openai, gemini or offline."
    }
    labels {
      key         = "task_type"
      description = "Router task type."
    }
  }

  # From a hundredth of a cent up: 0.0001 USD * 2^k.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 0.0001
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "model_calls" {
  name        = "raptorflow_model_calls"
  description = "Settled model calls by model, provider, tier and task type (model selection distribution)."
  filter      = local.usage_filter

  label_extractors = {
    model     = "EXTRACT(jsonPayload.model)"
    provider  = "EXTRACT(jsonPayload.provider)"
    tier      = "EXTRACT(jsonPayload.tier)"
    task_type = "EXTRACT(jsonPayload.task_type)"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "RaptorFlow model calls"

    labels {
      key         = "model"
      description = "Model that answered."
    }
    labels {
      key         = "provider"
      description = "openai, gemini or offline."
    }
    labels {
      key         = "tier"
      description = "Subscription tier of the business."
    }
    labels {
      key         = "task_type"
      description = "Router task type."
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "model_errors" {
  name        = "raptorflow_model_errors"
  description = "Failed model calls by model and provider (numerator of the error rate)."
  filter      = "${local.usage_filter} AND jsonPayload.ok=false"

  label_extractors = {
    model    = "EXTRACT(jsonPayload.model)"
    provider = "EXTRACT(jsonPayload.provider)"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "RaptorFlow model call errors"

    labels {
      key         = "model"
      description = "Model that failed."
    }
    labels {
      key         = "provider"
      description = "openai, gemini or offline."
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "phase_duration_ms" {
  name        = "raptorflow_phase_duration_ms"
  description = "Completion time of each analysis phase in milliseconds, by phase."
  filter      = "jsonPayload.event=\"phase_completed\""

  value_extractor = "EXTRACT(jsonPayload.duration_ms)"
  label_extractors = {
    phase = "EXTRACT(jsonPayload.phase)"
  }

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ms"
    display_name = "RaptorFlow phase completion time"

    labels {
      key         = "phase"
      description = "Analysis phase (research, positioning, ...)."
    }
  }

  # 100 ms * 2^k, up to about 55 minutes.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 16
      growth_factor      = 2
      scale              = 100
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "run_failures" {
  name        = "raptorflow_run_failures"
  description = "Analysis runs that ended failed."
  filter      = "jsonPayload.event=\"run_failed\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "RaptorFlow failed runs"
  }

  depends_on = [google_project_service.enabled]
}

# A settle that arrived after its hold had been swept (a frozen holder): the one way to spend
# above a limit, bounded by that hold (docs/decisions/006). Should stay at zero.
resource "google_logging_metric" "late_settles" {
  name        = "raptorflow_late_settles"
  description = "Model calls settled after their budget hold had expired and been released."
  filter      = "jsonPayload.event=\"usage_settled_late\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "RaptorFlow late settles"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "budget_warnings" {
  name        = "raptorflow_budget_warnings"
  description = "Budget warnings (75%, 90%, 100% of a daily or monthly limit)."
  filter      = "jsonPayload.event=\"budget_warning\""

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "RaptorFlow budget warnings"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_notification_channel" "email" {
  count = var.alert_email == null ? 0 : 1

  display_name = "RaptorFlow alerts"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "budget_warning" {
  display_name          = "RaptorFlow: budget warning"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_ids

  conditions {
    display_name = "A business crossed a budget threshold"
    condition_matched_log {
      filter = "jsonPayload.event=\"budget_warning\""
      label_extractors = {
        business_id = "EXTRACT(jsonPayload.business_id)"
      }
    }
  }

  # Log-match alerts need a rate limit; one mail per 5 minutes is plenty for a warning.
  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = "A business reached 75%, 90% or 100% of its daily or monthly budget; at 100% new tasks are blocked until the period rolls over. ${local.alert_doc_runbook}"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_alert_policy" "run_failed" {
  display_name          = "RaptorFlow: analysis run failed"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_ids

  conditions {
    display_name = "A run ended failed"
    condition_matched_log {
      filter = "jsonPayload.event=\"run_failed\""
      label_extractors = {
        run_id = "EXTRACT(jsonPayload.run_id)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "300s"
    }
    auto_close = "86400s"
  }

  documentation {
    content   = "An analysis run ended with status failed. The log line carries the run id and the error. ${local.alert_doc_runbook}"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled]
}

# Monitoring answers 404 "Cannot find metric(s)... it could take up to 10 minutes" to an alert
# policy on a log-based metric created moments before, and the provider does not retry
# (terraform-provider-google issue 11102). The policy waits for this, which waits
# `log_metric_wait_seconds` after the metrics it reads exist; a renamed metric waits again.
resource "time_sleep" "log_metrics_visible" {
  create_duration = "${var.log_metric_wait_seconds}s"

  triggers = {
    calls  = google_logging_metric.model_calls.name
    errors = google_logging_metric.model_errors.name
  }
}

resource "google_monitoring_alert_policy" "model_error_rate" {
  display_name          = "RaptorFlow: model error rate"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_ids

  conditions {
    display_name = "Failed share of a model's calls above ${var.error_rate_threshold}"
    condition_threshold {
      # The Monitoring API refuses a threshold filter that names no resource type.
      filter             = "metric.type=\"${local.metric_type}/${google_logging_metric.model_errors.name}\" AND ${local.function_resource}"
      denominator_filter = "metric.type=\"${local.metric_type}/${google_logging_metric.model_calls.name}\" AND ${local.function_resource}"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.error_rate_threshold
      duration           = "300s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.model"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.model"]
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    content   = "A model fails more than ${var.error_rate_threshold * 100}% of its calls; the router falls back, so runs cost more or slow down. ${local.alert_doc_runbook}"
    mime_type = "text/markdown"
  }

  depends_on = [google_project_service.enabled, time_sleep.log_metrics_visible]
}

resource "google_monitoring_dashboard" "raptorflow" {
  dashboard_json = jsonencode({
    displayName = "RaptorFlow"
    mosaicLayout = {
      columns = 12
      tiles = [
        {
          xPos = 0, yPos = 0, width = 6, height = 4
          widget = {
            title = "Daily cost by tier (USD)"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  prometheusQuery = "sum by (tier) (increase(${local.promql_cost}[1d]))"
                }
              }]
            }
          }
        },
        {
          xPos = 6, yPos = 0, width = 6, height = 4
          widget = {
            title = "Model selection (calls per hour)"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_type}/${google_logging_metric.model_calls.name}\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = ["metric.label.model"]
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos = 0, yPos = 4, width = 6, height = 4
          widget = {
            title = "Phase completion time, p95 (ms)"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_type}/${google_logging_metric.phase_duration_ms.name}\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_PERCENTILE_95"
                      groupByFields      = ["metric.label.phase"]
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos = 6, yPos = 4, width = 6, height = 4
          widget = {
            title = "Error rate by model"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  prometheusQuery = "sum by (model) (increase(${local.promql_errors}[1h])) / sum by (model) (increase(${local.promql_calls}[1h]))"
                }
              }]
            }
          }
        },
        {
          xPos = 0, yPos = 8, width = 6, height = 4
          widget = {
            title = "Failed runs"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_type}/${google_logging_metric.run_failures.name}\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_SUM"
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos = 6, yPos = 8, width = 6, height = 4
          widget = {
            title = "Budget warnings"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_type}/${google_logging_metric.budget_warnings.name}\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_SUM"
                    }
                  }
                }
              }]
            }
          }
        },
        {
          xPos = 0, yPos = 12, width = 6, height = 4
          widget = {
            title = "Late settles (should stay at zero)"
            xyChart = {
              dataSets = [{
                plotType = "STACKED_BAR"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"${local.metric_type}/${google_logging_metric.late_settles.name}\""
                    aggregation = {
                      alignmentPeriod    = "3600s"
                      perSeriesAligner   = "ALIGN_DELTA"
                      crossSeriesReducer = "REDUCE_SUM"
                    }
                  }
                }
              }]
            }
          }
        },
      ]
    }
  })

  depends_on = [google_project_service.enabled]
}
