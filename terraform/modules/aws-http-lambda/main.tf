data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  log_group  = "/aws/lambda/${var.name}"

  # What guards a public URL: signatures (JSON requests) or the link secret (links, callbacks).
  guards = setintersection(keys(var.secret_arns), ["COMPLETER_SIGNING_SECRETS", "COMPLETER_LINK_SECRET"])

  # completer.secrets reads <NAME>_SECRET_ARN at start and sets NAME from Secrets Manager.
  secret_environment = { for name, arn in var.secret_arns : "${name}_SECRET_ARN" => arn }
  # Private (AWS_IAM): IAM guards the URL, so unsigned JSON requests are allowed unless the
  # caller says otherwise; public (NONE): never (signing secrets then decide).
  # The completion ledger shared with the other functions: replays, webhook-ids and the
  # approval pages' decisions across instances (docs/ledger.md).
  ledger_environment = var.ledger_table_arn == null ? {} : {
    COMPLETER_LEDGER = "dynamodb://${element(split("/", var.ledger_table_arn), 1)}"
  }
  environment = merge(
    { COMPLETER_ALLOW_UNSIGNED = var.public ? "false" : "true" },
    var.environment_variables,
    local.secret_environment,
    local.ledger_environment,
    { COMPLETER_BACKEND = var.backend },
  )
  kms_key_arns = compact(concat(var.secrets_kms_key_arns, [var.kms_key_arn]))
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
  description        = "activity-completer HTTP function: completes activities, reads its own secrets."
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
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
      actions   = ["kms:Decrypt"]
      resources = local.kms_key_arns
    }
  }

  dynamic "statement" {
    for_each = var.ledger_table_arn == null ? [] : [1]
    content {
      sid       = "UseLedger"
      actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
      resources = [var.ledger_table_arn]
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
  description                    = "Completes waiting workflow activities from HTTP requests and links (activity-completer)."
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

  #checkov:skip=CKV_AWS_116:Invoked synchronously through its URL: the caller gets every answer, so there is no event to dead-letter.
  #checkov:skip=CKV_AWS_117:It calls only public AWS APIs and the workflow engine; attach a VPC outside the module if your engine is private.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the user owns; the package's SHA-256 is pinned by source_code_hash.
}

# --- Function URL --------------------------------------------------------------------------

resource "aws_lambda_function_url" "this" {
  count = var.create_function_url ? 1 : 0

  function_name      = aws_lambda_function.this.function_name
  authorization_type = var.public ? "NONE" : "AWS_IAM"
  invoke_mode        = "BUFFERED"

  lifecycle {
    precondition {
      condition     = !var.public || length(local.guards) > 0
      error_message = "public = true needs COMPLETER_SIGNING_SECRETS or COMPLETER_LINK_SECRET in secret_arns: a public URL without them would let anyone complete activities."
    }
    precondition {
      condition     = !var.public || lower(lookup(var.environment_variables, "COMPLETER_ALLOW_UNSIGNED", "false")) != "true"
      error_message = "public = true cannot be combined with COMPLETER_ALLOW_UNSIGNED=true: nothing but IAM would guard unsigned requests, and a public URL has no IAM."
    }
  }

  #checkov:skip=CKV_AWS_258:NONE only with public = true, which the preconditions allow only when signing secrets or the link secret guard every request.
}

# A public URL needs both grants (Lambda's authorization model since October 2025); the
# second is limited to calls through the URL, so the function stays private to the Invoke API.
resource "aws_lambda_permission" "public_url" {
  count = var.create_function_url && var.public ? 1 : 0

  statement_id           = "AllowPublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = "*"
  function_url_auth_type = "NONE"

  #checkov:skip=CKV_AWS_301:Public on purpose (public = true): the function checks signatures or sealed links on every request.
}

resource "aws_lambda_permission" "public_invoke" {
  count = var.create_function_url && var.public ? 1 : 0

  statement_id             = "AllowInvokeThroughFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this.function_name
  principal                = "*"
  invoked_via_function_url = true

  #checkov:skip=CKV_AWS_301:Only through the public URL (invoked_via_function_url), whose requests the function authenticates itself.
}

# Private (AWS_IAM): the listed principals may call the URL with SigV4-signed requests.
resource "aws_lambda_permission" "invoker_url" {
  for_each = var.create_function_url && !var.public ? toset(var.invoker_principals) : toset([])

  statement_id_prefix    = "AllowUrl-"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.this.function_name
  principal              = each.value
  function_url_auth_type = "AWS_IAM"
}

resource "aws_lambda_permission" "invoker_invoke" {
  for_each = var.create_function_url && !var.public ? toset(var.invoker_principals) : toset([])

  statement_id_prefix      = "AllowInvoke-"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.this.function_name
  principal                = each.value
  invoked_via_function_url = true
}
