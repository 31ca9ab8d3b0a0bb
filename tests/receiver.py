"""A webhook endpoint and SMS gateway on loopback that tests script per path, and the
customer settings that point at it."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

from .servers import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""A Standard Webhooks secret for test customers."""


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint and SMS gateway whose behaviour each test scripts per path."""

    port: int
    hits: dict[str, list[Hit]] = field(default_factory=lambda: defaultdict(list))
    script: dict[str, list[Any]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        self.hits[path].append(Hit(time.monotonic(), dict(request.headers), body))
        steps = self.script.get(path, [200])
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, tuple) and step[0] == "sleep":
            await asyncio.sleep(step[1])
            return web.Response(status=200)
        if isinstance(step, tuple) and len(step) == 3:  # (status, headers, body)
            status, headers, text = step
            return web.Response(status=status, headers=headers, text=text)
        if isinstance(step, tuple):
            status, headers = step
            return web.Response(status=status, headers=headers)
        return web.Response(status=step)

    def webhook_ids(self, path: str) -> list[str]:
        return [h.headers["webhook-id"] for h in self.hits[path]]

    async def serve(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    @classmethod
    def on_free_port(cls) -> Receiver:
        return cls(free_port())


def customer(
    cid: str, *, webhook: str | None = None, sms: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {"customer_id": cid, "language": "en", **extra}
    if webhook:
        doc["webhook"] = {"url": webhook, "secret": SECRET}
    if sms:
        doc["sms"] = {"numbers": sms}
    return doc


def verified(hit: Hit) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(SECRET).verify(hit.body, hit.headers)
    return payload
