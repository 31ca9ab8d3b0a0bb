"""SMS providers behind one interface, chosen by `SMS_PROVIDER`: `http` (an operator's SMS
gateway, JSON with an idempotency key), `twilio` and `aliyun` (their public REST APIs).

A provider is *idempotent* when sending the same message again with the same key cannot
produce a second SMS (the http gateway contract). For the others, a request whose answer
was lost is recorded as uncertain and never sent again: at most one SMS per (alert, number).

Like a webhook attempt, a provider call has one deadline (`timeout_s`) for connecting, sending
and reading the whole answer: httpx's own timeouts bound each read, not the sum, so a provider
trickling its answer a byte at a time would otherwise hold the attempt for ever.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from ..domain.outcome import Outcome, Result


def _classify(response: httpx.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome(Result.DELIVERED, str(code))
    if code == 429 or code >= 500:
        return Outcome(Result.RETRY, f"HTTP {code}", response.headers.get("retry-after"))
    return Outcome(Result.FAILED, f"HTTP {code}: {response.text[:200]}")


async def _post(client: httpx.AsyncClient, timeout_s: float, url: str, **kw: object) -> Outcome:
    """POST and classify, all within `timeout_s`; a connection that never reached the
    provider is a plain retry, no answer once the request was being written is uncertain."""
    sending = False

    async def trace(event: str, info: object) -> None:  # httpcore's progress events
        nonlocal sending
        if "send_request" in event:  # http11./http2.send_request_headers/_body
            sending = True

    try:
        async with asyncio.timeout(timeout_s):
            response = await client.post(
                url,
                timeout=timeout_s,
                follow_redirects=False,
                extensions={"trace": trace},
                **kw,  # type: ignore[arg-type]
            )
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return Outcome(Result.RETRY, f"not sent: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return Outcome(Result.UNCERTAIN, f"no answer: {type(exc).__name__}")
    except TimeoutError:  # the whole-request deadline
        if not sending:
            return Outcome(Result.RETRY, "not sent: deadline")
        return Outcome(Result.UNCERTAIN, "no answer: deadline")
    return _classify(response)


class HttpGateway:
    name = "http"
    idempotent = True

    def __init__(self, client: httpx.AsyncClient, url: str, timeout_s: float) -> None:
        self.client, self.url, self.timeout_s = client, url, timeout_s

    async def send(self, to: str, text: str, key: str, params: dict[str, str]) -> Outcome:
        payload = {"to": to, "text": text, "idempotency_key": key}
        return await _post(self.client, self.timeout_s, self.url, json=payload)


class Twilio:
    name = "twilio"
    idempotent = False

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        sid: str,
        token: str,
        sender: str,
        timeout_s: float,
    ) -> None:
        self.client, self.timeout_s = client, timeout_s
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        self.auth = (sid, token)
        self.sender = sender

    async def send(self, to: str, text: str, key: str, params: dict[str, str]) -> Outcome:
        form = {"To": to, "From": self.sender, "Body": text}
        return await _post(self.client, self.timeout_s, self.url, data=form, auth=self.auth)


class Aliyun:
    """Dysmsapi `SendSms` (RPC style, HMAC-SHA1 signature); `OutId` carries our key."""

    name = "aliyun"
    idempotent = False

    def __init__(
        self,
        client: httpx.AsyncClient,
        endpoint: str,
        key_id: str,
        secret: str,
        sign_name: str,
        template_code: str,
        timeout_s: float,
    ) -> None:
        self.client, self.endpoint, self.timeout_s = client, endpoint, timeout_s
        self.key_id, self.secret = key_id, secret
        self.sign_name, self.template_code = sign_name, template_code

    def signed(
        self, to: str, key: str, params: dict[str, str], now: datetime, nonce: str
    ) -> dict[str, str]:
        query = {
            "AccessKeyId": self.key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": key[:64],
            "PhoneNumbers": to.removeprefix("+86"),
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce,
            "SignatureVersion": "1.0",
            "TemplateCode": self.template_code,
            "TemplateParam": json.dumps(params, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
        }
        query["Signature"] = aliyun_signature(self.secret, "POST", query)
        return query

    async def send(self, to: str, text: str, key: str, params: dict[str, str]) -> Outcome:
        form = self.signed(to, key, params, datetime.now(UTC), uuid.uuid4().hex)
        outcome = await _post(self.client, self.timeout_s, self.endpoint, data=form)
        return outcome


def _pct(value: str) -> str:
    return quote(value, safe="-_.~")


def aliyun_signature(secret: str, method: str, query: dict[str, str]) -> str:
    """Alibaba Cloud RPC signature v1: HMAC-SHA1 over METHOD&%2F&encoded(sorted query)."""
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(query.items()))
    to_sign = f"{method}&{_pct('/')}&{_pct(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()
