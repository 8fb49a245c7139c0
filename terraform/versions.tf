terraform {
  required_version = ">= 1.5"

  required_providers {
    # 7.41 and 8.7 are both checked offline (tools/terraform-offline, `make validate-terraform`);
    # every resource used here has the same arguments in both majors.
    google = {
      source  = "hashicorp/google"
      version = ">= 7.41, < 9.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3.0"
    }
    # time_sleep between the log-based metrics and the alert policy on them (monitoring.tf) and
    # time_static naming the browser key (auth.tf); checked offline against 0.14.2.
    time = {
      source  = "hashicorp/time"
      version = ">= 0.13, < 1.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  # User credentials (gcloud auth application-default login) belong to a Google-owned project, and
  # client-based APIs such as Firebase Rules answer 403 unless a quota project is named. Send the
  # deployment's own project as X-Goog-User-Project on every request (the deployer needs
  # serviceusage.services.use on it, which the documented roles include; docs/deploy.md).
  user_project_override = true
  billing_project       = var.project_id

  default_labels = {
    app         = "raptorflow"
    environment = var.environment
    managed-by  = "terraform"
  }
}
