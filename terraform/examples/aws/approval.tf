# A Step Functions approval flow: the state machine waits (.waitForTaskToken) while a
# notifier Lambda e-mails approve/reject links through SNS; a click on a link opens the
# public HTTP function's confirmation page, whose POST sends the task success or failure.

module "http" {
  source = "../../modules/aws-http-lambda"

  name         = "${var.name_prefix}-http"
  package_path = "${path.root}/../../../dist/http-lambda.zip"
  architecture = var.architecture
  tags         = local.tags

  # Links carry their own credential, so the URL may be public; JSON requests still need
  # signatures (COMPLETER_SIGNING_SECRETS in http_secret_arns) and are refused without them.
  public      = true
  backend     = "stepfunctions"
  secret_arns = merge(var.http_secret_arns, { COMPLETER_LINK_SECRET = var.link_secret_arn })
  # The same completion ledger as the S3 function (docs/ledger.md).
  ledger_table_arn = module.completer.ledger_table_arn
}

resource "aws_sns_topic" "approvals" {
  name              = "${var.name_prefix}-approvals"
  kms_master_key_id = "alias/aws/sns"
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "approver" {
  count = var.approver_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.approvals.arn
  protocol  = "email"
  endpoint  = var.approver_email
}

# --- The notifier: makes the links and publishes them (same package, another handler) ---

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "notifier" {
  name               = "${var.name_prefix}-notifier-role"
  description        = "Approval notifier: publishes approval links, reads the link secret."
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "notifier" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.notifier.arn}:*"]
  }

  statement {
    sid       = "PublishApprovalLinks"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.approvals.arn]
  }

  statement {
    sid       = "ReadLinkSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.link_secret_arn]
  }
}

resource "aws_iam_role_policy" "notifier" {
  name   = "${var.name_prefix}-notifier-policy"
  role   = aws_iam_role.notifier.id
  policy = data.aws_iam_policy_document.notifier.json
}

resource "aws_cloudwatch_log_group" "notifier" {
  name              = "/aws/lambda/${var.name_prefix}-notifier"
  retention_in_days = 365
  tags              = local.tags

  #checkov:skip=CKV_AWS_158:Example: AWS managed encryption; pass a customer managed key when policy requires one.
}

resource "aws_lambda_function" "notifier" {
  function_name                  = "${var.name_prefix}-notifier"
  description                    = "Publishes approve/reject links for a waiting Step Functions task (activity-completer)."
  role                           = aws_iam_role.notifier.arn
  filename                       = "${path.root}/../../../dist/http-lambda.zip"
  source_code_hash               = filebase64sha256("${path.root}/../../../dist/http-lambda.zip")
  handler                        = "completer.activity.stepfunctions_approval_handler"
  runtime                        = "python3.12"
  architectures                  = [var.architecture]
  memory_size                    = 256
  timeout                        = 30
  reserved_concurrent_executions = -1
  tags                           = local.tags

  environment {
    variables = {
      APPROVAL_FUNCTION_URL            = module.http.function_url
      APPROVAL_TOPIC_ARN               = aws_sns_topic.approvals.arn
      COMPLETER_LINK_SECRET_SECRET_ARN = var.link_secret_arn
    }
  }

  tracing_config {
    mode = "PassThrough"
  }

  depends_on = [aws_cloudwatch_log_group.notifier, aws_iam_role_policy.notifier]

  #checkov:skip=CKV_AWS_116:Invoked synchronously by Step Functions, which retries it (Retry in the state machine); there is no event to dead-letter.
  #checkov:skip=CKV_AWS_117:It calls only public AWS APIs (SNS, Secrets Manager).
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile the user owns; the package's SHA-256 is pinned by source_code_hash.
  #checkov:skip=CKV_AWS_173:The environment holds ARNs and a URL, no secret; the link secret is read from Secrets Manager.
  #checkov:skip=CKV_AWS_115:Example: unreserved; reserve concurrency once you know your approval volume.
}

# --- The state machine ---------------------------------------------------------------------

data "aws_iam_policy_document" "states_assume" {
  statement {
    sid     = "StatesAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "approval" {
  name               = "${var.name_prefix}-approval-role"
  description        = "Approval state machine: invokes the notifier only."
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "approval" {
  statement {
    sid       = "InvokeNotifier"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.notifier.arn]
  }
}

resource "aws_iam_role_policy" "approval" {
  name   = "${var.name_prefix}-approval-policy"
  role   = aws_iam_role.approval.id
  policy = data.aws_iam_policy_document.approval.json
}

resource "aws_sfn_state_machine" "approval" {
  name     = "${var.name_prefix}-approval"
  role_arn = aws_iam_role.approval.arn
  tags     = local.tags

  definition = jsonencode({
    Comment = "Waits until a person approves or rejects by e-mail link (activity-completer)."
    StartAt = "WaitForApproval"
    States = {
      WaitForApproval = {
        Type     = "Task"
        Resource = "arn:aws:states:::lambda:invoke.waitForTaskToken"
        Parameters = {
          FunctionName = aws_lambda_function.notifier.arn
          Payload = {
            "task_token.$"  = "$$.Task.Token"
            "subject"       = "Approval needed"
            "description.$" = "States.JsonToString($)"
            "ttl_seconds"   = var.approval_ttl_seconds
          }
        }
        # The links stop working after their TTL; so does the wait.
        TimeoutSeconds = var.approval_ttl_seconds
        Retry = [{
          ErrorEquals     = ["Lambda.ServiceException", "Lambda.TooManyRequestsException", "Lambda.SdkClientException"]
          IntervalSeconds = 2
          MaxAttempts     = 3
          BackoffRate     = 2
        }]
        # The reject link fails the task with the error type "Rejected".
        Catch = [{ ErrorEquals = ["Rejected"], Next = "Rejected" }]
        Next  = "Approved"
      }
      Approved = { Type = "Succeed" }
      Rejected = { Type = "Fail", Error = "Rejected", Cause = "The approver rejected the request." }
    }
  })

  #checkov:skip=CKV_AWS_284:Example: X-Ray tracing off; turn tracing_configuration on when you trace the rest of the flow.
  #checkov:skip=CKV_AWS_285:Example: execution logging off, since execution data would hold task tokens; add a log group with include_execution_data = false when you need it.
}
