locals {
  # The very file the local engine runs; its id there is the file stem.
  workflow_file = "${path.module}/../workflows/marketing_analysis.workflows.yaml"

  # The workflow finds each function it calls by sys.get_env("<NAME>_URL"), the run.app URL,
  # because Workflows reaches internal-only services only through it; and waits
  # FUNCTION_CALL_TIMEOUT seconds for an answer (functions.tf).
  workflow_env = merge(
    {
      for name in local.workflow_functions :
      "${upper(name)}_URL" => google_cloudfunctions2_function.function[name].service_config[0].uri
    },
    { FUNCTION_CALL_TIMEOUT = tostring(local.workflow_call_timeout_seconds) },
  )
}

resource "google_workflows_workflow" "marketing_analysis" {
  name            = "marketing_analysis"
  region          = var.region
  description     = "RaptorFlow marketing analysis: budget check, phases, cancellation checks, totals."
  service_account = local.workflow_sa_email
  source_contents = file(local.workflow_file)
  user_env_vars   = local.workflow_env
  call_log_level  = "LOG_ERRORS_ONLY"

  # The provider (7.0 and later) protects workflows from deletion unless told otherwise; protect
  # production only, so `terraform destroy` removes a dev or staging deployment (docs/deploy.md).
  deletion_protection = local.protected

  depends_on = [google_project_service.enabled, google_project_iam_member.grant]
}

# The workflow may invoke each function it calls, and nothing else. The current revision no longer
# calls budget_check (each phase checks its budget on its first read), but an execution runs to its
# end on the revision it started with (updating a workflow "has no impact on already running
# executions"), and those of earlier revisions check before each phase: the URL and the grant stay.
resource "google_cloud_run_service_iam_member" "workflow_invoker" {
  for_each = local.workflow_functions

  location = var.region
  # A function's Cloud Run service carries the function's name.
  service = google_cloudfunctions2_function.function[each.value].name
  role    = "roles/run.invoker"
  member  = "serviceAccount:${local.workflow_sa_email}"

  depends_on = [google_service_account.workflow]
}

# The API is public: clients call it from browsers and apps, and it checks each request's
# Firebase ID token itself (common/backend/auth.py, decision 007). No other function is.
resource "google_cloud_run_service_iam_member" "api_public" {
  #checkov:skip=CKV_GCP_102:The backend API is public by design (browsers and apps call it); every route but the OpenAPI document requires a Firebase ID token that the function verifies (decision 007), and no other service is public
  for_each = local.api_functions

  location = var.region
  service  = google_cloudfunctions2_function.function[each.value].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
