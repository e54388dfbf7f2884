variable "region" {
  type        = string
  description = "AWS region of the bucket and the function."
  default     = "eu-west-1"
}

variable "name" {
  type        = string
  description = "Name of the Lambda function."
  default     = "activity-completer-s3"
}

variable "architecture" {
  type        = string
  description = "x86_64 or arm64; build the package to match (make package LAMBDA_ARCH=arm64)."
  default     = "x86_64"
}

variable "backend" {
  type        = string
  description = "COMPLETER_BACKEND: temporal or stepfunctions."
  default     = "temporal"
}

variable "temporal_address" {
  type        = string
  description = "TEMPORAL_ADDRESS, e.g. <namespace>.<account>.tmprl.cloud:7233 (ignored for stepfunctions)."
  default     = "localhost:7233"
}

variable "temporal_namespace" {
  type        = string
  description = "TEMPORAL_NAMESPACE."
  default     = "default"
}

variable "secret_arns" {
  type        = map(string)
  description = "Setting name => Secrets Manager secret ARN, e.g. { TEMPORAL_API_KEY = \"arn:aws:secretsmanager:...\" }."
  default     = {}
}

variable "bucket_name" {
  type        = string
  description = "Existing bucket whose uploads complete activities."
}

variable "filter_prefix" {
  type        = string
  description = "Key prefix that triggers the function."
  default     = "completions/"
}

variable "filter_suffix" {
  type        = string
  description = "Key suffix that triggers the function (empty: any)."
  default     = ""
}

variable "delivery" {
  type        = string
  description = "sqs (queue, redrive DLQ, partial batch failures) or direct (async invoke, on-failure queue)."
  default     = "sqs"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the approval flow's resources (HTTP function, notifier, topic, state machine)."
  default     = "activity-completer"
}

variable "link_secret_arn" {
  type        = string
  description = "Secrets Manager ARN of COMPLETER_LINK_SECRET (at least 32 random characters): the HTTP function checks links with it, the notifier makes them."
}

variable "http_secret_arns" {
  type        = map(string)
  description = "More secrets for the HTTP function, e.g. { COMPLETER_SIGNING_SECRETS = \"arn:aws:secretsmanager:...\" } so partners can also send signed JSON requests."
  default     = {}
}

variable "approver_email" {
  type        = string
  description = "E-mail address subscribed to the approvals topic (it must confirm the subscription); empty: subscribe yourself."
  default     = ""
}

variable "approval_ttl_seconds" {
  type        = number
  description = "How long approval links work, and how long the state machine waits for a click."
  default     = 259200
}
