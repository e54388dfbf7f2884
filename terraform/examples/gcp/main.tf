provider "google" {
  project = var.project_id
  region  = var.region
}

# Secrets are created and filled outside Terraform (gcloud secrets create / versions add),
# so their values never enter variables or state; the module only grants access to them.
module "completer" {
  source = "../../modules/gcp-functions"

  project_id  = var.project_id
  region      = var.region
  name_prefix = var.name_prefix
  labels      = { app = "activity-completer" }

  backend = "temporal"
  environment_variables = {
    TEMPORAL_ADDRESS   = var.temporal_address
    TEMPORAL_NAMESPACE = var.temporal_namespace
  }

  http_source_archive  = "${path.root}/../../../dist/gcp-http.zip"
  http_invoker_members = var.http_invoker_members
  http_public          = var.http_public
  http_secrets         = { for name, secret in var.http_secrets : name => { secret = secret } }

  pubsub_source_archive = "${path.root}/../../../dist/gcp-pubsub.zip"
  pubsub_secrets        = { for name, secret in var.pubsub_secrets : name => { secret = secret } }

  # The completion ledger: repeated deliveries get the first answer (docs/ledger.md).
  create_ledger = true

  # Uploads to this bucket complete activities (it is created); null leaves the function out.
  create_gcs_function = var.gcs_uploads_bucket != null
  gcs_bucket_name     = var.gcs_uploads_bucket
  gcs_source_archive  = "${path.root}/../../../dist/gcp-gcs.zip"
  gcs_secrets         = { for name, secret in var.pubsub_secrets : name => { secret = secret } }
}
