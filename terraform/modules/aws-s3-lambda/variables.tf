variable "name" {
  type        = string
  description = "Name of the Lambda function; also prefixes its role, queues and log group."
  default     = "activity-completer-s3"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,56}$", var.name))
    error_message = "name must be 1 to 56 letters, digits, hyphens or underscores."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags put on every resource."
  default     = {}
}

variable "package_path" {
  type        = string
  description = "Path to the Lambda package built by `make package` (dist/aws-s3.zip)."
}

variable "architecture" {
  type        = string
  description = "Lambda architecture; must match the package (make package LAMBDA_ARCH=arm64)."
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "runtime" {
  type        = string
  description = "Lambda runtime the package was built for (packaging/build.py targets python3.12)."
  default     = "python3.12"
}

variable "memory_size" {
  type        = number
  description = "Lambda memory in MB."
  default     = 512
}

variable "timeout" {
  type        = number
  description = "Lambda timeout in seconds; the SQS visibility timeout is six times this."
  default     = 60
}

variable "reserved_concurrent_executions" {
  type        = number
  description = "Concurrency reserved for (and capping) the function, e.g. 10; -1 (default) leaves it unreserved, since new accounts cannot reserve below their 10-execution minimum."
  default     = -1
}

variable "backend" {
  type        = string
  description = "COMPLETER_BACKEND: temporal (needs a package built with temporal) or stepfunctions."
  default     = "temporal"

  validation {
    condition     = contains(["temporal", "cadence", "stepfunctions"], var.backend)
    error_message = "backend must be temporal, cadence or stepfunctions."
  }
}

variable "environment_variables" {
  type        = map(string)
  description = "Plain (non-secret) settings, e.g. TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, COMPLETER_S3_INLINE_MAX_BYTES. Secrets go in secret_arns."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment_variables) : can(regex("^(COMPLETER_|TEMPORAL_|CADENCE_|AWS_ENDPOINT_URL)[A-Z0-9_]*$", k))])
    error_message = "Only completer settings (COMPLETER_*, TEMPORAL_*, CADENCE_*, AWS_ENDPOINT_URL*) can be set."
  }

  validation {
    condition     = length(setintersection(keys(var.environment_variables), ["TEMPORAL_API_KEY", "COMPLETER_SIGNING_SECRETS", "COMPLETER_LINK_SECRET", "TEMPORAL_TLS_CLIENT_KEY_DATA", "TEMPORAL_CODEC_AUTH"])) == 0
    error_message = "Secrets must come from Secrets Manager (secret_arns), never plain environment variables."
  }
}

variable "secret_arns" {
  type        = map(string)
  description = "Setting name => Secrets Manager secret ARN, e.g. { TEMPORAL_API_KEY = \"arn:aws:secretsmanager:...\" }. The function gets <NAME>_SECRET_ARN and reads the value at start (completer.secrets)."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.secret_arns) : can(regex("^(COMPLETER_|TEMPORAL_|CADENCE_)[A-Z0-9_]+$", k))])
    error_message = "Secret names must be completer settings (COMPLETER_*, TEMPORAL_*, CADENCE_*)."
  }
}

variable "secrets_kms_key_arns" {
  type        = list(string)
  description = "Customer managed KMS keys the secrets are encrypted with (kms:Decrypt is granted on them); empty for the AWS managed key."
  default     = []
}

variable "kms_key_arn" {
  type        = string
  description = "Customer managed KMS key for the log group, the environment and the queues; null uses AWS managed encryption."
  default     = null
}

variable "log_retention_in_days" {
  type        = number
  description = "Retention of the function's CloudWatch log group."
  default     = 365
}

variable "tracing_mode" {
  type        = string
  description = "X-Ray tracing mode: PassThrough or Active."
  default     = "PassThrough"
}

variable "bucket_name" {
  type        = string
  description = "The existing bucket whose uploads complete activities. The module owns its notification configuration (S3 allows one per bucket)."
}

variable "filter_prefix" {
  type        = string
  description = "Only objects under this key prefix (e.g. completions/) trigger the function; also the prefix it may read."
  default     = ""
}

variable "filter_suffix" {
  type        = string
  description = "Only objects whose key ends with this (e.g. .json) trigger the function."
  default     = ""
}

variable "delivery" {
  type        = string
  description = "How S3 events reach the function: sqs (queue + redrive DLQ + ReportBatchItemFailures) or direct (async invoke with retries and an on-failure queue)."
  default     = "sqs"

  validation {
    condition     = contains(["sqs", "direct"], var.delivery)
    error_message = "delivery must be sqs or direct."
  }
}

variable "batch_size" {
  type        = number
  description = "SQS delivery: messages per invocation."
  default     = 10
}

variable "maximum_batching_window_in_seconds" {
  type        = number
  description = "SQS delivery: how long to gather a batch."
  default     = 1
}

variable "max_receive_count" {
  type        = number
  description = "SQS delivery: receives before a message moves to the dead-letter queue."
  default     = 5
}

variable "maximum_retry_attempts" {
  type        = number
  description = "Direct delivery: Lambda retries of a failed asynchronous invocation (0 to 2)."
  default     = 2
}

variable "maximum_event_age_in_seconds" {
  type        = number
  description = "Direct delivery: age after which an event goes to the on-failure queue (60 to 21600)."
  default     = 21600
}

variable "dead_letter_retention_seconds" {
  type        = number
  description = "How long the dead-letter queue keeps failed events."
  default     = 1209600
}

variable "state_machine_task_resources" {
  type        = list(string)
  description = "Resources for states:SendTaskSuccess/Failure/Heartbeat when backend is stepfunctions. Callback (.waitForTaskToken) tokens cannot be scoped by IAM and need [\"*\"]; activity tokens can be scoped to activity ARNs."
  default     = ["*"]
}

# --- Completion ledger -----------------------------------------------------------------

variable "create_ledger" {
  type        = bool
  description = "Keep a completion ledger in DynamoDB (COMPLETER_LEDGER): repeated deliveries get the first answer on every instance. Creates an on-demand table and lets the function read and write its items."
  default     = false
}

variable "ledger_table_name" {
  type        = string
  description = "Name of the ledger's DynamoDB table. Default: <name>-ledger."
  default     = null
}

variable "ledger_deletion_protection" {
  type        = bool
  description = "Protect the ledger table from deletion (turn off before destroying the module)."
  default     = true
}
