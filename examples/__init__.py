"""Runnable samples: Temporal workflows whose activities are completed from outside."""
