"""Errors that map to HTTP, and the one place that renders them.

Hierarchy (catch the narrowest you can handle)::

    ServingError                    500  base; anything the client cannot fix
    ├── ClientError                 400  the request is wrong
    │   ├── Unauthorized            401
    │   ├── NotFound                404  unknown model, version or path
    │   ├── MethodNotAllowed        405
    │   ├── PayloadTooLarge         413
    │   ├── UnsupportedMediaType    415
    │   └── TooManyRequests         429  per-key rate limit (carries Retry-After)
    └── ServerError                 500
        ├── BadGateway              502  upstream answered garbage or not at all
        ├── Unavailable             503  not ready, draining, or loading (carries Retry-After)
        │   └── Overloaded          503  refused by admission control: load shed (Retry-After)
        └── GatewayTimeout          504  a deadline passed

Every error leaves the service as ``{"error": "<message>"}``, the body both TensorFlow Serving
and the Open Inference Protocol use, so clients of either recognise it.
"""

from __future__ import annotations

import logging
import math

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from services.common.jsoncodec import json_response

log = logging.getLogger(__name__)


class ServingError(Exception):
    status = 500

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        # Retry-After takes whole seconds; never tell a client to retry at once.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class ClientError(ServingError):
    status = 400


class Unauthorized(ClientError):
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer", **super().headers()}  # RFC 9110 15.5.2: required


class NotFound(ClientError):
    status = 404


class MethodNotAllowed(ClientError):
    status = 405

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class PayloadTooLarge(ClientError):
    status = 413


class UnsupportedMediaType(ClientError):
    status = 415


class TooManyRequests(ClientError):
    status = 429


class ServerError(ServingError):
    status = 500


class BadGateway(ServerError):
    status = 502


class Unavailable(ServerError):
    status = 503


class Overloaded(Unavailable):
    """Admission control refused the request: its wait would exceed the budget. Its own class
    so that what counts load shedding counts this, not a model that is still loading."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)  # always says when to come back


class GatewayTimeout(ServerError):
    status = 504


def error_response(error: ServingError) -> Response:
    return json_response({"error": error.message}, error.status, error.headers())


def report(error: ServingError) -> Response:
    """The response for a failure, logging the ones that are our fault (not load or deadlines)."""
    if error.status >= 500 and not isinstance(error, (Unavailable, GatewayTimeout)):
        log.error("request failed: %s", error.message)
    return error_response(error)


def report_unexpected() -> Response:
    """The response for a bug: logged with its traceback, shown to the client as nothing more."""
    log.exception("unhandled error")
    return json_response({"error": "internal error"}, 500)


def register_error_handlers(app: Flask) -> None:
    """Render every failure, ours or Werkzeug's, as JSON with the right status."""

    @app.errorhandler(ServingError)
    def _serving_error(error: ServingError) -> Response:
        return report(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = {
            404: "no such path",
            405: "method not allowed on this path",
            413: "request body too large",
        }.get(status, error.description or error.name)
        headers = {}
        if status == 405 and getattr(error, "valid_methods", None):
            headers["Allow"] = ", ".join(error.valid_methods)
        return json_response({"error": message}, status, headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        return report_unexpected()
