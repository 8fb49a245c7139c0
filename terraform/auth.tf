# Sign-in for the web app and any other client of the API: Identity Platform (Firebase Auth's
# backend) with email and password. The API verifies the ID tokens it issues (decision 007).

# Identity Platform is switched on once per project and cannot be switched off: `terraform
# destroy` only forgets this resource, so an apply into a project that had it imports it first
# (docs/deploy.md).
resource "google_identity_platform_config" "auth" {
  sign_in {
    allow_duplicate_emails = false

    email {
      enabled           = true
      password_required = true
    }
  }

  depends_on = [google_project_service.enabled]
}

# A deleted API key keeps its name for 30 days (terraform-provider-google issue 11726), so the
# key is named after the time it was created: an apply after a destroy makes a new name.
resource "time_static" "web_key" {}

# The web app's browser key, public by design (it is in every page): it only names the project
# to the APIs the Firebase JS SDK calls, and only from the app's own pages.
resource "google_apikeys_key" "web" {
  name         = "rf-web-${time_static.web_key.unix}"
  display_name = "RaptorFlow web app (browser)"

  restrictions {
    browser_key_restrictions {
      allowed_referrers = [for origin in local.web_origins : "${origin}/*"]
    }

    dynamic "api_targets" {
      for_each = local.web_key_services
      content {
        service = api_targets.value
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

locals {
  # What the web app's SDKs call with the key: sign-in, ID token refresh, Firestore listeners.
  web_key_services = ["identitytoolkit.googleapis.com", "securetoken.googleapis.com", "firestore.googleapis.com"]
}
