terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.29.0 added invoked_via_function_url, which a public Function URL's second
      # permission (lambda:InvokeFunction, only through the URL) needs.
      version = ">= 6.29.0, < 7.0.0"
    }
  }
}
