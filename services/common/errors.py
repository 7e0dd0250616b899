"""Errors that map to HTTP and to gRPC, and the one place that renders them.

Hierarchy (catch the narrowest you can handle), each with its HTTP status and gRPC code::

    ServingError                    500  INTERNAL            base; anything the client cannot fix
    ├── ClientError                 400  INVALID_ARGUMENT    the request is wrong
    │   ├── Unauthorized            401  UNAUTHENTICATED
    │   ├── Forbidden               403  PERMISSION_DENIED   an admin call switched off or not allowed here
    │   ├── NotFound                404  NOT_FOUND           unknown model, version or path
    │   ├── MethodNotAllowed        405  UNIMPLEMENTED
    │   ├── PayloadTooLarge         413  RESOURCE_EXHAUSTED
    │   ├── UnsupportedMediaType    415  INVALID_ARGUMENT
    │   └── TooManyRequests         429  RESOURCE_EXHAUSTED  per-key rate limit (carries Retry-After)
    └── ServerError                 500  INTERNAL
        ├── BadGateway              502  UNAVAILABLE         upstream answered garbage or not at all
        ├── Unavailable             503  UNAVAILABLE         not ready, draining, or loading (Retry-After)
        │   └── Overloaded          503  UNAVAILABLE         refused by admission control: load shed
        └── GatewayTimeout          504  DEADLINE_EXCEEDED   a deadline passed

``grpc_code`` is the name of a ``grpc.StatusCode`` (a name, so this module needs no grpcio).
Over gRPC the retry hint travels in trailing metadata (:meth:`ServingError.retry_metadata`).

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
    grpc_code = "INTERNAL"

    def __init__(self, message: str, *, retry_after: float | None = None, upstream: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.upstream = upstream  # the replica it concerns, for the gateway's access log; "" if none

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        # Retry-After takes whole seconds; never tell a client to retry at once.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

    def retry_metadata(self) -> tuple[tuple[str, str], ...]:
        """The retry hint as gRPC trailing metadata: ``retry-after`` (seconds, as HTTP's) and
        gRPC's own ``grpc-retry-pushback-ms``, which gRPC's retry policies obey."""
        if self.retry_after is None:
            return ()
        seconds = max(1, math.ceil(self.retry_after))
        return (("retry-after", str(seconds)), ("grpc-retry-pushback-ms", str(seconds * 1000)))


class ClientError(ServingError):
    status = 400
    grpc_code = "INVALID_ARGUMENT"


class Unauthorized(ClientError):
    status = 401
    grpc_code = "UNAUTHENTICATED"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer", **super().headers()}  # RFC 9110 15.5.2: required


class Forbidden(ClientError):
    status = 403
    grpc_code = "PERMISSION_DENIED"


class NotFound(ClientError):
    status = 404
    grpc_code = "NOT_FOUND"


class MethodNotAllowed(ClientError):
    status = 405
    grpc_code = "UNIMPLEMENTED"

    def __init__(self, message: str, *, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class PayloadTooLarge(ClientError):
    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class UnsupportedMediaType(ClientError):
    status = 415
    grpc_code = "INVALID_ARGUMENT"


class TooManyRequests(ClientError):
    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"


class ServerError(ServingError):
    status = 500
    grpc_code = "INTERNAL"


class BadGateway(ServerError):
    status = 502
    grpc_code = "UNAVAILABLE"


class Unavailable(ServerError):
    status = 503
    grpc_code = "UNAVAILABLE"


class Overloaded(Unavailable):
    """Admission control refused the request: its wait would exceed the budget. Its own class
    so that what counts load shedding counts this, not a model that is still loading."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)  # always says when to come back


class GatewayTimeout(ServerError):
    status = 504
    grpc_code = "DEADLINE_EXCEEDED"


def error_response(error: ServingError) -> Response:
    return json_response({"error": error.message}, error.status, error.headers())


def note(error: ServingError) -> None:
    """Log a failure that is our fault (not the client's, nor load or deadlines)."""
    if error.status >= 500 and not isinstance(error, (Unavailable, GatewayTimeout)):
        log.error("request failed: %s", error.message)


def report(error: ServingError) -> Response:
    """The response for a failure, logging the ones that are our fault (not load or deadlines)."""
    note(error)
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
