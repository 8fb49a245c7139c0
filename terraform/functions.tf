locals {
  functions_dir = "${path.module}/../functions"
  repo_dir      = "${path.module}/.."

  # One function per functions/<name>/main.py. Its entry point is the @functions_framework.http
  # function of the same name (tests/terraform checks each main.py defines it).
  function_names = toset([for f in fileset(local.functions_dir, "*/main.py") : dirname(f)])

  # Control functions (budget check, run bookkeeping) call no model; `api` is the backend API
  # that clients call (common/backend); every other function is an analysis phase that calls
  # models. The kind decides ingress and invokers (here, workflows.tf), secret access
  # (secrets.tf) and roles (iam.tf).
  control_functions = setintersection(local.function_names, ["budget_check", "lifecycle"])
  api_functions     = setintersection(local.function_names, ["api"])
  function_kind = {
    for name in local.function_names : name => (
      contains(local.control_functions, name) ? "control" : contains(local.api_functions, name) ? "api" : "phase"
    )
  }
  # The functions the workflow calls: all but the API.
  workflow_functions = setsubtract(local.function_names, local.api_functions)

  # Each zip holds the function's main.py at its root, the requirements generated from
  # pyproject.toml (functions/requirements.txt) and exactly the files of common/ that main.py
  # imports, directly or not (terraform/packages.json, written by terraform/scripts/packages.py;
  # both kept in sync by tests/terraform). local/ and workflows/ are never deployed.
  package_files = jsondecode(file("${path.module}/packages.json"))

  # The timeout chain of common/platform/settings.py: the functions' timeout defaults to its
  # `function_timeout_seconds`, and the workflow waits `deadline_margin_seconds` longer for a
  # function's answer, so it sees Cloud Run's 504 (and retries) rather than giving up first
  # (tests/terraform compares both with the settings).
  deadline_margin_seconds       = 10
  workflow_call_timeout_seconds = var.function_timeout_seconds + local.deadline_margin_seconds

  # Memory per function: the smallest Cloud Run size that leaves 15% of it free at the worst
  # case the production-parity run measures (tests/parity: a business at every bound of its
  # schema, every model answer as large as its schema and output bound allow; peak of the
  # function's process tree, each page once). Peaks there: research 539 MiB (the embedding
  # model, 32 snippets of 256 tokens in batches of 4: common/search/embeddings.py), the other
  # phases about 360 MiB (the model, for their query), budget_check 162, api 107, lifecycle 102.
  # Nothing gets less than 512Mi: below it Cloud Run gives an instance a sixth of a vCPU, which
  # would slow the budget check and the API on every run. var.function_memory overrides.
  default_function_memory = "512Mi"
  measured_function_memory = {
    research = "1Gi"
  }
  function_memory = {
    for name in local.function_names : name => lookup(
      var.function_memory, name, lookup(local.measured_function_memory, name, local.default_function_memory)
    )
  }

  # Origins serving the web app: the browser key's referrers (auth.tf) and the API's CORS.
  web_origins = length(var.web_origins) > 0 ? var.web_origins : [
    "https://${var.project_id}.web.app",
    "https://${var.project_id}.firebaseapp.com",
  ]

  # Settings every function reads (common/platform/settings.py), plus Vector Search when it
  # exists and Gemini through Vertex AI when asked for.
  function_env = merge(
    {
      GOOGLE_CLOUD_PROJECT = var.project_id
      APP_MODE             = "production"
      REGION               = var.region
    },
    local.vector_search_env,
    var.gemini_via_vertex ? { GEMINI_USE_VERTEX = "true" } : {},
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

  # A redeploy deletes the previous zip, which versioning keeps as a noncurrent version: keep it
  # 30 days (to restore or rebuild from), then let Cloud Storage delete it.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = local.noncurrent_source_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

locals {
  noncurrent_source_days = 30
  # Function images: a repository of our own (rather than the gcf-artifacts one Cloud Functions
  # creates, which Terraform does not manage), so a cleanup policy can remove old images.
  function_images_repository = "raptorflow-functions"
  image_retention_days       = 30
  image_versions_kept        = 3
}

# Every build pushes an image (and its build cache) here; a live revision runs from the newest.
# Cleanup keeps each function's three newest images and deletes the others after 30 days.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84:The images are built from this repository's code and hold no secret or user data; they are encrypted at rest with Google-managed keys like the source zips they are built from, and a customer-managed key would add Cloud KMS keys, grants and costs for no data that needs them
  location      = var.region
  repository_id = local.function_images_repository
  format        = "DOCKER"
  description   = "RaptorFlow function images (Cloud Functions builds); old ones are cleaned up."

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = local.image_versions_kept
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "${local.image_retention_days * 86400}s"
    }
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
    # An unlisted function zips no common/ file; its precondition below names the fix.
    for_each = try(local.package_files[each.value], [])
    content {
      filename = source.value
      content  = file("${local.repo_dir}/${source.value}")
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

# The code reads the API keys through Secret Manager's API (common/platform/secrets.py), so nothing is
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
    # Spelled out rather than read back (`id`), so the plan shows it.
    docker_repository = "projects/${var.project_id}/locations/${var.region}/repositories/${google_artifact_registry_repository.functions.repository_id}"

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.value].name
      }
    }
  }

  service_config {
    service_account_email = local.function_sa_email[each.value]
    # Only the API is reached from the internet; the workflow reaches the others through their
    # run.app URLs, which internal ingress admits for Workflows.
    ingress_settings               = local.function_kind[each.value] == "api" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    available_memory               = local.function_memory[each.value]
    timeout_seconds                = var.function_timeout_seconds
    max_instance_count             = var.function_max_instances
    # The API answers CORS for the web app's origins only (the browser key accepts no others).
    environment_variables = merge(
      local.function_env,
      local.function_kind[each.value] == "api" ? { API_ALLOWED_ORIGINS = jsonencode(local.web_origins) } : {},
    )
  }

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z][a-z0-9_]{0,23}$", each.value))
      error_message = "functions/${each.value}: a function folder name must be a lowercase Python identifier of at most 24 characters (it names the entry point, the service and the service account)."
    }
    precondition {
      condition     = alltrue([for name in keys(var.function_memory) : contains(local.function_names, name)])
      error_message = "function_memory names a function that does not exist: ${join(", ", setsubtract(keys(var.function_memory), local.function_names))}."
    }
    precondition {
      condition     = can(local.package_files[each.value])
      error_message = "functions/${each.value} is not in terraform/packages.json: run `python terraform/scripts/packages.py`."
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
