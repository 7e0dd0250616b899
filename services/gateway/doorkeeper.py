"""Who may call, and how often: the API-key check and the rate limit, for HTTP and gRPC alike."""

from __future__ import annotations

from services.common.errors import TooManyRequests, Unauthorized
from services.gateway.auth import ANONYMOUS, Authenticator
from services.gateway.metrics import GatewayMetrics
from services.gateway.ratelimit import RateLimiter


def admit(
    keys: Authenticator, limiter: RateLimiter | None, m: GatewayMetrics,
    authorization: str | None, api_key: str | None, *, open_path: bool = False,
) -> str:
    """The caller's identity once it has shown a valid key (``Authorization: Bearer <key>`` or
    ``X-API-Key``; HTTP headers or gRPC metadata) and is within its rate; else
    :class:`Unauthorized` or :class:`TooManyRequests`, each counted as a rejection. An
    ``open_path`` needs no key (the API reference: SECURITY.md says why), only the rate."""
    try:
        caller = ANONYMOUS if open_path else keys.check(authorization, api_key)
        if limiter is not None:
            limiter.check(caller)
    except Unauthorized:
        m.rejections.labels("unauthorized").inc()
        raise
    except TooManyRequests:
        m.rejections.labels("rate_limited").inc()
        raise
    return caller
