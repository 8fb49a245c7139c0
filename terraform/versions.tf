terraform {
  required_version = ">= 1.5"

  required_providers {
    # 7.41 and 8.7 are both checked offline (../../shared/tools/terraform-offline); every
    # resource used here has the same arguments in both majors.
    google = {
      source  = "hashicorp/google"
      version = ">= 7.41, < 9.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.7, < 3.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app         = "raptorflow"
    environment = var.environment
    managed-by  = "terraform"
  }
}
