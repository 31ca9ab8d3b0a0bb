"""Standard Webhooks deliveries: `webhook-id` (the alert id, stable across retries),
`webhook-timestamp`, `webhook-signature` (`v1,` + base64 HMAC-SHA256 of id.timestamp.body).

An endpoint must not be able to take the notifier down: name resolution, connecting, sending
and reading the answer share one deadline (`timeout_s`), at most `MAX_ANSWER_BYTES` of the
answer are read, and every connection is made to an address checked by `ssrf.resolve`, with
the certificate verified against the URL's own host name (connections are pooled per host
name, never per address).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import hashlib
import hmac
import socket
import ssl
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from simwatch_contracts import CardAlert
from simwatch_contracts.customer_settings import webhook_key

from ..domain.outcome import Outcome, Result
from .ssrf import Lookup, Target, TargetRefusedError, resolve, system_lookup

MAX_ANSWER_BYTES = 4096
"""Read at most this much of an answer: the status decides, the body only says why."""

_PINNED: contextvars.ContextVar[Target | None] = contextvars.ContextVar("pinned", default=None)


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str) -> bytes:
    """The key of a secret as Standard Webhooks reads it: `whsec_` dropped, the rest base64
    (padding optional); ValueError when it is not base64. Decoded once per secret (a
    rotation brings a new string, so the cache never serves an old key for it)."""
    return webhook_key(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)  # the body is hashed where it lies, not copied into a joined message
    return "v1," + base64.b64encode(mac.digest()).decode()


def sign_all(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,` signature per active secret, space-separated,
    so a receiver holding any one of them verifies (secret rotation)."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def body_of(alert: CardAlert) -> bytes:
    """The same bytes on every attempt: type, when the alert happened, the alert itself
    (compact JSON, UTF-8 unescaped). The alert's own JSON is placed as pydantic writes it,
    not parsed and written again: the same bytes as `json.dumps(..., ensure_ascii=False,
    separators=(",", ":"))` of it (an alert holds no floats; tests/unit/test_notifier_policy)."""
    data = alert.model_dump_json(exclude_none=True).encode()
    when = orjson.dumps(orjson.loads(data)["occurred_at"])  # as written in `data`
    return b'{"type":%s,"timestamp":%s,"data":%s}' % (orjson.dumps(alert.type.value), when, data)


class PinningResolver(AbstractResolver):
    """aiohttp asks its resolver for a host's addresses when it opens a connection: this one
    answers with the addresses the current delivery checked, and never looks a name up."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = _PINNED.get()
        if target is None or target.host.rstrip(".") != host.rstrip("."):
            raise OSError(f"no checked address for {host}")  # aiohttp: a connection error
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in target.addresses
        ]

    async def close(self) -> None:
        return None


class WebhookSender:
    """Sends webhooks over its own aiohttp session (created on first use, in the running
    loop); `close()` it when done."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout_s: float,
        lookup: Lookup = system_lookup,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 200,
        per_host: int = 0,
    ) -> None:
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.lookup = lookup
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.per_host = per_host
        """At most this many connections per host name (0: no limit but `max_connections`)."""
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=PinningResolver(),
                use_dns_cache=False,  # every new connection asks for the delivery's own check
                limit=self.max_connections,
                limit_per_host=self.per_host,
                ssl=self.ssl_context if self.ssl_context is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # `send` holds the one deadline
                auto_decompress=False,  # never inflate what we do not read
                cookie_jar=aiohttp.DummyCookieJar(),  # one customer's cookies are not another's
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self, url: str, secrets: str | Sequence[str], alert: CardAlert, now: datetime
    ) -> Outcome:
        """One attempt, within `timeout_s` from the first lookup to the last byte read,
        signed with every secret in `secrets` (one secret: a plain string)."""
        keys = (secrets,) if isinstance(secrets, str) else tuple(secrets)
        try:
            for secret in keys:
                signing_key(secret)
        except ValueError as exc:  # settings stored before secrets were validated on arrival
            return Outcome(Result.REFUSED, str(exc))
        answered: list[Outcome] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                target = await resolve(url, allow_private=self.allow_private, lookup=self.lookup)
                await self._post(target, keys, alert, now, answered)
        except TargetRefusedError as exc:
            return Outcome(Result.REFUSED, str(exc))
        except TimeoutError:
            # An answer whose body is still trickling in has said what it had to say.
            return answered[0] if answered else Outcome(Result.RETRY, "timeout")
        except aiohttp.ClientError as exc:  # connection, TLS and protocol failures: try later
            # ... unless the status line was in: a 200 whose body was cut off is delivered
            # (sent again, the customer would get it twice).
            return (
                answered[0] if answered else Outcome(Result.RETRY, f"{type(exc).__name__}: {exc}")
            )
        return answered[0]

    async def _post(
        self,
        target: Target,
        secrets: Sequence[str],
        alert: CardAlert,
        now: datetime,
        out: list[Outcome],
    ) -> None:
        body = body_of(alert)
        stamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "webhook-id": alert.alert_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_all(secrets, alert.alert_id, stamp, body),
            "user-agent": "simwatch-notifier/1",
        }
        token = _PINNED.set(target)
        try:
            async with self.session().post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                out.append(_classify(response.status, response.headers))
                await _read_some(response)
        finally:
            _PINNED.reset(token)


async def _read_some(response: aiohttp.ClientResponse) -> None:
    """Read the start of the answer: a short one to its end (the connection is then reused),
    a long one no further than MAX_ANSWER_BYTES (the connection is then closed)."""
    seen = 0
    while seen <= MAX_ANSWER_BYTES:
        chunk = await response.content.read(MAX_ANSWER_BYTES + 1 - seen)
        if not chunk:
            return
        seen += len(chunk)
    response.close()


def _classify(code: int, headers: Any) -> Outcome:
    if 200 <= code < 300:
        return Outcome(Result.DELIVERED, str(code))
    if code == 410:
        return Outcome(Result.GONE, "410 Gone")
    # Anything else, redirects included (never followed), is retried with backoff.
    return Outcome(Result.RETRY, f"HTTP {code}", headers.get("retry-after"))
