locals {
  # The very file the local engine runs; its id there is the file stem.
  workflow_file = "${path.module}/../workflows/marketing_analysis.workflows.yaml"

  # The workflow finds each function by sys.get_env("<NAME>_URL"). The run.app URL, because
  # Workflows reaches internal-only services only through it.
  workflow_env = {
    for name in local.function_names :
    "${upper(name)}_URL" => google_cloudfunctions2_function.function[name].service_config[0].uri
  }
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

# The workflow may invoke each function's Cloud Run service, and nothing else.
resource "google_cloud_run_service_iam_member" "workflow_invoker" {
  for_each = local.function_names

  location = var.region
  # A function's Cloud Run service carries the function's name.
  service = google_cloudfunctions2_function.function[each.value].name
  role    = "roles/run.invoker"
  member  = "serviceAccount:${local.workflow_sa_email}"

  depends_on = [google_service_account.workflow]
}
