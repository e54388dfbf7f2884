"""The HTTP function (target ``complete``): complete a waiting activity from a webhook or API call.

The behaviour (CONTRACT §4) lives in :mod:`completer.events.http`. Settings are checked at
import: a wrong configuration stops the instance at start with one sentence. The one engine
connection is opened by the serving worker as soon as gunicorn forks it, and reused.
"""

from __future__ import annotations

import flask
import functions_framework

from completer.client import ProcessClient
from completer.errors import ConfigurationError
from completer.events.http import HttpCompleter
from completer.logs import configure_logging
from completer.settings import get_settings

configure_logging()
try:
    http_completer = HttpCompleter(ProcessClient(), settings=get_settings())
except ConfigurationError as exc:
    raise SystemExit(f"activity-completer: {exc}") from None


@functions_framework.http
def complete(request: flask.Request) -> flask.Response:
    """Complete, fail, heartbeat or cancel the activity the JSON body (or a link) names."""
    answer = http_completer.handle(request)
    return flask.Response(
        answer.text(), status=answer.status, headers=answer.headers, mimetype=answer.media_type
    )
