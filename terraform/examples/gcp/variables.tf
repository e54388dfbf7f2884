variable "project_id" {
  type        = string
  description = "The project to deploy into."
}

variable "region" {
  type        = string
  description = "Region of the functions."
  default     = "europe-west1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name."
  default     = "activity-completer"
}

variable "temporal_address" {
  type        = string
  description = "TEMPORAL_ADDRESS, e.g. <namespace>.<account>.tmprl.cloud:7233."
}

variable "temporal_namespace" {
  type        = string
  description = "TEMPORAL_NAMESPACE."
  default     = "default"
}

variable "http_invoker_members" {
  type        = list(string)
  description = "Principals that may call the HTTP function, e.g. [\"serviceAccount:caller@my-project.iam.gserviceaccount.com\"]."
  default     = []
}

variable "http_public" {
  type        = bool
  description = "Make the HTTP function public so partners' webhooks and approval links reach it; needs COMPLETER_SIGNING_SECRETS or COMPLETER_LINK_SECRET in http_secrets."
  default     = false
}

variable "http_secrets" {
  type        = map(string)
  description = "Setting name => Secret Manager secret id for the HTTP function, e.g. { TEMPORAL_API_KEY = \"temporal-api-key\" }."
  default     = {}
}

variable "pubsub_secrets" {
  type        = map(string)
  description = "Setting name => Secret Manager secret id for the Pub/Sub function."
  default     = {}
}

variable "gcs_uploads_bucket" {
  type        = string
  description = "Name of a new bucket whose uploads complete activities (the Cloud Storage function and its Eventarc trigger); null: no Cloud Storage function."
  default     = null
}
