output "http_function_uri" {
  description = "URL of the HTTP function (callers send an ID token)."
  value       = module.completer.http_function_uri
}

output "topic_id" {
  description = "Publish completion messages here."
  value       = module.completer.topic_id
}

output "dead_letter_topic_id" {
  description = "Rejected messages land here."
  value       = module.completer.dead_letter_topic_id
}

output "eventarc_trigger" {
  description = "The Pub/Sub function's Eventarc trigger."
  value       = module.completer.eventarc_trigger
}

output "gcs_bucket" {
  description = "Uploads here complete activities (null without gcs_uploads_bucket)."
  value       = module.completer.gcs_bucket
}
