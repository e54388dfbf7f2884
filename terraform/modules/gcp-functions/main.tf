locals {
  source_bucket = coalesce(var.source_bucket_name, "${var.project_id}-${var.name_prefix}-source")

  topic_id = var.create_topic ? google_pubsub_topic.this[0].id : var.topic_id
  dead_letter_topic_id = (
    var.create_dead_letter_topic ? one(google_pubsub_topic.dead_letter[*].id) : var.dead_letter_topic_id
  )

  common_environment = merge(var.environment_variables, {
    COMPLETER_BACKEND = var.backend
  }, local.ledger_environment)
  # Private: IAM guards the HTTP function, so unsigned JSON requests are allowed unless the
  # caller says otherwise; public: never (signing secrets then decide, links carry their own).
  http_environment = merge(
    { COMPLETER_ALLOW_UNSIGNED = var.http_public ? "false" : "true" },
    local.common_environment,
  )
  http_guards  = setintersection(keys(var.http_secrets), ["COMPLETER_SIGNING_SECRETS", "COMPLETER_LINK_SECRET"])
  http_ingress = var.http_public ? "ALLOW_ALL" : var.http_ingress_settings
  pubsub_environment = merge(
    local.common_environment,
    local.dead_letter_topic_id == null ? {} : { COMPLETER_DEAD_LETTER_TOPIC = local.dead_letter_topic_id },
  )
  gcs_environment = merge(
    local.pubsub_environment,
    var.gcs_inline_max_bytes == null ? {} : { COMPLETER_GCS_INLINE_MAX_BYTES = tostring(var.gcs_inline_max_bytes) },
  )

  # The dead-letter topic serves the Pub/Sub and the Cloud Storage functions.
  dead_letters_needed = var.create_pubsub_function || var.create_gcs_function
  gcs_bucket          = var.create_gcs_function ? (var.create_gcs_bucket ? one(google_storage_bucket.uploads[*].name) : var.gcs_bucket_name) : null

  # One accessor grant per (function, secret) so each identity reads only its own secrets.
  http_secret_grants = var.create_http_function ? {
    for name, ref in var.http_secrets : name => ref.secret
  } : {}
  pubsub_secret_grants = var.create_pubsub_function ? {
    for name, ref in var.pubsub_secrets : name => ref.secret
  } : {}
  gcs_secret_grants = var.create_gcs_function ? {
    for name, ref in var.gcs_secrets : name => ref.secret
  } : {}
}

# --- Completion ledger (locals) ----------------------------------------------------------
locals {
  ledger_collection  = coalesce(var.ledger_collection, "${var.name_prefix}-ledger")
  ledger_environment = var.create_ledger ? { COMPLETER_LEDGER = "firestore://${var.ledger_database}/${local.ledger_collection}" } : {}
  # Each function's identity may read and write the ledger's database, and no other.
  ledger_members = var.create_ledger ? merge(
    var.create_http_function ? { http = google_service_account.http[0].member } : {},
    var.create_pubsub_function ? { pubsub = google_service_account.pubsub[0].member } : {},
    var.create_gcs_function ? { gcs = google_service_account.gcs[0].member } : {},
  ) : {}
}

data "google_project" "this" {
  project_id = var.project_id
}

# --- Source archives -------------------------------------------------------------------

resource "google_storage_bucket" "source" {
  count = var.create_source_bucket ? 1 : 0

  project                     = var.project_id
  name                        = local.source_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  versioning {
    enabled = true
  }

  #checkov:skip=CKV_GCP_62:Access logs of a bucket holding only build inputs add cost without value; Cloud Audit Logs record access.
}

resource "google_storage_bucket_object" "http" {
  count = var.create_http_function ? 1 : 0

  # The content hash in the name makes a new archive redeploy the function.
  name   = "gcp-http-${filemd5(var.http_source_archive)}.zip"
  bucket = var.create_source_bucket ? google_storage_bucket.source[0].name : local.source_bucket
  source = var.http_source_archive
}

resource "google_storage_bucket_object" "pubsub" {
  count = var.create_pubsub_function ? 1 : 0

  name   = "gcp-pubsub-${filemd5(var.pubsub_source_archive)}.zip"
  bucket = var.create_source_bucket ? google_storage_bucket.source[0].name : local.source_bucket
  source = var.pubsub_source_archive
}

# --- Identities --------------------------------------------------------------------------

resource "google_service_account" "http" {
  count = var.create_http_function ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-http"
  display_name = "activity-completer HTTP function"
  description  = "Runs the HTTP completion function; reads only its own secrets."
}

resource "google_service_account" "pubsub" {
  count = var.create_pubsub_function ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-pubsub"
  display_name = "activity-completer Pub/Sub function"
  description  = "Runs the Pub/Sub completion function; publishes only to the dead-letter topic."
}

resource "google_service_account" "pubsub_trigger" {
  count = var.create_pubsub_function ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-trigger"
  display_name = "activity-completer Eventarc trigger"
  description  = "Identity Eventarc pushes Pub/Sub messages with; may invoke only the Pub/Sub function."
}

resource "google_secret_manager_secret_iam_member" "http" {
  for_each = local.http_secret_grants

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.http[0].member
}

resource "google_secret_manager_secret_iam_member" "pubsub" {
  for_each = local.pubsub_secret_grants

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.pubsub[0].member
}

# --- Topics ------------------------------------------------------------------------------

resource "google_pubsub_topic" "this" {
  count = var.create_pubsub_function && var.create_topic ? 1 : 0

  project                    = var.project_id
  name                       = coalesce(var.topic_id, "${var.name_prefix}-completions")
  labels                     = var.labels
  message_retention_duration = var.message_retention_duration

  #checkov:skip=CKV_GCP_83:Google-managed encryption; pass a CMEK through your own topic (create_topic = false) when policy requires one.
}

resource "google_pubsub_topic" "dead_letter" {
  count = local.dead_letters_needed && var.create_dead_letter_topic ? 1 : 0

  project                    = var.project_id
  name                       = coalesce(var.dead_letter_topic_id, "${var.name_prefix}-dead-letter")
  labels                     = var.labels
  message_retention_duration = var.message_retention_duration

  #checkov:skip=CKV_GCP_83:Google-managed encryption; bring your own CMEK topic (create_dead_letter_topic = false) when policy requires one.
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count = var.create_pubsub_function && local.dead_letter_topic_id != null ? 1 : 0

  project = var.project_id
  topic   = local.dead_letter_topic_id
  role    = "roles/pubsub.publisher"
  member  = google_service_account.pubsub[0].member
}

resource "google_pubsub_topic_iam_member" "dead_letter_agent" {
  count = var.create_pubsub_function && var.grant_pubsub_agent_dead_letter && local.dead_letter_topic_id != null ? 1 : 0

  project = var.project_id
  topic   = local.dead_letter_topic_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# --- HTTP function -------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "http" {
  count = var.create_http_function ? 1 : 0

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-http"
  description = "Completes waiting workflow activities from HTTP requests (activity-completer)."
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = "complete"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket_object.http[0].bucket
        object = google_storage_bucket_object.http[0].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.http[0].email
    ingress_settings                 = local.http_ingress
    available_memory                 = var.http_memory
    available_cpu                    = var.http_cpu
    timeout_seconds                  = var.http_timeout_seconds
    max_instance_request_concurrency = var.http_concurrency
    min_instance_count               = var.http_min_instances
    max_instance_count               = var.http_max_instances
    all_traffic_on_latest_revision   = true
    environment_variables            = local.http_environment

    dynamic "secret_environment_variables" {
      for_each = var.http_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  lifecycle {
    precondition {
      condition     = !var.http_public || length(local.http_guards) > 0
      error_message = "http_public = true needs COMPLETER_SIGNING_SECRETS or COMPLETER_LINK_SECRET in http_secrets: a public function without them would let anyone complete activities."
    }
    precondition {
      condition     = !var.http_public || lower(lookup(var.environment_variables, "COMPLETER_ALLOW_UNSIGNED", "false")) != "true"
      error_message = "http_public = true cannot be combined with COMPLETER_ALLOW_UNSIGNED=true: nothing but IAM would guard unsigned requests, and a public function has no IAM check."
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.http]
}

# Gen 2 functions are Cloud Run services: invoking one takes roles/run.invoker on it.
resource "google_cloud_run_service_iam_member" "http_invoker" {
  for_each = var.create_http_function ? toset(var.http_invoker_members) : toset([])

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.http[0].name # the service is named like the function
  role     = "roles/run.invoker"
  member   = each.value
}

# Public mode: the function authenticates every request itself (signatures, sealed links).
resource "google_cloud_run_service_iam_member" "http_public" {
  count = var.create_http_function && var.http_public ? 1 : 0

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.http[0].name
  role     = "roles/run.invoker"
  member   = "allUsers"

  lifecycle {
    precondition {
      condition     = length(local.http_guards) > 0
      error_message = "http_public = true needs COMPLETER_SIGNING_SECRETS or COMPLETER_LINK_SECRET in http_secrets."
    }
  }

  #checkov:skip=CKV_GCP_102:Public on purpose (http_public = true): the preconditions require signing secrets or the link secret, which the function checks on every request.
}

# --- Pub/Sub function ------------------------------------------------------------------------

resource "google_cloudfunctions2_function" "pubsub" {
  count = var.create_pubsub_function ? 1 : 0

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-pubsub"
  description = "Completes waiting workflow activities from Pub/Sub messages (activity-completer)."
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = "complete"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket_object.pubsub[0].bucket
        object = google_storage_bucket_object.pubsub[0].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.pubsub[0].email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    available_memory                 = var.pubsub_memory
    available_cpu                    = var.pubsub_cpu
    timeout_seconds                  = var.pubsub_timeout_seconds
    max_instance_request_concurrency = var.pubsub_concurrency
    min_instance_count               = var.pubsub_min_instances
    max_instance_count               = var.pubsub_max_instances
    all_traffic_on_latest_revision   = true
    environment_variables            = local.pubsub_environment

    dynamic "secret_environment_variables" {
      for_each = var.pubsub_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = local.topic_id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.pubsub_trigger[0].email
  }

  depends_on = [
    google_secret_manager_secret_iam_member.pubsub,
    google_pubsub_topic_iam_member.dead_letter_publisher,
  ]
}

resource "google_cloud_run_service_iam_member" "pubsub_trigger_invoker" {
  count = var.create_pubsub_function ? 1 : 0

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.pubsub[0].name # the service is named like the function
  role     = "roles/run.invoker"
  member   = google_service_account.pubsub_trigger[0].member
}

# --- Completion ledger -----------------------------------------------------------------------
# The functions keep what they carried out in a Firestore collection (docs/ledger.md). The
# database must exist (Firestore native mode); a collection needs no creation, only its TTL
# policy, which deletes a record once its `expiration` timestamp has passed.

resource "google_firestore_field" "ledger_expiration" {
  count = var.create_ledger ? 1 : 0

  project    = var.project_id
  database   = var.ledger_database
  collection = local.ledger_collection
  field      = "expiration"

  ttl_config {}

  # The ledger reads records by ID only: no single-field index on the expiry (cheaper writes).
  index_config {}
}

resource "google_project_iam_member" "ledger" {
  for_each = local.ledger_members

  project = var.project_id
  role    = "roles/datastore.user"
  member  = each.value

  condition {
    title       = "${var.name_prefix}-ledger-only"
    description = "Only the completion ledger's Firestore database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.ledger_database}\""
  }
}

# --- Cloud Storage function ------------------------------------------------------------------

resource "google_storage_bucket" "uploads" {
  count = var.create_gcs_function && var.create_gcs_bucket ? 1 : 0

  project                     = var.project_id
  name                        = var.gcs_bucket_name
  location                    = coalesce(var.gcs_bucket_location, var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  # Versions keep an upload readable at its event's generation when the name is reused.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.gcs_noncurrent_version_days
    }
    action {
      type = "Delete"
    }
  }

  #checkov:skip=CKV_GCP_62:Access logs of an upload drop add cost; Cloud Audit Logs (data access) record reads and writes when enabled.
}

resource "google_storage_bucket_object" "gcs" {
  count = var.create_gcs_function ? 1 : 0

  name   = "gcp-gcs-${filemd5(var.gcs_source_archive)}.zip"
  bucket = var.create_source_bucket ? google_storage_bucket.source[0].name : local.source_bucket
  source = var.gcs_source_archive
}

resource "google_service_account" "gcs" {
  count = var.create_gcs_function ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-gcs"
  display_name = "activity-completer Cloud Storage function"
  description  = "Runs the Cloud Storage function and receives its Eventarc events; reads only the upload bucket."

  lifecycle {
    precondition {
      condition     = var.gcs_bucket_name != null && var.gcs_source_archive != null
      error_message = "create_gcs_function needs gcs_bucket_name (the upload bucket) and gcs_source_archive (dist/gcp-gcs.zip)."
    }
  }
}

resource "google_storage_bucket_iam_member" "gcs_reader" {
  count = var.create_gcs_function ? 1 : 0

  bucket = local.gcs_bucket
  role   = "roles/storage.objectViewer"
  member = google_service_account.gcs[0].member
}

# An Eventarc trigger's identity must hold eventReceiver in the project (Eventarc docs).
resource "google_project_iam_member" "gcs_event_receiver" {
  count = var.create_gcs_function ? 1 : 0

  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.gcs[0].member
}

resource "google_secret_manager_secret_iam_member" "gcs" {
  for_each = local.gcs_secret_grants

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.gcs[0].member
}

resource "google_pubsub_topic_iam_member" "gcs_dead_letter_publisher" {
  count = var.create_gcs_function && local.dead_letter_topic_id != null ? 1 : 0

  project = var.project_id
  topic   = local.dead_letter_topic_id
  role    = "roles/pubsub.publisher"
  member  = google_service_account.gcs[0].member
}

# Cloud Storage publishes its events to Pub/Sub for Eventarc as the project's service agent.
data "google_storage_project_service_account" "this" {
  count = var.create_gcs_function && var.grant_gcs_agent_publisher ? 1 : 0

  project = var.project_id
}

resource "google_project_iam_member" "gcs_agent_publisher" {
  count = var.create_gcs_function && var.grant_gcs_agent_publisher ? 1 : 0

  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.this[0].member
}

resource "google_cloudfunctions2_function" "gcs" {
  count = var.create_gcs_function ? 1 : 0

  project     = var.project_id
  location    = var.region
  name        = "${var.name_prefix}-gcs"
  description = "Completes waiting workflow activities from Cloud Storage uploads (activity-completer)."
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = "complete"
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket_object.gcs[0].bucket
        object = google_storage_bucket_object.gcs[0].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.gcs[0].email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    available_memory                 = var.gcs_memory
    available_cpu                    = var.gcs_cpu
    timeout_seconds                  = var.gcs_timeout_seconds
    max_instance_request_concurrency = var.gcs_concurrency
    min_instance_count               = var.gcs_min_instances
    max_instance_count               = var.gcs_max_instances
    all_traffic_on_latest_revision   = true
    environment_variables            = local.gcs_environment

    dynamic "secret_environment_variables" {
      for_each = var.gcs_secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value.secret
        version    = secret_environment_variables.value.version
      }
    }
  }

  event_trigger {
    # A Cloud Storage trigger lives in the bucket's location (a region, or us/eu/asia).
    trigger_region        = lower(coalesce(var.gcs_trigger_region, var.gcs_bucket_location, var.region))
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.gcs[0].email

    event_filters {
      attribute = "bucket"
      value     = local.gcs_bucket
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.gcs,
    google_storage_bucket_iam_member.gcs_reader,
    google_project_iam_member.gcs_event_receiver,
    google_project_iam_member.gcs_agent_publisher,
    google_pubsub_topic_iam_member.gcs_dead_letter_publisher,
  ]
}

resource "google_cloud_run_service_iam_member" "gcs_trigger_invoker" {
  count = var.create_gcs_function ? 1 : 0

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.gcs[0].name # the service is named like the function
  role     = "roles/run.invoker"
  member   = google_service_account.gcs[0].member
}
