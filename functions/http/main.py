"""The HTTP function (target ``complete``): complete a waiting activity from a webhook or API call.

The behaviour (CONTRACT §4) lives in :mod:`completer.events.http`. Settings and the one
engine client are made at import: a wrong configuration stops the instance at start with
one sentence, and a warm instance reuses its connection for every request.
"""

from __future__ import annotations

import os

import flask
import functions_framework

from completer.client import default_client
from completer.errors import ConfigurationError
from completer.events.http import HttpCompleter
from completer.logs import configure_logging
from completer.settings import get_settings

http_completer: HttpCompleter


def _start() -> None:
    global http_completer
    http_completer = HttpCompleter(default_client(), settings=get_settings())


configure_logging()
try:
    _start()
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None
# gunicorn forks its workers after this import: each builds (and warms) its own client.
os.register_at_fork(after_in_child=_start)


@functions_framework.http
def complete(request: flask.Request) -> flask.Response:
    """Complete, fail, heartbeat or cancel the activity the JSON body names."""
    answer = http_completer.handle(request)
    return flask.Response(
        answer.json(), status=answer.status, headers=answer.headers, mimetype="application/json"
    )
