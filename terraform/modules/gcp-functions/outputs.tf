output "http_function_name" {
  description = "Name of the HTTP function (null when not created)."
  value       = one(google_cloudfunctions2_function.http[*].name)
}

output "http_function_uri" {
  description = "URL of the HTTP function; callers need roles/run.invoker and an ID token."
  value       = one(google_cloudfunctions2_function.http[*].service_config[0].uri)
}

output "http_service_account_email" {
  description = "Identity the HTTP function runs as."
  value       = one(google_service_account.http[*].email)
}

output "pubsub_function_name" {
  description = "Name of the Pub/Sub function (null when not created)."
  value       = one(google_cloudfunctions2_function.pubsub[*].name)
}

output "pubsub_service_account_email" {
  description = "Identity the Pub/Sub function runs as."
  value       = one(google_service_account.pubsub[*].email)
}

output "pubsub_trigger_service_account_email" {
  description = "Identity Eventarc pushes messages with."
  value       = one(google_service_account.pubsub_trigger[*].email)
}

output "eventarc_trigger" {
  description = "Eventarc trigger of the Pub/Sub function (its subscription is managed by Eventarc)."
  value       = one(google_cloudfunctions2_function.pubsub[*].event_trigger[0].trigger)
}

output "topic_id" {
  description = "Topic to publish completion messages to (projects/<p>/topics/<t>)."
  value       = var.create_pubsub_function ? local.topic_id : null
}

output "dead_letter_topic_id" {
  description = "Topic rejected messages and refused uploads are published to (COMPLETER_DEAD_LETTER_TOPIC)."
  value       = local.dead_letters_needed ? local.dead_letter_topic_id : null
}

output "source_bucket" {
  description = "Bucket holding the uploaded source archives."
  value       = local.source_bucket
}

output "ledger" {
  description = "The COMPLETER_LEDGER the functions use (null without a ledger)."
  value       = lookup(local.ledger_environment, "COMPLETER_LEDGER", null)
}

output "gcs_function_name" {
  description = "Name of the Cloud Storage function (null when not created)."
  value       = one(google_cloudfunctions2_function.gcs[*].name)
}

output "gcs_service_account_email" {
  description = "Identity the Cloud Storage function runs and receives events as."
  value       = one(google_service_account.gcs[*].email)
}

output "gcs_bucket" {
  description = "Bucket whose finalized objects complete activities (null when the function is off)."
  value       = local.gcs_bucket
}

output "gcs_eventarc_trigger" {
  description = "Eventarc trigger of the Cloud Storage function."
  value       = one(google_cloudfunctions2_function.gcs[*].event_trigger[0].trigger)
}
