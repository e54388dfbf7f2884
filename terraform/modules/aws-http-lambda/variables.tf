variable "name" {
  type        = string
  description = "Name of the Lambda function; also prefixes its role and names its log group."
  default     = "activity-completer-http"

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
  description = "Path to the HTTP Lambda package built by `make package` (dist/http-lambda.zip)."
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
  description = "Lambda timeout in seconds: longer than COMPLETER_RPC_TIMEOUT_SECONDS, shorter than a caller's patience."
  default     = 30
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
  description = "Plain (non-secret) settings, e.g. TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, COMPLETER_SIGNING_SCOPES, COMPLETER_MAX_BODY_BYTES. Secrets go in secret_arns."
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
  description = "Setting name => Secrets Manager secret ARN, e.g. { COMPLETER_SIGNING_SECRETS = \"arn:aws:secretsmanager:...\", COMPLETER_LINK_SECRET = \"arn:...\", TEMPORAL_API_KEY = \"arn:...\" }. The function gets <NAME>_SECRET_ARN and reads the value at start (completer.secrets)."
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
  description = "Customer managed KMS key for the log group and the environment; null uses AWS managed encryption."
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

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be PassThrough or Active."
  }
}

variable "create_function_url" {
  type        = bool
  description = "Give the function a Lambda Function URL (false: put API Gateway HTTP API or a load balancer in front yourself)."
  default     = true
}

variable "public" {
  type        = bool
  description = "true: the Function URL takes requests from anyone (authorization NONE), for partners' webhooks and people's approval links; allowed only with COMPLETER_SIGNING_SECRETS or COMPLETER_LINK_SECRET in secret_arns. false (default): only SigV4-signed callers with IAM permission (AWS_IAM)."
  default     = false
}

variable "invoker_principals" {
  type        = list(string)
  description = "Private URL only: principals (account IDs or IAM ARNs) granted lambda:InvokeFunctionUrl through the function's policy; principals of this account can be granted by their own IAM policy instead."
  default     = []

  validation {
    condition     = !contains(var.invoker_principals, "*")
    error_message = "\"*\" is not an invoker: set public = true (with signing secrets or the link secret) to open the URL."
  }
}

variable "state_machine_task_resources" {
  type        = list(string)
  description = "Resources for states:SendTaskSuccess/Failure/Heartbeat when backend is stepfunctions. Callback (.waitForTaskToken) tokens cannot be scoped by IAM and need [\"*\"]; activity tokens can be scoped to activity ARNs."
  default     = ["*"]
}

variable "ledger_table_arn" {
  type        = string
  description = "ARN of the completion ledger's DynamoDB table (e.g. the aws-s3-lambda module's ledger_table_arn output): the function gets COMPLETER_LEDGER=dynamodb://<table> and may read and write that table only. null: an in-process ledger per instance (docs/ledger.md)."
  default     = null

  validation {
    condition     = var.ledger_table_arn == null || can(regex("^arn:[^:]+:dynamodb:[^:]*:[0-9]{12}:table/[A-Za-z0-9_.-]{3,255}$", var.ledger_table_arn))
    error_message = "ledger_table_arn must be a DynamoDB table ARN, arn:<partition>:dynamodb:<region>:<account>:table/<name>."
  }
}
