# Vertex AI Vector Search for the research evidence (common/search/vertex.py), the option for
# scale. Off by default: a deployed index keeps at least one replica running. Without it evidence
# is in Firestore vector search (common/search/firestore.py, the index in firestore.tf), shared by
# every function, and the phases need no Vertex AI role (iam.tf).

resource "google_vertex_ai_index" "evidence" {
  count = var.enable_vector_search ? 1 : 0

  display_name        = "raptorflow-evidence"
  description         = "Embeddings of research evidence, filtered by business and run."
  region              = var.region
  index_update_method = "STREAM_UPDATE" # upsert_datapoints as evidence arrives

  metadata {
    config {
      dimensions                  = var.vector_dimensions
      approximate_neighbors_count = 150
      # Unit-normalised dot product: cosine similarity, Vertex's recommended form of it.
      distance_measure_type = "DOT_PRODUCT_DISTANCE"
      feature_norm_type     = "UNIT_L2_NORM"
      shard_size            = "SHARD_SIZE_SMALL"

      algorithm_config {
        tree_ah_config {
          leaf_node_embedding_count    = 500
          leaf_nodes_to_search_percent = 7
        }
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_vertex_ai_index_endpoint" "evidence" {
  count = var.enable_vector_search ? 1 : 0

  display_name = "raptorflow-evidence"
  description  = "Serves the evidence index to the phase functions (IAM: roles/aiplatform.user)."
  region       = var.region
  # Public endpoint with IAM auth: the functions need no VPC connector to reach it.
  public_endpoint_enabled = true

  depends_on = [google_project_service.enabled]
}

resource "google_vertex_ai_index_endpoint_deployed_index" "evidence" {
  count = var.enable_vector_search ? 1 : 0

  index_endpoint    = google_vertex_ai_index_endpoint.evidence[0].id
  index             = google_vertex_ai_index.evidence[0].id
  deployed_index_id = "raptorflow_evidence"
  display_name      = "raptorflow-evidence"

  dedicated_resources {
    # The smallest machine a SHARD_SIZE_SMALL index may use.
    machine_spec {
      machine_type = "e2-standard-2"
    }
    min_replica_count = 1
    max_replica_count = var.vector_max_replicas
  }
}

locals {
  # Names read by common/platform/settings.py. Without Vertex AI Vector Search, evidence lives in
  # Firestore vector search (the default), shared by every function.
  vector_search_env = var.enable_vector_search ? {
    VECTOR_BACKEND             = "vertex"
    VERTEX_INDEX               = google_vertex_ai_index.evidence[0].id
    VERTEX_INDEX_ENDPOINT      = google_vertex_ai_index_endpoint.evidence[0].id
    VERTEX_DEPLOYED_INDEX_ID   = google_vertex_ai_index_endpoint_deployed_index.evidence[0].deployed_index_id
    VERTEX_MATCH_ENDPOINT      = google_vertex_ai_index_endpoint.evidence[0].public_endpoint_domain_name
    VERTEX_EMBEDDING_DIMENSION = tostring(var.vector_dimensions)
    EMBEDDING_BACKEND          = "vertex"
    } : {
    VECTOR_BACKEND = "firestore"
    # The 384-dimension local model, as the Firestore vector index expects (firestore.tf).
    EMBEDDING_BACKEND = "local"
  }
}
