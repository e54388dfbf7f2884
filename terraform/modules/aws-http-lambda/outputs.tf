output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "function_url" {
  description = "The Function URL partners and links call (null without create_function_url)."
  value       = one(aws_lambda_function_url.this[*].function_url)
}

output "authorization_type" {
  description = "NONE (public: the function authenticates every request) or AWS_IAM (SigV4 callers only)."
  value       = one(aws_lambda_function_url.this[*].authorization_type)
}

output "role_arn" {
  description = "ARN of the function's execution role."
  value       = aws_iam_role.this.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the function."
  value       = aws_cloudwatch_log_group.this.name
}
