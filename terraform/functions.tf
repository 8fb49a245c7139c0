locals {
  functions_dir = "${path.module}/../functions"
  common_dir    = "${path.module}/../common"

  # One function per functions/<name>/main.py. Its entry point is the @functions_framework.http
  # function of the same name (tests/terraform checks each main.py defines it).
  function_names = toset([for f in fileset(local.functions_dir, "*/main.py") : dirname(f)])

  # Control functions (budget check, run bookkeeping) call no model; every other function is an
  # analysis phase that does. The kind decides secret access (secrets.tf) and roles (iam.tf).
  control_functions = setintersection(local.function_names, ["budget_check", "lifecycle"])
  function_kind     = { for name in local.function_names : name => contains(local.control_functions, name) ? "control" : "phase" }

  # Every zip holds the function's main.py at its root, the whole common/ package and the
  # requirements generated from pyproject.toml (functions/requirements.txt, kept in sync by a test).
  common_files = sort([
    for f in fileset(local.common_dir, "**") : f
    if !strcontains(f, "__pycache__") && !endswith(f, ".pyc")
  ])

  # Settings every function reads (common/settings.py), plus Vector Search when it exists.
  function_env = merge(
    {
      GOOGLE_CLOUD_PROJECT = var.project_id
      APP_MODE             = "production"
      REGION               = var.region
    },
    local.vector_search_env,
    var.platform_daily_cap_usd == null ? {} : { PLATFORM_DAILY_CAP_USD = tostring(var.platform_daily_cap_usd) },
  )
}

resource "google_storage_bucket" "sources" {
  name     = "${var.project_id}-raptorflow-sources"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Versioning keeps every deleted zip as a noncurrent version, so the bucket is never empty on
  # `terraform destroy`; outside production, destroy deletes those versions with the bucket.
  force_destroy = !local.protected

  # Objects are named by content hash and never overwritten; versioning only guards against
  # an accidental delete of the source a live revision was built from.
  versioning {
    enabled = true
  }

  depends_on = [google_project_service.enabled]
}

data "archive_file" "source" {
  for_each = local.function_names

  type        = "zip"
  output_path = "${path.module}/.build/${each.value}.zip"

  source {
    filename = "main.py"
    content  = file("${local.functions_dir}/${each.value}/main.py")
  }

  dynamic "source" {
    for_each = local.common_files
    content {
      filename = "common/${source.value}"
      content  = file("${local.common_dir}/${source.value}")
    }
  }

  source {
    filename = "requirements.txt"
    content  = file("${local.functions_dir}/requirements.txt")
  }
}

# Named by the zip's hash: a code change is a new object, hence a new build and revision.
resource "google_storage_bucket_object" "source" {
  for_each = local.function_names

  bucket       = google_storage_bucket.sources.name
  name         = "${each.value}/${data.archive_file.source[each.value].output_md5}.zip"
  source       = data.archive_file.source[each.value].output_path
  content_type = "application/zip"
}

# The code reads the API keys through Secret Manager's API (common/secrets.py), so nothing is
# mounted: every function has the same shape, and only its identity's grants differ (iam.tf).
resource "google_cloudfunctions2_function" "function" {
  for_each = local.function_names

  # Cloud Run service names allow no underscore; the entry point keeps the Python name.
  name        = replace(each.value, "_", "-")
  location    = var.region
  description = "RaptorFlow ${each.value} (functions/${each.value}/main.py)"

  build_config {
    runtime         = "python311"
    entry_point     = each.value
    service_account = "projects/${var.project_id}/serviceAccounts/${local.build_sa_email}"

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.value].name
      }
    }
  }

  service_config {
    service_account_email          = local.function_sa_email[each.value]
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    available_memory               = var.function_memory
    timeout_seconds                = var.function_timeout_seconds
    max_instance_count             = var.function_max_instances
    environment_variables          = local.function_env
  }

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z][a-z0-9_]{0,23}$", each.value))
      error_message = "functions/${each.value}: a function folder name must be a lowercase Python identifier of at most 24 characters (it names the entry point, the service and the service account)."
    }
  }

  # A revision's first request may need its grants (Firestore, Secret Manager, Vertex AI).
  depends_on = [
    google_project_service.enabled,
    google_project_iam_member.grant,
    google_secret_manager_secret_iam_member.reader,
  ]
}

# Until one block served both kinds, phases and control functions had a block each; keep their
# state (a function is not replaced by the rename).
moved {
  from = google_cloudfunctions2_function.phase
  to   = google_cloudfunctions2_function.function
}

moved {
  from = google_cloudfunctions2_function.control["budget_check"]
  to   = google_cloudfunctions2_function.function["budget_check"]
}

moved {
  from = google_cloudfunctions2_function.control["lifecycle"]
  to   = google_cloudfunctions2_function.function["lifecycle"]
}
