variable "project_id" {
  type        = string
  description = "The project to deploy into."
}

variable "region" {
  type        = string
  description = "The region of the functions, the trigger and the source bucket."
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (functions, topics, service accounts: keep it at most 18 characters)."
  default     = "activity-completer"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,17}$", var.name_prefix))
    error_message = "name_prefix must be lower-case letters, digits and hyphens, at most 18 characters, starting with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every resource that takes labels."
  default     = {}
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime the archives were built for (packaging/build.py targets python312)."
  default     = "python312"
}

variable "backend" {
  type        = string
  description = "COMPLETER_BACKEND: the workflow engine the functions complete activities in."
  default     = "temporal"

  validation {
    condition     = contains(["temporal", "cadence", "stepfunctions"], var.backend)
    error_message = "backend must be temporal, cadence or stepfunctions."
  }
}

variable "environment_variables" {
  type        = map(string)
  description = "Plain (non-secret) settings for both functions, e.g. TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, COMPLETER_RPC_TIMEOUT_SECONDS. Secrets go in *_secrets instead."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment_variables) : can(regex("^(COMPLETER_|TEMPORAL_|CADENCE_|AWS_)[A-Z0-9_]+$", k))])
    error_message = "Only completer settings (COMPLETER_*, TEMPORAL_*, CADENCE_*, AWS_*) can be set."
  }

  validation {
    condition     = length(setintersection(keys(var.environment_variables), ["TEMPORAL_API_KEY", "COMPLETER_SIGNING_SECRETS", "COMPLETER_LINK_SECRET", "TEMPORAL_TLS_CLIENT_KEY_DATA", "TEMPORAL_CODEC_AUTH"])) == 0
    error_message = "Secrets must come from Secret Manager (http_secrets / pubsub_secrets), never plain environment variables."
  }
}

variable "create_source_bucket" {
  type        = bool
  description = "Create the bucket the source archives are uploaded to; false to use source_bucket_name."
  default     = true
}

variable "source_bucket_name" {
  type        = string
  description = "Bucket for the source archives: the name to create, or an existing bucket when create_source_bucket is false. Default: <project_id>-<name_prefix>-source."
  default     = null
}

variable "build_service_account" {
  type        = string
  description = "Full resource name (projects/<p>/serviceAccounts/<email>) of the Cloud Build service account that builds the functions; null uses the project default."
  default     = null
}

# --- HTTP function -----------------------------------------------------------------

variable "create_http_function" {
  type        = bool
  description = "Deploy the HTTP function (functions/http, target complete)."
  default     = true
}

variable "http_source_archive" {
  type        = string
  description = "Path to the HTTP function's source archive built by `make package` (dist/gcp-http.zip)."
  default     = null
}

variable "http_invoker_members" {
  type        = list(string)
  description = "Principals allowed to call the private HTTP function (roles/run.invoker), e.g. serviceAccount:caller@p.iam.gserviceaccount.com. Empty: nobody but project owners. To open the function to partners' webhooks and e-mail links use http_public instead of allUsers."
  default     = []

  validation {
    condition     = alltrue([for m in var.http_invoker_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "List the callers explicitly, never allUsers or allAuthenticatedUsers: set http_public = true (with signing secrets or the link secret) to make the function public."
  }
}

variable "http_public" {
  type        = bool
  description = "true: anyone may call the HTTP function (allUsers invoker, ingress ALLOW_ALL), so partners' webhooks and approval links opened in a browser reach it; allowed only with COMPLETER_SIGNING_SECRETS or COMPLETER_LINK_SECRET in http_secrets, which then guard every request. false (default): private, callers need roles/run.invoker and an ID token."
  default     = false
}

variable "http_ingress_settings" {
  type        = string
  description = "Where HTTP requests may come from when the function is private: ALLOW_ALL (still IAM-authenticated), ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB. http_public = true uses ALLOW_ALL."
  default     = "ALLOW_INTERNAL_AND_GCLB"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.http_ingress_settings)
    error_message = "http_ingress_settings must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "http_secrets" {
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  description = "Environment variable name => Secret Manager secret (id in this project, or projects/<p>/secrets/<id>) for the HTTP function, e.g. TEMPORAL_API_KEY, COMPLETER_SIGNING_SECRETS, COMPLETER_LINK_SECRET, TEMPORAL_TLS_CLIENT_CERT_DATA, TEMPORAL_TLS_CLIENT_KEY_DATA."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.http_secrets) : can(regex("^(COMPLETER_|TEMPORAL_|CADENCE_)[A-Z0-9_]+$", k))])
    error_message = "Secret names must be completer settings (COMPLETER_*, TEMPORAL_*, CADENCE_*)."
  }
}

variable "http_memory" {
  type        = string
  description = "Memory of one HTTP function instance (e.g. 512Mi)."
  default     = "512Mi"
}

variable "http_cpu" {
  type        = string
  description = "vCPUs of one HTTP function instance; concurrency above 1 needs at least 1."
  default     = "1"
}

variable "http_timeout_seconds" {
  type        = number
  description = "Request timeout of the HTTP function."
  default     = 60
}

variable "http_concurrency" {
  type        = number
  description = "Requests one HTTP function instance serves at once (they share one engine connection)."
  default     = 16
}

variable "http_min_instances" {
  type        = number
  description = "Instances kept warm (0 scales to zero; 1 avoids a cold engine connection)."
  default     = 0
}

variable "http_max_instances" {
  type        = number
  description = "Upper bound of HTTP function instances."
  default     = 10
}

# --- Pub/Sub function --------------------------------------------------------------

variable "create_pubsub_function" {
  type        = bool
  description = "Deploy the Pub/Sub function (functions/pubsub, target complete) and its Eventarc trigger."
  default     = true
}

variable "pubsub_source_archive" {
  type        = string
  description = "Path to the Pub/Sub function's source archive built by `make package` (dist/gcp-pubsub.zip)."
  default     = null
}

variable "create_topic" {
  type        = bool
  description = "Create the topic completion messages are published to; false to use topic_id."
  default     = true
}

variable "topic_id" {
  type        = string
  description = "The completion topic: the name to create, or the full id (projects/<p>/topics/<t>) of an existing one when create_topic is false. Default: <name_prefix>-completions."
  default     = null
}

variable "create_dead_letter_topic" {
  type        = bool
  description = "Create the topic rejected messages are republished to (COMPLETER_DEAD_LETTER_TOPIC)."
  default     = true
}

variable "dead_letter_topic_id" {
  type        = string
  description = "The dead-letter topic: the name to create, or the full id of an existing one when create_dead_letter_topic is false; null with create_dead_letter_topic = false disables dead-lettering."
  default     = null
}

variable "grant_pubsub_agent_dead_letter" {
  type        = bool
  description = "Let the project's Pub/Sub service agent publish to the dead-letter topic, so a dead-letter policy can be attached to the trigger's subscription (see the README)."
  default     = true
}

variable "message_retention_duration" {
  type        = string
  description = "How long the topics keep messages (the trigger's subscription retries transient failures for as long)."
  default     = "604800s"
}

variable "pubsub_secrets" {
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  description = "Environment variable name => Secret Manager secret for the Pub/Sub function, e.g. TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_KEY_DATA."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.pubsub_secrets) : can(regex("^(COMPLETER_|TEMPORAL_|CADENCE_)[A-Z0-9_]+$", k))])
    error_message = "Secret names must be completer settings (COMPLETER_*, TEMPORAL_*, CADENCE_*)."
  }
}

variable "pubsub_memory" {
  type        = string
  description = "Memory of one Pub/Sub function instance."
  default     = "512Mi"
}

variable "pubsub_cpu" {
  type        = string
  description = "vCPUs of one Pub/Sub function instance; concurrency above 1 needs at least 1."
  default     = "1"
}

variable "pubsub_timeout_seconds" {
  type        = number
  description = "Timeout of one delivery; Eventarc sets the subscription's ack deadline from it."
  default     = 60
}

variable "pubsub_concurrency" {
  type        = number
  description = "Messages one Pub/Sub function instance handles at once."
  default     = 16
}

variable "pubsub_min_instances" {
  type        = number
  description = "Pub/Sub function instances kept warm."
  default     = 0
}

variable "pubsub_max_instances" {
  type        = number
  description = "Upper bound of Pub/Sub function instances."
  default     = 10
}

# --- Completion ledger -----------------------------------------------------------------

variable "create_ledger" {
  type        = bool
  description = "Keep a completion ledger in Firestore (COMPLETER_LEDGER): repeated deliveries get the first answer on every instance. Creates the collection's TTL policy and grants both functions roles/datastore.user on the database."
  default     = false
}

variable "ledger_database" {
  type        = string
  description = "Firestore database (native mode, already created) that holds the ledger; \"(default)\" is the project's default database."
  default     = "(default)"
}

variable "ledger_collection" {
  type        = string
  description = "Firestore collection of the ledger's records. Default: <name_prefix>-ledger."
  default     = null

  validation {
    condition     = var.ledger_collection == null || can(regex("^[A-Za-z0-9_-]{1,100}$", var.ledger_collection))
    error_message = "ledger_collection must be 1 to 100 letters, digits, '_' or '-'."
  }
}

# --- Cloud Storage function ----------------------------------------------------------------

variable "create_gcs_function" {
  type        = bool
  description = "Deploy the Cloud Storage function (functions/gcs, target complete) with an Eventarc trigger on finalized objects in the upload bucket."
  default     = false
}

variable "gcs_source_archive" {
  type        = string
  description = "Path to the Cloud Storage function's source archive built by `make package` (dist/gcp-gcs.zip)."
  default     = null
}

variable "gcs_bucket_name" {
  type        = string
  description = "The upload bucket whose finalized objects complete activities: the name to create (create_gcs_bucket), or an existing bucket's name."
  default     = null
}

variable "create_gcs_bucket" {
  type        = bool
  description = "Create the upload bucket (private, uniform access, versioned); false to use an existing gcs_bucket_name."
  default     = true
}

variable "gcs_bucket_location" {
  type        = string
  description = "Location of the upload bucket (a region, or a multi-region such as EU); default: region. The trigger is created in the same location."
  default     = null
}

variable "gcs_trigger_region" {
  type        = string
  description = "Location of the Eventarc trigger when it differs from gcs_bucket_location (an existing bucket's location, e.g. us or europe-west1)."
  default     = null
}

variable "gcs_noncurrent_version_days" {
  type        = number
  description = "Days a replaced upload's old version is kept in a created bucket before it is deleted."
  default     = 30
}

variable "grant_gcs_agent_publisher" {
  type        = bool
  description = "Grant the project's Cloud Storage service agent roles/pubsub.publisher, which Eventarc's Cloud Storage triggers need (false when it is granted elsewhere)."
  default     = true
}

variable "gcs_inline_max_bytes" {
  type        = number
  description = "COMPLETER_GCS_INLINE_MAX_BYTES: the largest JSON object passed inline as the result; null keeps the default (262144)."
  default     = null
}

variable "gcs_secrets" {
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  description = "Environment variable name => Secret Manager secret for the Cloud Storage function, e.g. TEMPORAL_API_KEY."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.gcs_secrets) : can(regex("^(COMPLETER_|TEMPORAL_|CADENCE_)[A-Z0-9_]+$", k))])
    error_message = "Secret names must be completer settings (COMPLETER_*, TEMPORAL_*, CADENCE_*)."
  }
}

variable "gcs_memory" {
  type        = string
  description = "Memory of one Cloud Storage function instance."
  default     = "512Mi"
}

variable "gcs_cpu" {
  type        = string
  description = "vCPUs of one Cloud Storage function instance; concurrency above 1 needs at least 1."
  default     = "1"
}

variable "gcs_timeout_seconds" {
  type        = number
  description = "Timeout of one event delivery."
  default     = 60
}

variable "gcs_concurrency" {
  type        = number
  description = "Events one Cloud Storage function instance handles at once."
  default     = 16
}

variable "gcs_min_instances" {
  type        = number
  description = "Cloud Storage function instances kept warm."
  default     = 0
}

variable "gcs_max_instances" {
  type        = number
  description = "Upper bound of Cloud Storage function instances."
  default     = 10
}
