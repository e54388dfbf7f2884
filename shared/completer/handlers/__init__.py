"""Trigger handlers: parse an event, carry out its requests, answer the platform."""
