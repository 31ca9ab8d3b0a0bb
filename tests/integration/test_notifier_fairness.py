"""Per-endpoint fairness on real loopback servers: one customer's endpoint hangs while 100
others answer; the hanging one holds at most NOTIFIER_PER_HOST_CONCURRENCY attempts, and the
healthy ones' deliveries all complete long before the hanging attempts time out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from notifier.adapters.redis_ledger import RedisLedger
from notifier.channels.webhook import WebhookSender
from notifier.domain.delivery import Channel, Delivery
from notifier.metrics import Metrics
from notifier.service_layer.dispatcher import Dispatcher
from notifier.settings import Settings
from simwatch_runtime.redis_client import AnyRedis

from ..receiver import SECRET, Hit, verified
from .helpers import iccid, now_iso

pytestmark = pytest.mark.integration

HEALTHY = 100
PER_HOST = 4
TIMEOUT_S = 20.0


class Endpoints:
    """One hanging endpoint and HEALTHY answering ones, each on its own loopback port."""

    def __init__(self) -> None:
        self.hits: dict[int, list[Hit]] = {}
        self.hanging_now = 0
        self.hanging_most = 0
        self.runners: list[web.AppRunner] = []
        self.urls: list[str] = []
        self.release = asyncio.Event()

    async def start(self) -> None:
        for n in range(HEALTHY + 1):
            app = web.Application()
            app.router.add_post("/hook", self._hang if n == 0 else self._answer(n))
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self.runners.append(runner)
            self.urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/hook")

    def _answer(self, n: int):  # type: ignore[no-untyped-def]
        async def answer(request: web.Request) -> web.Response:
            body = await request.read()
            self.hits.setdefault(n, []).append(Hit(time.monotonic(), dict(request.headers), body))
            return web.Response(status=204)

        return answer

    async def _hang(self, request: web.Request) -> web.Response:
        self.hanging_now += 1
        self.hanging_most = max(self.hanging_most, self.hanging_now)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 3 * TIMEOUT_S)
        finally:
            self.hanging_now -= 1
        return web.Response(status=204)

    async def stop(self) -> None:
        self.release.set()
        for runner in self.runners:
            await runner.cleanup()


@pytest.fixture
async def ledger(redis: AnyRedis) -> AsyncIterator[RedisLedger]:
    prefix = f"f{uuid.uuid4().hex[:10]}"
    yield RedisLedger(redis, prefix)
    keys = [k async for k in redis.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
    for key in keys:
        await redis.delete(key)


def delivery(customer: str, n: int) -> Delivery:
    card = iccid(70_000 + n)
    alert = {
        "alert_id": f"alr-{customer}-{n}",
        "type": "usage_threshold",
        "iccid": card,
        "customer_id": customer,
        "cycle": "2026-11-01",
        "percent": 80,
        "used_bytes": 800,
        "quota_bytes": 1000,
        "occurred_at": now_iso(),
    }
    return Delivery(f"dlv-{customer}-{n}", json.dumps(alert), customer, Channel.WEBHOOK, "webhook")


async def test_a_hanging_endpoint_holds_only_its_own_slots(ledger: RedisLedger) -> None:
    endpoints = Endpoints()
    await endpoints.start()
    customers = [f"c{n:03d}" for n in range(HEALTHY + 1)]  # c000 hangs
    for cid, url in zip(customers, endpoints.urls, strict=True):
        doc = {"customer_id": cid, "webhook": {"url": url, "secret": SECRET}}
        await ledger.store_customer(cid, json.dumps(doc).encode())
    now = datetime.now(UTC)
    # The hanging customer's backlog is due first, ahead of every healthy delivery.
    backlog = [(delivery("c000", n), now) for n in range(300)]
    healthy = [(delivery(c, n), now) for n in range(3) for c in customers[1:]]
    await ledger.schedule_many(backlog)
    await ledger.schedule_many(healthy)

    async def publish(_topic: str, _key: bytes | None, _value: bytes) -> None:
        return None

    settings = Settings(
        dispatch_interval_s=0.05,
        lease_s=60,
        concurrency=32,
        per_host_concurrency=PER_HOST,
        webhook_timeout_s=TIMEOUT_S,
    )
    sender = WebhookSender(
        allow_private=True, timeout_s=TIMEOUT_S, max_connections=32, per_host=PER_HOST
    )
    metrics = Metrics.create(CollectorRegistry())
    dispatcher = Dispatcher(ledger, sender, None, settings, metrics, publish)
    started = time.monotonic()
    task = asyncio.create_task(dispatcher.run())
    try:
        while sum(len(h) for h in endpoints.hits.values()) < len(healthy):
            assert time.monotonic() - started < TIMEOUT_S / 2, (
                f"{sum(len(h) for h in endpoints.hits.values())} of {len(healthy)} healthy "
                "deliveries before the hanging attempts' timeout"
            )
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
    finally:
        dispatcher._stopping = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for attempt in list(dispatcher._inflight):
            attempt.cancel()
        await sender.close()
        await endpoints.stop()
    assert endpoints.hanging_most <= PER_HOST, endpoints.hanging_most
    assert all(len(endpoints.hits[n]) == 3 for n in range(1, HEALTHY + 1))
    for hits in endpoints.hits.values():
        for hit in hits:
            verified(hit)
    assert took < TIMEOUT_S / 2
    print(f"{len(healthy)} healthy deliveries in {took:.2f} s beside a hanging endpoint")
