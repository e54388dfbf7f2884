output "function_name" {
  description = "Name of the Lambda function."
  value       = module.completer.function_name
}

output "log_group_name" {
  description = "Where the function logs."
  value       = module.completer.log_group_name
}

output "dead_letter_queue_url" {
  description = "Events the function could not handle."
  value       = module.completer.dead_letter_queue_url
}
