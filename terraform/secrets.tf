locals {
  # Every secret the code reads (common/llm: the model providers' API keys). Terraform declares
  # them; their values are added out of band (docs/deploy.md), so no value reaches state.
  secret_ids = toset(["OPENAI_API_KEY", "GEMINI_API_KEY"])

  # Which secrets each kind of function reads (functions.tf), mounted as environment variables
  # of the same name. Only the analysis phases call models; the control functions read none.
  secrets_by_kind = {
    phase   = sort(local.secret_ids)
    control = []
  }
  function_secrets = { for name, kind in local.function_kind : name => local.secrets_by_kind[kind] }

  secret_readers = flatten([
    for name, secrets in local.function_secrets : [
      for secret in secrets : { key = "${name}/${secret}", function = name, secret = secret }
    ]
  ])
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secret_ids

  secret_id = each.value

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
