provider "aws" {
  region = var.region
}

locals {
  tags = { app = "activity-completer" }
}

# Secrets are created and filled outside Terraform (aws secretsmanager create-secret), so
# their values never enter variables or state; the module only lets the function read them.
module "completer" {
  source = "../../modules/aws-s3-lambda"

  name         = var.name
  package_path = "${path.root}/../../../dist/aws-s3.zip"
  architecture = var.architecture
  tags         = local.tags

  backend = var.backend
  environment_variables = {
    TEMPORAL_ADDRESS   = var.temporal_address
    TEMPORAL_NAMESPACE = var.temporal_namespace
  }
  secret_arns = var.secret_arns

  bucket_name   = var.bucket_name
  filter_prefix = var.filter_prefix
  filter_suffix = var.filter_suffix
  delivery      = var.delivery

  # The completion ledger: repeated deliveries get the first answer (docs/ledger.md).
  create_ledger = true
}
