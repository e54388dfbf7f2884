"""One handler per trigger: parse the event, execute its requests, answer the platform.

Every handler depends only on :class:`completer.executor.Executor` and decides what to do
with an error through :mod:`completer.handlers.disposition`, the one policy for all triggers.
"""
