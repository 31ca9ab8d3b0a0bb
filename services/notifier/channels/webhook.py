"""Standard Webhooks deliveries: `webhook-id` (the alert id, stable across retries),
`webhook-timestamp`, `webhook-signature` (`v1,` + base64 HMAC-SHA256 of id.timestamp.body)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import httpx

from simwatch_contracts import CardAlert

from .ssrf import Lookup, TargetRefusedError, resolve, system_lookup


class Result(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"  # 410: the endpoint is disabled until the customer changes it
    REFUSED = "refused"  # not a target we may call
    UNCERTAIN = "uncertain"  # the request went out; no answer (SMS only)
    FAILED = "failed"  # refused by the provider for good (SMS only)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    detail: str = ""
    retry_after: str | None = None


def signing_key(secret: str) -> bytes:
    """The key of a secret as Standard Webhooks reads it: `whsec_` dropped, the rest base64
    (padding optional), exactly like the receivers' libraries do."""
    return base64.b64decode(secret.removeprefix("whsec_") + "==")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def body_of(alert: CardAlert) -> bytes:
    """The same bytes on every attempt: type, when the alert happened, the alert itself."""
    data = json.loads(alert.model_dump_json(exclude_none=True))
    doc = {"type": alert.type.value, "timestamp": data["occurred_at"], "data": data}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        allow_private: bool,
        timeout_s: float,
        lookup: Lookup = system_lookup,
    ) -> None:
        self.client = client
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.lookup = lookup

    async def send(self, url: str, secret: str, alert: CardAlert, now: datetime) -> Outcome:
        try:
            target = await resolve(url, allow_private=self.allow_private, lookup=self.lookup)
        except TargetRefusedError as exc:
            return Outcome(Result.REFUSED, str(exc))
        body = body_of(alert)
        stamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "host": target.host if target.url.port is None else f"{target.host}:{target.url.port}",
            "webhook-id": alert.alert_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(secret, alert.alert_id, stamp, body),
            "user-agent": "simwatch-notifier/1",
        }
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        try:
            response = await self.client.post(
                target.url,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                follow_redirects=False,
                extensions=extensions,
            )
        except httpx.TimeoutException:
            return Outcome(Result.RETRY, "timeout")
        except httpx.HTTPError as exc:
            return Outcome(Result.RETRY, f"{type(exc).__name__}: {exc}")
        return _classify(response)


def _classify(response: httpx.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(Result.DELIVERED, str(code))
    if code == 410:
        return Outcome(Result.GONE, "410 Gone")
    # Anything else, redirects included (never followed), is retried with backoff.
    return Outcome(Result.RETRY, f"HTTP {code}", response.headers.get("retry-after"))
