output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.this.name
}

output "events_queue_url" {
  description = "SQS queue S3 events go through (sqs delivery), else null."
  value       = one(aws_sqs_queue.events[*].url)
}

output "dead_letter_queue_url" {
  description = "Queue that keeps events the function could not handle."
  value       = aws_sqs_queue.dead_letter.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dead_letter.arn
}

output "ledger_table_arn" {
  description = "ARN of the ledger's DynamoDB table (null without a ledger)."
  value       = one(aws_dynamodb_table.ledger[*].arn)
}

output "ledger" {
  description = "The COMPLETER_LEDGER the function uses (null without a ledger)."
  value       = lookup(local.ledger_environment, "COMPLETER_LEDGER", null)
}
