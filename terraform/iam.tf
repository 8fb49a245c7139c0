# One service account per identity, each with only the roles its code needs. Firestore, Vertex AI,
# logging and Workflows grant only at project level; secrets and Cloud Run services are granted
# per resource (secrets.tf, workflows.tf). No basic roles, nothing for allUsers.

locals {
  # Emails are derived from the account ids rather than read back from the accounts, so every
  # binding's member is known in the plan (tests/terraform checks them); bindings therefore
  # depend on the accounts explicitly.
  sa_domain = "${var.project_id}.iam.gserviceaccount.com"
  function_sa_email = {
    for name in local.function_names : name => "rf-fn-${replace(name, "_", "-")}@${local.sa_domain}"
  }
  workflow_sa_email = "rf-workflow@${local.sa_domain}"
  build_sa_email    = "rf-build@${local.sa_domain}"

  # Every function reads and writes Firestore and writes logs. Only the phases call Vertex AI, and
  # only when a feature on it is switched on: Vector Search (enable_vector_search) or Gemini
  # through Vertex AI (gemini_via_vertex); by default evidence is in Firestore and embeddings come
  # from the model shipped with the code, so no function holds a Vertex AI role. The API starts
  # executions of the workflow (decision 007).
  phases_use_vertex = var.enable_vector_search || var.gemini_via_vertex
  roles_by_kind = {
    phase   = concat(["roles/datastore.user", "roles/logging.logWriter"], local.phases_use_vertex ? ["roles/aiplatform.user"] : [])
    control = ["roles/datastore.user", "roles/logging.logWriter"]
    api     = ["roles/datastore.user", "roles/logging.logWriter", "roles/workflows.invoker"]
  }
  function_roles = { for name, kind in local.function_kind : name => local.roles_by_kind[kind] }

  # The workflow only writes logs at project level; invoking the functions is granted per service.
  workflow_roles = ["roles/logging.logWriter"]

  # Cloud Build builds the function images: build logs, the image registry (Artifact Registry),
  # and reading the uploaded source. Object Viewer, not the Object Admin some of Google's pages
  # ask for: docs/decisions/005-infrastructure.md says why.
  build_roles = ["roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectViewer"]

  project_grants = merge(
    merge([
      for name, roles in local.function_roles : {
        for role in roles : "function/${name}/${role}" => { email = local.function_sa_email[name], role = role }
      }
    ]...),
    { for role in local.workflow_roles : "workflow/${role}" => { email = local.workflow_sa_email, role = role } },
    { for role in local.build_roles : "build/${role}" => { email = local.build_sa_email, role = role } },
  )
}

resource "google_service_account" "function" {
  for_each = local.function_names

  account_id   = split("@", local.function_sa_email[each.value])[0]
  display_name = "RaptorFlow function ${each.value}"
  description  = "Runtime identity of the ${each.value} function (functions/${each.value}/main.py)."

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "workflow" {
  account_id   = split("@", local.workflow_sa_email)[0]
  display_name = "RaptorFlow workflow"
  description  = "Runs the marketing_analysis workflow: invokes the functions and writes logs."

  depends_on = [google_project_service.enabled]
}

# There is no separate backend account: the backend is the API function, which starts and cancels
# executions and creates run documents as its own account (rf-fn-api). An rf-backend account
# with those roles that nothing ran as was removed (issue 18).

resource "google_service_account" "build" {
  account_id   = split("@", local.build_sa_email)[0]
  display_name = "RaptorFlow function builds"
  description  = "Cloud Build identity for building the functions (instead of the default compute account)."

  depends_on = [google_project_service.enabled]
}

resource "google_project_iam_member" "grant" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${each.value.email}"

  depends_on = [
    google_service_account.function,
    google_service_account.workflow,
    google_service_account.build,
  ]
}
