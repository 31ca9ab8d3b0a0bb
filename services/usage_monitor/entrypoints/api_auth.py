"""The card API's bearer token: every `/cards…`, `/pools…` and `/customers…` request must
carry `Authorization: Bearer <USAGE_MONITOR_API_TOKEN>` when the token is set (without one,
settings allow only a loopback bind). `/health` and `/metrics` stay open for probes and
Prometheus."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

PROTECTED_PREFIXES = ("/cards", "/pools", "/customers")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def authorized(header: str | None, token: SecretStr) -> bool:
    """`header` is `Bearer <token>` (scheme case-insensitive), compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


def bearer_guard(token: SecretStr | None) -> list[Middleware]:
    """The aiohttp middlewares of the worker's web server: none without a token."""
    if token is None:
        return []

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Before routing's answer is used: an unknown /cards… path is 401, not 404, so the
        # API's shape is not probed without the token either.
        if request.path.startswith(PROTECTED_PREFIXES) and not authorized(
            request.headers.get("Authorization"), token
        ):
            return web.json_response(
                {"error": "unauthorized", "detail": "Authorization: Bearer <token> required"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await handler(request)

    return [guard]
