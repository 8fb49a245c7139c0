locals {
  services = toset([
    "aiplatform.googleapis.com",           # Gemini via Vertex AI, embeddings, Vector Search
    "apikeys.googleapis.com",              # the web app's browser key
    "artifactregistry.googleapis.com",     # function images
    "cloudbuild.googleapis.com",           # builds the function sources
    "cloudfunctions.googleapis.com",       # the functions
    "cloudresourcemanager.googleapis.com", # project IAM bindings
    "firebaserules.googleapis.com",        # Firestore security rules
    "firestore.googleapis.com",            # usage, budgets, runs, progress
    "iam.googleapis.com",                  # service accounts
    "identitytoolkit.googleapis.com",      # Identity Platform: users sign in (email and password)
    "logging.googleapis.com",              # structured logs and log-based metrics
    "monitoring.googleapis.com",           # dashboard and alerts
    "run.googleapis.com",                  # the functions' Cloud Run services
    "secretmanager.googleapis.com",        # API keys
    "securetoken.googleapis.com",          # Identity Platform: ID token refresh
    "storage.googleapis.com",              # function source bucket
    "workflows.googleapis.com",            # the analysis workflow
  ])
  # The budget (billing.tf) is created through this API, billed to the project.
  optional_services = var.billing_account == null ? [] : ["billingbudgets.googleapis.com"]
}

resource "google_project_service" "enabled" {
  for_each = setunion(local.services, local.optional_services)

  project = var.project_id
  service = each.value

  # Other workloads in the project may use the same APIs: never switch them off on destroy.
  disable_on_destroy         = false
  disable_dependent_services = false
}
