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
  description = "Email of every service account, by role: one per function, the workflow, the backend and the build."
  value = merge(
    { for name, sa in google_service_account.function : "function/${name}" => sa.email },
    {
      workflow = google_service_account.workflow.email
      backend  = google_service_account.backend.email
      build    = google_service_account.build.email
    },
  )
}

output "backend_service_account" {
  description = "Identity to run the backend as (starts and cancels executions, creates run documents)."
  value       = google_service_account.backend.email
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
