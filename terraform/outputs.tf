output "function_urls" {
  description = "Each function's run.app URL (internal ingress, reachable by the workflow, except the API's)."
  value       = { for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri }
}

output "api_url" {
  description = "The backend API's public URL (functions/api; clients send Firebase ID tokens), or null without it."
  value       = one([for name in local.api_functions : google_cloudfunctions2_function.function[name].service_config[0].uri])
}

output "workflow_id" {
  description = "Full resource id of the analysis workflow (the backend starts executions of it)."
  value       = google_workflows_workflow.marketing_analysis.id
}

output "workflow_name" {
  description = "Short name of the workflow: the backend's WORKFLOW_ID setting."
  value       = google_workflows_workflow.marketing_analysis.name
}

output "service_accounts" {
  description = "Email of every service account, by role: one per function, the workflow and the build."
  value = merge(
    { for name, sa in google_service_account.function : "function/${name}" => sa.email },
    {
      workflow = google_service_account.workflow.email
      build    = google_service_account.build.email
    },
  )
}

output "firestore_database" {
  description = "Firestore database name and location."
  value = {
    name     = google_firestore_database.main.name
    location = google_firestore_database.main.location_id
  }
}

output "secret_ids" {
  description = "Secret Manager secrets to fill with `gcloud secrets versions add` after the first apply."
  value       = sort([for s in google_secret_manager_secret.secret : s.secret_id])
}

output "source_bucket" {
  description = "Bucket holding the function source zips (one object per content hash)."
  value       = google_storage_bucket.sources.name
}

output "vector_search" {
  description = "Vector Search ids, or null when enable_vector_search is false."
  value       = var.enable_vector_search ? local.vector_search_env : null
}

output "web_app_config" {
  description = "The web app's config.json (web/src/types.ts Config): the Firebase config with the browser key, and the API's URL. `terraform output -json web_app_config > web/dist/config.json`."
  # The provider marks every API key string sensitive, though a browser key is public by design.
  sensitive = true
  value = {
    firebase = {
      apiKey    = google_apikeys_key.web.key_string
      projectId = var.project_id
    }
    apiUrl = one([for name in local.api_functions : google_cloudfunctions2_function.function[name].service_config[0].uri])
  }
}

output "web_origins" {
  description = "Where the web app may be served from (the browser key's referrers, the API's CORS origins)."
  value       = local.web_origins
}

output "budget" {
  description = "The monthly budget's name, or null without billing_account."
  value       = one(google_billing_budget.project[*].name)
}
