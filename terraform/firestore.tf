locals {
  # Composite indexes the code's queries need (collection group => ordered fields). The key
  # only names the resource.
  firestore_indexes = {
    # The API's usage report: one business's usage records over a range of days (decision 007).
    usage_by_business_day = {
      collection = "usage"
      fields     = [["business_id", "ASCENDING"], ["day", "ASCENDING"]]
    }
    # The router's recent outcomes: the newest usage records of every shard at once
    # (common/analysis/outcomes.py; `created_at` itself has no index, below).
    usage_by_shard_created = {
      collection = "usage"
      fields     = [["shard", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
  }

  # Fields that keep none of their automatic single-field indexes (collection group => fields):
  # - a time that only grows, in collections written for every model call, every progress step
  #   or every budget block: Firestore sustains 500 writes a second to a collection whose
  #   documents hold such a value in an indexed field (docs: "Sharded timestamps");
  # - what a phase produced (its output, sub-tasks, parts and events' data, the run's phase
  #   summaries and input): maps and arrays no query reads, about a third of the index entries
  #   a run writes (each one work on every write, and storage).
  # No query filters or orders by one of them alone: the composite indexes above serve the ones
  # that use them (a composite index does not depend on the field's single-field indexes).
  # tests/integration/test_run_footprint.py holds every time a run writes to this list and counts
  # the index entries a run writes; tests/terraform/test_plan.py holds the plan to it.
  firestore_unindexed = merge([
    for collection, fields in jsondecode(file("${path.module}/firestore_unindexed.json")) : {
      for field in fields : "${collection}.${field}" => { collection = collection, field = field }
    }
  ]...)

  # Documents Firestore deletes on its own once the timestamp field has passed
  # (collection group => field). No code writes reservations since the budget's escrow blocks
  # (decision 006): TTL purges an older deployment's at their `purge_at`.
  firestore_ttl_fields = {
    reservations = "purge_at"
  }
}

resource "google_firestore_database" "main" {
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = local.protected ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # By default `terraform destroy` leaves the database and its data in place (a destroy is
  # never the way to lose every run and usage record); a later apply into the same project
  # imports it first (docs/deploy.md). DELETE is for scratch projects.
  deletion_policy = var.firestore_deletion_policy

  depends_on = [google_project_service.enabled]
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_indexes

  database   = google_firestore_database.main.name
  collection = each.value.collection

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }

  # Added to a deployment with data, an index is built over every document of its collection
  # first, which the default 20 minutes may not cover (docs/deploy.md, "Upgrading").
  timeouts {
    create = "60m"
  }
}

# Until the offline checker validated dynamic blocks, each field count had its own block.
moved {
  from = google_firestore_index.two_fields
  to   = google_firestore_index.composite
}

# Research evidence: documents of `evidence` hold the business they belong to and an `embedding` of
# 384 dimensions (all-MiniLM-L6-v2, the local model; functions get EMBEDDING_BACKEND=local unless
# Vertex Vector Search is on). A nearest-neighbour query pre-filtered by equality on `business_id`
# needs one composite index: the filter field first, the vector field last. Flat is the only kind
# of vector index Firestore offers. Firestore stores it with `__name__` before the vector field
# (in the direction of the last ordered field); the provider ignores only a trailing `__name__`
# it was not given, and any other difference in `fields` replaces the index, during which
# find_nearest fails. So the index is declared as Firestore stores it, and a re-plan is empty.
resource "google_firestore_index" "evidence_vectors" {
  database   = google_firestore_database.main.name
  collection = "evidence"

  fields {
    field_path = "business_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "__name__"
    order      = "ASCENDING"
  }
  fields {
    field_path = "embedding"
    vector_config {
      dimension = 384
      flat {}
    }
  }
}

# An empty index_config block removes every single-field index of the field; Firestore reads it
# back as an empty block, so a re-plan is empty. The provider retries the 409 ("underlying data
# changed") that creating several fields at once met (hashicorp/terraform-provider-google issue
# 16329, fixed by GoogleCloudPlatform/magic-modules PR 9329 in 2023, long before versions.tf's
# floor). A field cannot be deleted: on destroy the provider clears its configuration instead.
resource "google_firestore_field" "unindexed" {
  for_each = local.firestore_unindexed

  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}

  # An index goes only once no deployed code needs it: the code before the usage shards ordered
  # every usage record by `created_at`, and would fail while the new code is not yet deployed.
  depends_on = [google_cloudfunctions2_function.function]
}

resource "google_firestore_field" "ttl" {
  for_each = local.firestore_ttl_fields

  database   = google_firestore_database.main.name
  collection = each.key
  field      = each.value

  # No index_config block: the field keeps its automatic single-field indexes.
  ttl_config {}
}

# Client access (Firebase Auth users) goes through these rules; servers use IAM and bypass them.
resource "google_firebaserules_ruleset" "firestore" {
  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/../firestore.rules")
    }
  }

  # A changed file is a new ruleset; release it before the old one is deleted.
  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_firestore_database.main]
}

resource "google_firebaserules_release" "firestore" {
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"
}

# The API's run history (GET /v1/businesses/{id}/runs, common/runs/history.py): one business's
# runs newest first, optionally of one status, over a range of `created_at`. The query also
# orders by the document id, descending, which Firestore adds to each index itself (`__name__`
# takes the last field's direction).
resource "google_firestore_index" "runs_by_business_created" {
  database   = google_firestore_database.main.name
  collection = "runs"

  fields {
    field_path = "business_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "runs_by_business_status_created" {
  database   = google_firestore_database.main.name
  collection = "runs"

  fields {
    field_path = "business_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "status"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# The API's idempotency keys (common/backend/idempotency.py) hold for 24 hours: Firestore
# deletes each once its `expires_at` has passed (the code treats an expired key as unused
# until then). A key is read by its id, never queried: its expiry, a time that only grows with
# every run started, keeps no index (as the fields of `firestore_unindexed`; TTL needs none).
resource "google_firestore_field" "idempotency_keys_ttl" {
  database   = google_firestore_database.main.name
  collection = "idempotency_keys"
  field      = "expires_at"

  ttl_config {}
  index_config {}
}
