"""Trigger events to completion requests: one pure module per trigger (http, pubsub, s3)."""
