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

output "http_function_url" {
  description = "The public Function URL: approval links point here; partners POST signed JSON here."
  value       = module.http.function_url
}

output "approval_state_machine_arn" {
  description = "Start an execution (its input is shown in the approval e-mail) to ask for an approval."
  value       = aws_sfn_state_machine.approval.arn
}

output "approvals_topic_arn" {
  description = "SNS topic the approval links are published to; subscribe approvers to it."
  value       = aws_sns_topic.approvals.arn
}
