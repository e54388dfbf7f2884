data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  bucket_arn = "arn:${local.partition}:s3:::${var.bucket_name}"
  log_group  = "/aws/lambda/${var.name}"
  use_sqs    = var.delivery == "sqs"

  # completer.secrets reads <NAME>_SECRET_ARN at start and sets NAME from Secrets Manager.
  secret_environment = { for name, arn in var.secret_arns : "${name}_SECRET_ARN" => arn }
  environment = merge(var.environment_variables, local.secret_environment, {
    COMPLETER_BACKEND = var.backend
    # Uploads refused for good (no metadata, object gone, bad content) are sent here.
    COMPLETER_DEAD_LETTER_QUEUE = aws_sqs_queue.dead_letter.url
  }, local.ledger_environment)
  kms_key_arns = compact(concat(var.secrets_kms_key_arns, [var.kms_key_arn]))
}

# --- Completion ledger (locals) ----------------------------------------------------------
locals {
  ledger_table       = coalesce(var.ledger_table_name, "${var.name}-ledger")
  ledger_environment = var.create_ledger ? { COMPLETER_LEDGER = "dynamodb://${local.ledger_table}" } : {}
}

# --- Identity ----------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = "${var.name}-role"
  description        = "activity-completer S3 function: reads its prefix, completes activities."
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "ReadUploads"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.bucket_arn}/${var.filter_prefix}*"]
  }

  # Without ListBucket a missing object answers 403 instead of 404 (deleted before read).
  statement {
    sid       = "ListUploadPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.filter_prefix}*"]
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  dynamic "statement" {
    for_each = local.use_sqs ? [1] : []
    content {
      sid       = "ConsumeEventQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [aws_sqs_queue.events[0].arn]
    }
  }

  # The function dead-letters refused uploads itself; Lambda's on-failure destination
  # (direct delivery) sends there with this role too.
  statement {
    sid       = "SendFailedEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  dynamic "statement" {
    for_each = var.create_ledger ? [1] : []
    content {
      sid       = "UseLedger"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.ledger[0].arn]
    }
  }

  dynamic "statement" {
    for_each = length(var.secret_arns) > 0 ? [1] : []
    content {
      sid       = "ReadOwnSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = values(var.secret_arns)
    }
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptWithOwnKeys"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = local.kms_key_arns
    }
  }

  # SendTask* has no resource type for callback tokens: scope with state_machine_task_resources.
  dynamic "statement" {
    for_each = var.backend == "stepfunctions" ? [1] : []
    content {
      sid       = "CompleteStepFunctionsTasks"
      actions   = ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]
      resources = var.state_machine_task_resources
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "${var.name}-policy"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

resource "aws_iam_role_policy_attachment" "xray" {
  count = var.tracing_mode == "Active" ? 1 : 0

  role       = aws_iam_role.this.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# --- Function ------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group
  retention_in_days = var.log_retention_in_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags

}

resource "aws_lambda_function" "this" {
  function_name                  = var.name
  description                    = "Completes waiting workflow activities from S3 uploads (activity-completer)."
  role                           = aws_iam_role.this.arn
  filename                       = var.package_path
  source_code_hash               = filebase64sha256(var.package_path)
  handler                        = "main.handler"
  runtime                        = var.runtime
  architectures                  = [var.architecture]
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrent_executions
  kms_key_arn                    = var.kms_key_arn
  tags                           = var.tags

  environment {
    variables = local.environment
  }

  tracing_config {
    mode = var.tracing_mode
  }

  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.this]

  #checkov:skip=CKV_AWS_116:Failed events go to the on-failure destination (direct) or the queue's redrive DLQ (sqs), both the dead_letter queue.
  #checkov:skip=CKV_AWS_117:It calls only public AWS APIs and the workflow engine; attach a VPC outside the module if your engine is private.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the user owns; the package's SHA-256 is pinned by source_code_hash.
}

# --- Failed events ---------------------------------------------------------------------------

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-dead-letter"
  message_retention_seconds = var.dead_letter_retention_seconds
  kms_master_key_id         = var.kms_key_arn
  sqs_managed_sse_enabled   = var.kms_key_arn == null ? true : null
  tags                      = var.tags
}

# --- Delivery through SQS (default) --------------------------------------------------------

resource "aws_sqs_queue" "events" {
  count = local.use_sqs ? 1 : 0

  name                       = "${var.name}-events"
  visibility_timeout_seconds = var.timeout * 6
  message_retention_seconds  = 1209600
  kms_master_key_id          = var.kms_key_arn
  sqs_managed_sse_enabled    = var.kms_key_arn == null ? true : null
  tags                       = var.tags

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  count = local.use_sqs ? 1 : 0

  queue_url = aws_sqs_queue.dead_letter.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events[0].arn]
  })
}

data "aws_iam_policy_document" "events_queue" {
  count = local.use_sqs ? 1 : 0

  statement {
    sid       = "BucketSendsEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events[0].arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [local.bucket_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  count = local.use_sqs ? 1 : 0

  queue_url = aws_sqs_queue.events[0].id
  policy    = data.aws_iam_policy_document.events_queue[0].json
}

resource "aws_lambda_event_source_mapping" "events" {
  count = local.use_sqs ? 1 : 0

  event_source_arn                   = aws_sqs_queue.events[0].arn
  function_name                      = aws_lambda_function.this.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  depends_on = [aws_iam_role_policy.this]
}

# --- Direct delivery -------------------------------------------------------------------------

resource "aws_lambda_permission" "bucket" {
  count = local.use_sqs ? 0 : 1

  statement_id   = "AllowInvokeFromBucket"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.this.function_name
  principal      = "s3.amazonaws.com"
  source_arn     = local.bucket_arn
  source_account = local.account_id
}

resource "aws_lambda_function_event_invoke_config" "this" {
  count = local.use_sqs ? 0 : 1

  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = var.maximum_retry_attempts
  maximum_event_age_in_seconds = var.maximum_event_age_in_seconds

  destination_config {
    on_failure {
      destination = aws_sqs_queue.dead_letter.arn
    }
  }
}

# --- The bucket's notification -----------------------------------------------------------------

resource "aws_s3_bucket_notification" "this" {
  bucket = var.bucket_name

  dynamic "queue" {
    for_each = local.use_sqs ? [1] : []
    content {
      id            = "${var.name}-events"
      queue_arn     = aws_sqs_queue.events[0].arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = var.filter_prefix == "" ? null : var.filter_prefix
      filter_suffix = var.filter_suffix == "" ? null : var.filter_suffix
    }
  }

  dynamic "lambda_function" {
    for_each = local.use_sqs ? [] : [1]
    content {
      id                  = var.name
      lambda_function_arn = aws_lambda_function.this.arn
      events              = ["s3:ObjectCreated:*"]
      filter_prefix       = var.filter_prefix == "" ? null : var.filter_prefix
      filter_suffix       = var.filter_suffix == "" ? null : var.filter_suffix
    }
  }

  depends_on = [aws_sqs_queue_policy.events, aws_lambda_permission.bucket]
}

# --- Completion ledger -----------------------------------------------------------------------
# What the function carried out (docs/ledger.md): aws-lambda-powertools' idempotency table
# layout, key `id`, TTL attribute `expiration` (epoch seconds), billed per request.

resource "aws_dynamodb_table" "ledger" {
  count = var.create_ledger ? 1 : 0

  name                        = local.ledger_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = var.ledger_deletion_protection
  tags                        = var.tags

  attribute {
    name = "id"
    type = "S"
  }

  ttl {
    attribute_name = "expiration"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}
