variable "project_id" {
  description = "Google Cloud project that receives every RaptorFlow resource."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, the workflow and Vertex AI (e.g. us-central1)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region name such as us-central1 or europe-west1."
  }
}

variable "environment" {
  description = "Deployment stage; prod protects the database, workflow, secrets and source bucket from deletion."
  type        = string
  default     = "dev"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

locals {
  # Production resources refuse `terraform destroy` (workflow, secrets, source bucket, Firestore
  # delete protection); dev and staging are destroyed whole.
  protected = var.environment == "prod"
}

variable "firestore_location" {
  description = "Firestore location: a multi-region (nam5, eur3) or a region. It cannot be changed after creation."
  type        = string
  default     = "nam5"

  validation {
    condition     = can(regex("^(nam5|nam7|eur3|[a-z]+-[a-z]+[0-9]+)$", var.firestore_location))
    error_message = "firestore_location must be nam5, nam7, eur3 or a region name such as us-central1."
  }
}

variable "firestore_deletion_policy" {
  description = "What `terraform destroy` does to the Firestore database: ABANDON (default) leaves it and its data in place (the next apply into the same project imports it first, docs/deploy.md); DELETE deletes it with every document, when delete protection is off (not in prod)."
  type        = string
  default     = "ABANDON"

  validation {
    condition     = contains(["ABANDON", "DELETE"], var.firestore_deletion_policy)
    error_message = "firestore_deletion_policy must be ABANDON (keep the database on destroy) or DELETE."
  }
}

variable "function_memory" {
  description = "Memory per function, overriding the measured sizes in terraform/functions.tf (function name => Cloud Run size such as 512Mi or 2Gi). The production-parity run fails when a function's worst case needs more than 85% of its size."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for size in values(var.function_memory) : can(regex("^[0-9]+(Mi|Gi)$", size))])
    error_message = "function_memory must map function names to sizes such as 512Mi or 1Gi."
  }
}

variable "function_timeout_seconds" {
  description = "Request timeout of each function. The default is common/platform/settings.py's function_timeout_seconds (every model call a phase may make, each bounded by the LLM call timeout, plus margins); raise it if you must, never lower it: a phase cut short answers 504 and its retries wait for its lease."
  type        = number
  default     = 300

  validation {
    condition     = var.function_timeout_seconds >= 300 && var.function_timeout_seconds <= 1790 && floor(var.function_timeout_seconds) == var.function_timeout_seconds
    error_message = "function_timeout_seconds must be a whole number of seconds from 300 (the settings' function_timeout_seconds) to 1790 (the workflow waits 10 s longer, and Workflows' HTTP timeout is at most 1800 s)."
  }
}

variable "function_max_instances" {
  description = "Upper bound on instances per function: a cap on spend if something loops."
  type        = number
  default     = 20

  validation {
    condition     = var.function_max_instances >= 1 && var.function_max_instances <= 1000 && floor(var.function_max_instances) == var.function_max_instances
    error_message = "function_max_instances must be a whole number from 1 to 1000."
  }
}

variable "enable_vector_search" {
  description = "Create the Vertex AI Vector Search index, endpoint and deployed index. Off by default: a deployed index bills for its replicas around the clock."
  type        = bool
  default     = false
}

variable "gemini_via_vertex" {
  description = "Call Gemini through Vertex AI with the phases' own identities (GEMINI_USE_VERTEX; roles/aiplatform.user) instead of GEMINI_API_KEY from Secret Manager."
  type        = bool
  default     = false
}

variable "vector_dimensions" {
  description = "Embedding dimension of the vector index; it must equal the production embedding model's output size (Vertex text-embedding-005: 768)."
  type        = number
  default     = 768

  validation {
    condition     = var.vector_dimensions >= 1 && var.vector_dimensions <= 4096 && floor(var.vector_dimensions) == var.vector_dimensions
    error_message = "vector_dimensions must be a whole number from 1 to 4096."
  }
}

variable "vector_max_replicas" {
  description = "Most replicas the deployed index may scale to (it keeps at least one)."
  type        = number
  default     = 2

  validation {
    condition     = var.vector_max_replicas >= 1 && var.vector_max_replicas <= 10 && floor(var.vector_max_replicas) == var.vector_max_replicas
    error_message = "vector_max_replicas must be a whole number from 1 to 10."
  }
}

variable "alert_email" {
  description = "Email address that receives the alerts (budget warnings, model error rate, failed runs). Null: alerts are created without a notification channel."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@[:space:]]+@[^@[:space:]]+\\.[^@[:space:]]+$", var.alert_email))
    error_message = "alert_email must be an email address such as ops@example.com (or null)."
  }
}

variable "error_rate_threshold" {
  description = "Share of failed model calls (per model, over 5 minutes) above which the error-rate alert fires."
  type        = number
  default     = 0.2

  validation {
    condition     = var.error_rate_threshold > 0 && var.error_rate_threshold <= 1
    error_message = "error_rate_threshold must be a fraction greater than 0 and at most 1."
  }
}

variable "platform_daily_cap_usd" {
  description = "Platform-wide daily spend cap across all businesses in USD, overriding common/budget/tiers.yaml (the tiers themselves are data in the code). Null: the file's value."
  type        = number
  default     = null

  validation {
    condition     = var.platform_daily_cap_usd == null || try(var.platform_daily_cap_usd > 0, false)
    error_message = "platform_daily_cap_usd must be a positive amount in USD (or null)."
  }
}

variable "log_metric_wait_seconds" {
  description = "How long the first apply waits between creating the log-based metrics and the alert policy that reads them: Monitoring answers 404 \"Cannot find metric(s)\" for up to 10 minutes after a metric is created (terraform-provider-google issue 11102). The wait overlaps the function builds."
  type        = number
  default     = 600

  validation {
    condition     = var.log_metric_wait_seconds >= 0 && floor(var.log_metric_wait_seconds) == var.log_metric_wait_seconds
    error_message = "log_metric_wait_seconds must be a whole number of seconds (600 covers the 10 minutes Monitoring may take)."
  }
}

variable "web_origins" {
  description = "Origins that serve the web app (scheme://host[:port], no path): the browser API key accepts only their pages as referrers and the API answers CORS only for them. Empty: Firebase Hosting's two sites for the project (https://PROJECT.web.app, https://PROJECT.firebaseapp.com)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for origin in var.web_origins : can(regex("^https?://[a-z0-9.-]+(:[0-9]+)?$", origin))])
    error_message = "web_origins must be origins such as https://app.example.com or http://localhost:8080 (scheme, host and port only, no path or trailing slash)."
  }
}

variable "billing_account" {
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) that pays for the project: with it Terraform creates a monthly budget alert for the project's Google Cloud costs (the deployer needs roles/billing.costsManager on the account). Null: no budget."
  type        = string
  default     = null

  validation {
    condition     = var.billing_account == null || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account))
    error_message = "billing_account must be a billing account id such as 012345-6789AB-CDEF01 (or null)."
  }
}

variable "monthly_budget_usd" {
  description = "The project's monthly Google Cloud budget in USD (with billing_account): mails at 50%, 90% and 100% of it spent and at 100% forecast. Model providers bill separately; the budget ledger in the code caps their spend."
  type        = number
  default     = 200

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be a positive amount in USD."
  }
}
