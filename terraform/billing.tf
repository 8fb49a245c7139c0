# A monthly budget on the project's Google Cloud costs, when a billing account is named. Model
# providers bill separately; the budget ledger in the code caps what runs spend on them.

data "google_project" "this" {
  count = var.billing_account == null ? 0 : 1

  project_id = var.project_id
}

resource "google_billing_budget" "project" {
  count = var.billing_account == null ? 0 : 1

  billing_account = var.billing_account
  display_name    = "RaptorFlow ${var.project_id}"

  budget_filter {
    # Budgets name projects by number.
    projects = ["projects/${data.google_project.this[0].number}"]
  }

  amount {
    specified_amount {
      currency_code = "USD"
      units         = tostring(var.monthly_budget_usd)
    }
  }

  dynamic "threshold_rules" {
    for_each = [0.5, 0.9, 1.0]
    content {
      threshold_percent = threshold_rules.value
    }
  }
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  # The billing account's admins are mailed too; so is the alert address, if there is one.
  all_updates_rule {
    monitoring_notification_channels = local.notification_ids
    disable_default_iam_recipients   = false
  }

  depends_on = [google_project_service.enabled]
}
