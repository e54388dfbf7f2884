"""The HTTP function on AWS Lambda: payload format 2.0 events in, Lambda proxy answers out.

Lambda Function URLs and API Gateway HTTP APIs (payload format 2.0) hand the function the
same event shape; this adapter turns it into a transport-neutral
:class:`~completer.handlers.exchange.HttpRequest` for :meth:`HttpHandler.handle` (the core
the GCP function uses too) and its :class:`~completer.handlers.exchange.HttpAnswer` into
``{"statusCode", "headers", "body", "isBase64Encoded"}``. Nothing of the HTTP contract is
decided here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from completer.errors import InvalidRequest
from completer.handlers.exchange import HTML_MEDIA_TYPE, HttpAnswer, HttpRequest
from completer.handlers.http import JSON_HEADERS, answer_error

if TYPE_CHECKING:
    from completer.handlers.http import HttpHandler

__all__ = ["LambdaHttp", "lambda_answer", "request_of"]


def request_of(event: Mapping[str, Any]) -> HttpRequest:
    """The neutral request a payload format 2.0 event carries.

    The body is the raw bytes the caller sent (base64-decoded when ``isBase64Encoded``), so
    signatures are checked over exactly what was signed.

    Raises:
        InvalidRequest: Not a payload format 2.0 event, or ``isBase64Encoded`` is set but
            the body is not base64.
    """
    parsed = APIGatewayProxyEventV2(dict(event))
    try:
        method = parsed.request_context.http.method
    except (KeyError, TypeError, AttributeError):
        # A REST API (payload 1.0) or a direct invoke: configure payload format 2.0.
        raise InvalidRequest(
            "not a Function URL or HTTP API payload format 2.0 event (requestContext.http)."
        ) from None
    # Payload 2.0 joins repeated headers with commas already; names arrive lower case.
    headers = {str(name).lower(): str(value) for name, value in (parsed.headers or {}).items()}
    query: dict[str, str] = {}
    # rawQueryString keeps repeated parameters apart (queryStringParameters joins them).
    for name, value in parse_qsl(parsed.raw_query_string or "", keep_blank_values=True):
        query.setdefault(name, value)
    text = parsed.body or ""
    if parsed.is_base64_encoded:
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("the body is marked base64 but is not.") from None
    else:
        # A string that is not valid Unicode stays invalid bytes, refused by the parser.
        body = text.encode("utf-8", "surrogatepass")
    return HttpRequest(str(method), headers=headers, query=query, body=body)


def lambda_answer(answer: HttpAnswer) -> dict[str, Any]:
    """The Lambda proxy answer (Function URL / HTTP API) for one HTTP answer."""
    media_type = answer.media_type
    if media_type == HTML_MEDIA_TYPE:
        media_type += "; charset=utf-8"
    return {
        "statusCode": answer.status,
        "headers": {**answer.headers, "Content-Type": media_type},
        "body": answer.text(),
        "isBase64Encoded": False,
    }


class LambdaHttp:
    """One Lambda's HTTP handling: the event adapter around the shared :class:`HttpHandler`."""

    def __init__(self, handler: HttpHandler) -> None:
        """Wrap the core handler (built once per Lambda instance)."""
        self.handler = handler

    async def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one payload format 2.0 event; never raises."""
        try:
            request = request_of(event)
        except InvalidRequest as exc:
            refused = answer_error(exc)
            refused.headers.update(JSON_HEADERS)
            return lambda_answer(refused)
        return lambda_answer(await self.handler.handle(request))
