locals {
  # Every secret the code reads (common/llm: the model providers' API keys). Terraform declares
  # them; their values are added out of band (docs/deploy.md), so no value reaches state.
  secret_ids = toset(["OPENAI_API_KEY", "GEMINI_API_KEY"])

  # Only the analysis phases call models, so only their identities may read the keys, and only
  # the keys the code reads in this configuration: with Gemini through Vertex AI
  # (gemini_via_vertex) GEMINI_API_KEY is never read (common/llm/setup.py). They are read through
  # Secret Manager's API at run time (nothing is mounted into the functions).
  secrets_read = setsubtract(local.secret_ids, var.gemini_via_vertex ? ["GEMINI_API_KEY"] : [])
  secret_readers = flatten([
    for name, kind in local.function_kind : [
      for secret in sort(local.secrets_read) : { key = "${name}/${secret}", function = name, secret = secret }
    ] if kind == "phase"
  ])
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secret_ids

  secret_id = each.value
  # Production keeps its keys on `terraform destroy` until protection is lifted (variables.tf).
  deletion_protection = local.protected

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# Access to one secret for one function's identity, never project-wide.
resource "google_secret_manager_secret_iam_member" "reader" {
  for_each = { for r in local.secret_readers : r.key => r }

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${local.function_sa_email[each.value.function]}"

  depends_on = [google_service_account.function]
}
